"""Which channels an alert goes to, and the request body each channel gets.

Routing and rendering are pure and run in the alerting step, so what is sent is decided there
(and replayed identically); connectors/webhooks.py only delivers the bytes.

>>> from config.alerts import Channel
>>> from schemas.alerts import AlertRecord
>>> alert = AlertRecord(id="a1", version=1, rule="p95", kind="threshold", status="firing", event="firing",
...                     severity="high", labels={"metric": "latency_ms", "model": "gpt-4o"}, value=2500.0,
...                     threshold=2000.0, starts_at_ms=0, updated_at_ms=300_000, summary="p95 latency_ms 2500 > 2000")
>>> ops = Channel(name="ops", url_env="OPS_URL", format="slack", min_severity="high")
>>> search = Channel(name="search", url_env="SEARCH_URL", match={"team": "search"})
>>> [n.channel for n in route([alert], [ops, search])]
['ops']
>>> body = msgspec.json.decode(route([alert], [ops])[0].body)
>>> body["text"], [b["type"] for b in body["blocks"]]
('[FIRING] p95 latency_ms 2500 &gt; 2000', ['section', 'context'])
"""
from __future__ import annotations

from datetime import datetime, timezone

import msgspec

from config.alerts import Channel
from schemas.alerts import AlertRecord, Notification, notification_key
from schemas.vocabulary import severity_rank


def routed(alert: AlertRecord, channel: Channel) -> bool:
    """A channel takes an alert of one of its rules (all when it names none), at or above its
    severity, whose labels (plus `rule`, `kind`, `severity`) equal its `match`."""
    if channel.rules and alert.rule not in channel.rules:
        return False
    if alert.event == "resolved" and not channel.send_resolved:
        return False
    if severity_rank(alert.severity) < severity_rank(channel.min_severity):
        return False
    fields = {**alert.labels, "rule": alert.rule, "kind": alert.kind, "severity": alert.severity}
    return all(fields.get(k) == v for k, v in channel.match.items())


def route(alerts: list[AlertRecord], channels: list[Channel]) -> list[Notification]:
    out = []
    for alert in alerts:
        for channel in channels:
            if routed(alert, channel):
                key = notification_key(alert.id, alert.version, channel.name)
                body = slack_body(alert) if channel.format == "slack" else json_body(alert, key)
                out.append(Notification(key=key, channel=channel.name, alert_id=alert.id, alert_version=alert.version,
                                        event=alert.event, created_at_ms=alert.updated_at_ms, body=body))
    return out


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def json_body(alert: AlertRecord, key: str) -> bytes:
    """The generic webhook body: the alert, times as ISO 8601 UTC, and the idempotency key a
    receiver can deduplicate on (also sent as the Idempotency-Key header)."""
    return msgspec.json.encode({
        "idempotency_key": key, "id": alert.id, "version": alert.version, "event": alert.event,
        "status": alert.status, "rule": alert.rule, "kind": alert.kind, "severity": alert.severity,
        "summary": alert.summary, "labels": alert.labels, "value": alert.value, "threshold": alert.threshold,
        "starts_at": _iso(alert.starts_at_ms), "ends_at": _iso(alert.ends_at_ms), "updated_at": _iso(alert.updated_at_ms),
        "anomaly_ids": alert.anomaly_ids, "incident_ids": alert.incident_ids,
    })


def _escape(text: str) -> str:
    """Slack mrkdwn control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


HEADINGS = {"firing": "FIRING", "renotify": "STILL FIRING", "resolved": "RESOLVED"}


def slack_body(alert: AlertRecord) -> bytes:
    """A Slack incoming-webhook message: `text` (notifications, clients without blocks) and blocks."""
    heading = HEADINGS[alert.event]
    labels = " · ".join(f"{k}={v}" for k, v in sorted(alert.labels.items()) if v)
    since = _iso(alert.starts_at_ms)
    context = f"rule `{alert.rule}` · {alert.severity} · {labels} · since {since}"
    if alert.ends_at_ms is not None:
        context += f" · until {_iso(alert.ends_at_ms)}"
    return msgspec.json.encode({
        "text": f"[{heading}] {_escape(alert.summary)}",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{heading}* {_escape(alert.summary)}"}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": _escape(context)}]},
        ],
    })
