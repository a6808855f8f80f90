"""What the correlator sees: Signals built straight from a batch's event columns (only the
noteworthy events), and from the anomalies the detector bank finds."""
from __future__ import annotations

from schemas.incidents import Anomaly, Signal
from schemas.vocabulary import ALERT_SEVERITIES, FINDING_SEVERITIES

# What the correlator sees of the raw events: things that go wrong or change (severity low and
# up, failed checks, registry changes that can cause incidents). Routine records (requests,
# per-request costs, passed evaluations, audits at info) are not signals: their problems
# surface as anomalies of the windowed metrics, and they would swamp the correlator.
NOTEWORTHY = frozenset(ALERT_SEVERITIES)
CHANGE_TYPES = {"asset.updated", "asset.deprecated", "version.published", "version.promoted", "version.retired",
                "policy.updated"}
FAILED = {"failed", "fail", "denied", "deny", "violated", "blocked"}
NOT_SIGNALS = {"telemetry.request", "telemetry.latency", "telemetry.tokens", "telemetry.throughput",
               "cost.tokens", "cost.api", "cost.resource"}


def is_signal(event_type: str, severity: str, outcome: str) -> bool:
    """Whether an event is worth correlating (see NOTEWORTHY above).

    >>> is_signal("security.threat", "high", "")
    True
    >>> is_signal("version.promoted", "info", "")
    True
    >>> is_signal("telemetry.request", "critical", "failed")
    False
    """
    if event_type in NOT_SIGNALS:
        return False
    return severity in NOTEWORTHY or event_type in CHANGE_TYPES or outcome in FAILED


def signals_from_columns(columns: dict[str, list]) -> list[Signal]:
    """Signals for the events of a batch that the correlator should see.

    >>> cols = {"event_id": ["e1", "e2"], "event_time": [1_000, 2_000], "source": ["telemetry", "security"],
    ...         "event_type": ["telemetry.request", "security.threat"], "severity": ["info", "high"],
    ...         "outcome": ["", ""], "model": ["gpt-4", "gpt-4"], "asset_id": ["", ""], "correlation_id": ["", "t1"],
    ...         "parent_event_id": ["", ""], "cost_usd": [0.002, None], "category": ["", "injection"],
    ...         "team": ["a", "a"]}
    >>> [(s.id, s.asset, s.severity, s.correlation_id, s.tags["category"]) for s in signals_from_columns(cols)]
    [('e2', 'gpt-4', 'high', 't1', 'injection')]
    """
    out = []
    for i, (etype, severity, outcome) in enumerate(zip(columns["event_type"], columns["severity"], columns["outcome"])):
        if not is_signal(etype, severity, outcome):
            continue
        value = columns["cost_usd"][i]
        out.append(Signal(
            id=columns["event_id"][i], time_ms=columns["event_time"][i], source=columns["source"][i], kind=etype,
            asset=columns["model"][i] or columns["asset_id"][i], correlation_id=columns["correlation_id"][i],
            parent_id=columns["parent_event_id"][i], severity=_severity(severity),
            value=float(value) if value is not None else 0.0,
            tags={k: v for k, v in (("category", columns["category"][i]), ("outcome", outcome),
                                    ("team", columns["team"][i])) if v}))
    return out


def _severity(value: str) -> str:
    return value if value in FINDING_SEVERITIES else "info"


def signal_from_anomaly(a: Anomaly) -> Signal:
    """The correlator's view of an anomaly: asset = model (or endpoint), time = window start."""
    tags = {"endpoint": a.endpoint, "team": a.team, "detector": a.detector}
    tags.update(a.tags)
    return Signal(id=a.id, time_ms=a.window_start_ms, source="anomaly", kind=a.anomaly_type,
                  asset=a.model or a.endpoint, severity=a.severity, metric=a.metric, value=a.observed,
                  score=a.score, tags=tags)
