"""Which raw events the correlator sees, as Signals built straight from a batch's event columns."""
from __future__ import annotations

from schemas.incidents import Signal
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
    if event_type in NOT_SIGNALS:
        return False
    return severity in NOTEWORTHY or event_type in CHANGE_TYPES or outcome in FAILED


def signals_from_columns(columns: dict[str, list]) -> list[Signal]:
    """Signals for the events of a batch that the correlator should see."""
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
