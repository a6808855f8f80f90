"""Outbound feeds (the integration notes' CostOps and governance-dashboard feeds, and the registry
flow's analytics event): one Kafka topic each, one JSON record per message, documented by the
JSON Schemas `hub schema export` writes from these Structs (schemas/json/feed-*.schema.json).

Every record carries a stable `id` (also the Kafka key) and, where it can be re-emitted with more
data, a `version`: topics are at least once, so consumers upsert on `id` and keep the highest
`version`. Times are epoch milliseconds UTC.
"""
from __future__ import annotations

from typing import Literal

import msgspec

from schemas.assets import AssetInfo, AssetProfile

Granularity = Literal["hour", "day"]
ScopeKind = Literal["all", "asset", "team"]


class ComplianceReport(msgspec.Struct, kw_only=True):
    """Compliance of one scope over one hour or day: a row of `compliance_reports` and a record of
    the compliance feed.

    Evaluations are policy evaluations and compliance checks (`policy.evaluated`,
    `compliance.verified`, `governance.compliance`); compliant ones passed or were allowed.
    Violations are `violation.detected` and `governance.violation` events, by type and severity.
    Rates are null when nothing was evaluated. `prev_*` describe the window before (same scope and
    granularity) and the `*_change` fields are this window minus that one.
    """

    id: str
    version: int
    granularity: Granularity
    window_start_ms: int
    window_end_ms: int
    scope_kind: ScopeKind
    scope: str
    evaluations: int
    compliant: int
    non_compliant: int
    violations: int
    compliance_rate: float | None
    violation_rate: float | None
    violations_by_type: dict[str, int]
    violations_by_severity: dict[str, int]
    prev_evaluations: int
    prev_violations: int
    prev_compliance_rate: float | None
    compliance_rate_change: float | None
    violation_rate_change: float | None
    violations_change: int
    # The asset as of the window's end (asset scope only).
    asset: AssetInfo | None = None


COMPLIANCE_COLUMNS = ("id", "version", "granularity", "window_start", "window_end", "scope_kind", "scope",
                      "evaluations", "compliant", "non_compliant", "violations", "compliance_rate", "violation_rate",
                      "violations_by_type", "violations_by_severity", "prev_evaluations", "prev_violations",
                      "prev_compliance_rate", "compliance_rate_change", "violation_rate_change", "violations_change",
                      "asset_name", "asset_version", "asset_owner", "asset_category", "asset_tags")


def compliance_row(r: ComplianceReport) -> tuple:
    a = r.asset
    return (r.id, r.version, r.granularity, r.window_start_ms, r.window_end_ms, r.scope_kind, r.scope, r.evaluations,
            r.compliant, r.non_compliant, r.violations, r.compliance_rate, r.violation_rate, r.violations_by_type,
            r.violations_by_severity, r.prev_evaluations, r.prev_violations, r.prev_compliance_rate,
            r.compliance_rate_change, r.violation_rate_change, r.violations_change,
            *((a.name, a.version, a.owner, a.category, list(a.tags)) if a is not None else ("", "", "", "", [])))


class UsageRecord(msgspec.Struct, kw_only=True):
    """CostOps usage feed: one hour of one team's use of one model, for cost allocation.

    Sums of the 1-minute windows of the hour (all endpoints): requests, failed requests, tokens by
    kind and billed spend (`cost_usd`, as the `cost_usd` metric counts it). `version` is the number
    of window rows summed; a re-emitted hour (windows of a lagging input) has a higher one.
    """

    id: str
    version: int
    hour_start_ms: int
    hour_end_ms: int
    team: str
    model: str
    requests: int
    errors: int
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    total_tokens: int
    cost_usd: float
    # The model's registry asset as of the hour's end (owner, tags: who pays).
    asset: AssetInfo | None = None


class ViolationReport(msgspec.Struct, kw_only=True):
    """Governance dashboard violation feed: one policy or governance violation as it arrives, with
    its asset as of the violation's time."""

    id: str
    time_ms: int
    source: str
    event_type: str
    policy_id: str
    violation_id: str = ""
    violation_type: str = ""
    severity: str = ""
    asset_id: str = ""
    model: str = ""
    team: str = ""
    user_id: str = ""
    action_taken: str = ""
    description: str = ""
    correlation_id: str = ""
    asset: AssetInfo | None = None


class AuditEntry(msgspec.Struct, kw_only=True):
    """Governance dashboard audit trail: one audit record (`governance.audit`, `audit.logged`)."""

    id: str
    time_ms: int
    source: str
    event_type: str
    actor: str
    action: str
    resource: str = ""
    resource_type: str = ""
    outcome: str = ""
    policy_id: str = ""
    details: dict[str, str] = {}
    correlation_id: str = ""


class AssetProfileEvent(msgspec.Struct, kw_only=True):
    """The registry flow's "analytics event": an asset profile was created or updated by a registry
    event; `profile` is the asset as it stands after it."""

    id: str
    change: Literal["created", "updated"]
    asset_id: str
    registry_event_id: str
    registry_event_type: str
    time_ms: int
    profile: AssetProfile


_encode = msgspec.json.Encoder().encode


def feed_json(record: msgspec.Struct) -> bytes:
    return _encode(record)
