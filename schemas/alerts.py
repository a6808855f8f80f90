"""Records of alerting: alerts (ClickHouse `alerts`, the alerts topic), budget status
(`budget_status`) and webhook notifications (`notifications`, the sent-log and outbox).

Every id and version is derived from the alert's rule, labels and event times, so a replay after
a crash writes the same rows again (ReplacingMergeTree tables collapse them) and produces the same
notification keys (the notifier sends a key once; connectors/webhooks.py).
"""
from __future__ import annotations

from typing import Literal

import msgspec

from schemas.incidents import stable_id

AlertStatus = Literal["firing", "resolved"]
# What made this version of an alert: it started firing, was re-sent while firing, or resolved.
AlertEvent = Literal["firing", "renotify", "resolved"]
AlertKind = Literal["threshold", "anomaly", "incident", "budget"]
NotificationStatus = Literal["pending", "sent", "failed"]
# ReplacingMergeTree version of a notification row: a final state always wins over pending.
NOTIFICATION_RANK = {"pending": 0, "sent": 1, "failed": 1}


def alert_id(rule: str, labels: dict[str, str], starts_at_ms: int) -> str:
    """Deterministic: the same rule, labels and start give the same id in every run.

    >>> alert_id("p95", {"model": "gpt-4o", "metric": "latency_ms"}, 60_000) == \\
    ...     alert_id("p95", {"metric": "latency_ms", "model": "gpt-4o"}, 60_000)
    True
    """
    return stable_id("alert", rule, *(f"{k}={v}" for k, v in sorted(labels.items())), starts_at_ms)


class AlertRecord(msgspec.Struct, kw_only=True):
    """One version of an alert: a row of `alerts` and a message on the alerts topic."""

    id: str
    version: int
    rule: str
    kind: AlertKind
    status: AlertStatus
    event: AlertEvent
    severity: str
    labels: dict[str, str]
    value: float
    threshold: float
    starts_at_ms: int
    ends_at_ms: int | None = None
    # Event time of this version (the minute, anomaly or incident update that made it).
    updated_at_ms: int
    summary: str
    anomaly_ids: list[str] = []
    incident_ids: list[str] = []


ALERT_COLUMNS = ("id", "version", "rule", "kind", "status", "event", "severity", "labels", "value", "threshold",
                 "starts_at", "ends_at", "updated_at", "summary", "anomaly_ids", "incident_ids")


def alert_row(a: AlertRecord) -> tuple:
    return (a.id, a.version, a.rule, a.kind, a.status, a.event, a.severity, a.labels, a.value, a.threshold,
            a.starts_at_ms, a.ends_at_ms, a.updated_at_ms, a.summary, a.anomaly_ids, a.incident_ids)


def alert_record_json(a: AlertRecord) -> bytes:
    """The alerts topic's message for a rule's alert, beside the `anomaly` and `incident` kinds."""
    return msgspec.json.encode({"kind": "alert", "alert": a})


class BudgetStatus(msgspec.Struct, kw_only=True):
    """A budget's standing in one period as of `updated_at_ms` (event time)."""

    budget: str
    scope: str
    period: str
    period_start_ms: int
    period_end_ms: int
    amount_usd: float
    spend: float
    # Period-end spend at the burn rate so far: spend / elapsed x period length.
    forecast: float
    # Percent of amount_usd spent (85.0 = 85%).
    pct_used: float
    updated_at_ms: int


BUDGET_COLUMNS = ("budget", "scope", "period", "period_start", "period_end", "amount_usd", "spend", "forecast",
                  "pct_used", "updated_at")


def budget_row(b: BudgetStatus) -> tuple:
    return (b.budget, b.scope, b.period, b.period_start_ms, b.period_end_ms, b.amount_usd, b.spend, b.forecast,
            b.pct_used, b.updated_at_ms)


class Notification(msgspec.Struct, kw_only=True):
    """One alert version to deliver to one channel; `key` is its idempotency key."""

    key: str
    channel: str
    alert_id: str
    alert_version: int
    event: AlertEvent
    # Event time of the alert version.
    created_at_ms: int
    # The request body, already in the channel's format.
    body: bytes


def notification_key(alert: str, version: int, channel: str) -> str:
    return stable_id("notification", alert, version, channel)


NOTIFICATION_COLUMNS = ("key", "alert_id", "alert_version", "channel", "event", "status", "rank", "attempts", "error",
                        "body", "created_at", "updated_at")


def notification_row(n: Notification, status: NotificationStatus, attempts: int, error: str, now_ms: int) -> tuple:
    return (n.key, n.alert_id, n.alert_version, n.channel, n.event, status, NOTIFICATION_RANK[status], attempts,
            error, n.body, n.created_at_ms, now_ms)
