"""Items that travel between the dataflow's steps (source -> shard step -> detection -> sinks).

They live here, not with the steps that make them, so sinks (connectors) can read them without
importing an operator. Per DESIGN.md, an item is a batch or per-window partials, never one event.
"""
from __future__ import annotations

from typing import Any

import msgspec

from schemas.alerts import AlertRecord, BudgetStatus, Notification
from schemas.assets import AssetProfile, RegistryChange
from schemas.feeds import AssetProfileEvent, AuditEntry, ComplianceReport, UsageRecord, ViolationReport
from schemas.incidents import Anomaly, Incident, Signal
from schemas.metrics import WindowMetric
from schemas.raw import DeadLetter, RawMessage, Skipped


class RawBatch(msgspec.Struct):
    """What a source emits per item: many messages from one shard (never one event per item)."""

    shard: str
    messages: list[RawMessage]
    # Set on the last batch of a finite input.
    final: bool = False
    # On idle ticks from a tailing source: how long it has had no messages. The source measures
    # it (not the shard state), so a restart does not count its own downtime as idleness.
    idle_ms: int = 0


class ShardOutput(msgspec.Struct):
    """One batch's results from its shard's step."""

    shard: str
    events: int = 0
    # Column-oriented `events` rows (schemas.rows.EVENT_COLUMNS order), None when none were kept.
    event_columns: list[list] | None = None
    dead_letters: list[DeadLetter] = []
    skipped: list[Skipped] = []
    late_rows: list[list] = []
    windows: list[WindowMetric] = []
    final: bool = False
    # Events the correlator should see (security findings, violations, budget alerts, ...).
    signals: list[Signal] = []
    # Broker timestamps of this batch's messages (0 = unknown) as a numpy int64 array, for
    # end-to-end latency.
    produced_ms: Any = None
    # The shard's watermark (largest event time seen, 0 = none yet), and the time up to which
    # every window of the shard has been emitted (ALL_CLOSED: none is open): what later steps
    # wait for before they judge a minute whole.
    watermark_ms: int = 0
    closed_ms: int = 0


# ShardOutput.closed_ms of a shard with no open window (idle, ended, or nothing to window yet).
ALL_CLOSED = 2**62


class DetectionOutput(msgspec.Struct):
    """What the detection step found while taking one shard output."""

    anomalies: list[Anomaly] = []
    incidents: list[Incident] = []
    # The subset of anomalies and incidents at or above the alert severity.
    alerts: list[Anomaly | Incident] = []


class AlertFeed(msgspec.Struct):
    """What alerting takes from one shard output: the windows its rules watch, billed spend per
    budget and minute, and input counts per source (for dead-letter rates)."""

    shard: str
    windows: list[WindowMetric] = []
    final: bool = False
    watermark_ms: int = 0
    closed_ms: int = 0
    # (budget, minute start ms, USD)
    spend: list[tuple[str, int, float]] = []
    # (source, inputs, dead letters), in the minute of the shard's watermark after the batch.
    quality: list[tuple[str, int, int]] = []
    quality_minute_ms: int = 0


class AlertOutput(msgspec.Struct):
    """What the alerting step produced while taking one feed."""

    alerts: list[AlertRecord] = []
    budgets: list[BudgetStatus] = []
    notifications: list[Notification] = []


class ComplianceFacts(msgspec.Struct):
    """A batch's policy evaluations and violations, column-wise: `kind` 1 = compliant evaluation,
    0 = non-compliant evaluation, 2 = violation; `asset` is the asset id, else the model."""

    time_ms: list[int]
    kind: list[int]
    asset: list[str]
    team: list[str]
    violation_type: list[str]
    severity: list[str]


class GovernanceBatch(msgspec.Struct):
    """What the registry step takes from one shard output besides its windows: its registry
    events, compliance facts, and the violation and audit records of the feeds (only events of
    these kinds travel; for most batches this is empty)."""

    registry: list[RegistryChange] = []
    facts: ComplianceFacts | None = None
    violations: list[ViolationReport] = []
    audit: list[AuditEntry] = []


class RegistryOutput(msgspec.Struct):
    """What the registry step produced while taking one shard output: its windows, enriched with
    their assets (the ClickHouse output writes windows from here), the asset rows, compliance
    reports and the feed records."""

    windows: list[WindowMetric] = []
    assets: list[AssetProfile] = []
    asset_events: list[tuple] = []
    reports: list[ComplianceReport] = []
    usage: list[UsageRecord] = []
    violations: list[ViolationReport] = []
    audit: list[AuditEntry] = []
    profiles: list[AssetProfileEvent] = []
