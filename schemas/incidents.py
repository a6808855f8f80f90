"""Records for anomalies, correlation signals and incidents (ClickHouse `anomalies`, `incidents`,
`incident_edges`; high-severity ones also go to the alerts topic as JSON).

Ids are deterministic so a replay after a crash writes the same rows again, which the
ReplacingMergeTree tables collapse (schemas/migrations/0004_anomalies_incidents.sql).
"""
from __future__ import annotations

import hashlib
from typing import Literal

import msgspec

from schemas.assets import ASSET_INFO_COLUMNS, AssetInfo, asset_columns
from schemas.metrics import SeriesKey
from schemas.vocabulary import AnomalyType, FindingSeverity, SignalSource

Pattern = Literal["cost_impact", "security_incident", "performance_degradation", "compliance_cascade", "generic"]
Role = Literal["root_cause", "contributor", "effect", "related"]
Relationship = Literal["causes", "parent_of", "same_correlation", "temporal", "same_asset"]


def stable_id(*parts: object) -> str:
    """128-bit hex digest of the parts; the same parts give the same id in every process.

    A replay must write the same ids, so the digest is pinned here: changing it would make
    replayed rows new rows instead of replacing the old ones.

    >>> stable_id("anomaly", "latency_ms", "gpt-4o", 1_763_546_340_000)
    '8143a5b608645bac39b40cc83ef1c03f'
    >>> stable_id("a", 1) == stable_id("a", "1"), stable_id("a", 1) == stable_id(1, "a")
    (True, False)
    """
    h = hashlib.blake2b(digest_size=16)
    h.update("\x1f".join(str(p) for p in parts).encode())
    return h.hexdigest()


def anomaly_id(series: SeriesKey, window_start_ms: int, anomaly_type: str, detector: str) -> str:
    return stable_id("anomaly", series.metric, series.model, series.endpoint, series.team,
                     window_start_ms, anomaly_type, detector)


class Anomaly(msgspec.Struct, kw_only=True):
    """One anomalous window (or point) of one series, as one detector saw it.

    `expected` and `spread` are the baseline the observation was judged against (for spikes:
    seasonal robust median and robust sigma; for level shifts: old level and sigma, with
    `observed` the new level; for distribution shifts: typical and observed divergence/volatility).
    """

    id: str
    metric: str
    model: str = ""
    endpoint: str = ""
    team: str = ""
    window_start_ms: int
    window_ms: int = 0
    anomaly_type: AnomalyType
    score: float
    expected: float
    spread: float
    observed: float
    detector: str
    severity: FindingSeverity = "low"
    tags: dict[str, str] = {}
    # The series' registry asset as of the window's end (set by the registry step).
    asset: AssetInfo | None = None

    @property
    def series(self) -> SeriesKey:
        return SeriesKey(self.metric, self.model, self.endpoint, self.team)


class Signal(msgspec.Struct, kw_only=True, gc=False):
    """Anything the correlator groups: a source event worth correlating, or an anomaly.

    `asset` is the model or asset id events are grouped by in time; `correlation_id` and
    `parent_id` carry explicit causal links (trace id, parent event id).
    """

    id: str
    time_ms: int
    source: SignalSource
    kind: str
    asset: str = ""
    correlation_id: str = ""
    parent_id: str = ""
    severity: FindingSeverity = "info"
    metric: str = ""
    value: float = 0.0
    score: float = 0.0
    tags: dict[str, str] = {}


class IncidentMember(msgspec.Struct, kw_only=True):
    signal_id: str
    role: Role
    source: str
    kind: str
    asset: str = ""
    time_ms: int
    severity: str = "info"
    metric: str = ""
    value: float = 0.0
    score: float = 0.0


class IncidentEdge(msgspec.Struct, kw_only=True):
    """One edge of an incident's event graph. `version` is the incident version it belongs to."""

    incident_id: str
    from_id: str
    to_id: str
    relationship: Relationship
    weight: float = 1.0
    time_ms: int = 0
    version: int = 0


class Incident(msgspec.Struct, kw_only=True):
    """A group of signals that belong together.

    `id` is derived from the signal that opened the group, so it stays the same while members are
    added; each change bumps `version` (the ReplacingMergeTree version). When two open groups
    merge, the younger one is re-emitted once with status "merged" and `merged_into` set.
    """

    id: str
    version: int
    status: Literal["open", "closed", "merged"] = "open"
    pattern: Pattern = "generic"
    confidence: float = 0.0
    severity: FindingSeverity = "info"
    opened_ms: int = 0
    start_ms: int = 0
    end_ms: int = 0
    assets: list[str] = []
    members: list[IncidentMember] = []
    impact: dict[str, float] = {}
    root_cause_id: str = ""
    root_cause_reasons: list[str] = []
    pattern_reasons: list[str] = []
    edges: list[IncidentEdge] = []
    overflow: int = 0
    merged_into: str = ""
    # Per entry of `assets`: its registry asset as of the incident's end (None: unknown).
    asset_info: list[AssetInfo | None] = []


# ---- rows for the ClickHouse sink (DateTime64(3) columns as epoch-ms ints) ----------------------

ANOMALY_COLUMNS = ("id", "metric", "model", "endpoint", "team", "window_start", "window_ms",
                   "anomaly_type", "score", "expected", "spread", "observed", "detector", "severity", "tags",
                   *ASSET_INFO_COLUMNS)


def anomaly_row(a: Anomaly) -> tuple:
    return (a.id, a.metric, a.model, a.endpoint, a.team, a.window_start_ms, a.window_ms, a.anomaly_type,
            a.score, a.expected, a.spread, a.observed, a.detector, a.severity, a.tags, *asset_columns(a.asset))


INCIDENT_COLUMNS = ("id", "version", "status", "pattern", "confidence", "severity", "opened_at", "start_time",
                    "end_time", "assets", "root_cause_id", "root_cause_reasons", "pattern_reasons", "impact",
                    "member_ids", "member_roles", "member_sources", "member_kinds", "member_times",
                    "overflow", "merged_into", "asset_ids", "asset_names", "asset_versions", "asset_owners",
                    "asset_categories", "asset_tags")


def incident_row(i: Incident) -> tuple:
    m = i.members
    info = [asset_columns(a) for a in i.asset_info] if i.asset_info else [asset_columns(None) for _ in i.assets]
    return (i.id, i.version, i.status, i.pattern, i.confidence, i.severity, i.opened_ms, i.start_ms, i.end_ms,
            i.assets, i.root_cause_id, i.root_cause_reasons, i.pattern_reasons, i.impact,
            [x.signal_id for x in m], [x.role for x in m], [x.source for x in m], [x.kind for x in m],
            [x.time_ms for x in m], i.overflow, i.merged_into, *([list(c) for c in zip(*info)] or [[]] * 6))


EDGE_COLUMNS = ("incident_id", "from_id", "to_id", "relationship", "weight", "time", "version")


def edge_row(e: IncidentEdge) -> tuple:
    return (e.incident_id, e.from_id, e.to_id, e.relationship, e.weight, e.time_ms, e.version)


def alert_json(record: Anomaly | Incident) -> bytes:
    """JSON for the alerts topic: the record under a `kind` tag, edges left out (they are in ClickHouse)."""
    if isinstance(record, Incident):
        body = msgspec.to_builtins(record)
        body.pop("edges", None)
        return msgspec.json.encode({"kind": "incident", "incident": body})
    return msgspec.json.encode({"kind": "anomaly", "anomaly": record})
