"""What part of the platform a signal speaks about (its domain), and what a member of a domain
with a given severity weighs on each impact dimension of an incident.

Domains drive everything the correlator concludes: two signals are separate evidence (facets)
when their domain or their metric/kind differ, the pattern of an incident follows from the
domains present, and root-cause priors are per domain.
"""
from __future__ import annotations

from schemas.incidents import Signal
from schemas.vocabulary import FINDING_SEVERITIES

DOMAIN_BY_SOURCE = {
    "telemetry": "performance",
    "security": "security",
    "cost": "cost",
    "governance": "compliance",
    "policy": "compliance",
    "registry": "change",
}
DOMAIN_BY_METRIC = {
    "latency_ms": "performance",
    "ttft_ms": "performance",
    "errors": "performance",
    "requests": "performance",
    "input_tokens": "usage",
    "output_tokens": "usage",
    "cached_tokens": "usage",
    "total_tokens": "usage",
    "cost_usd": "cost",
    "security_findings": "security",
    "policy_violations": "compliance",
    "compliance_checks": "compliance",
}
# Impact dimension fed by each domain (usage drives cost).
IMPACT_OF = {"performance": "performance", "usage": "cost", "cost": "cost", "security": "security",
             "compliance": "compliance"}
SEVERITY_WEIGHT = {"info": 0.1, "low": 0.25, "medium": 0.5, "high": 0.75, "critical": 1.0}


def domain_of(s: Signal) -> str:
    """Anomalies by their metric (unknown metrics: performance), events by their source.

    >>> from schemas.incidents import Signal
    >>> domain_of(Signal(id="a", time_ms=0, source="anomaly", kind="spike", metric="cost_usd"))
    'cost'
    >>> domain_of(Signal(id="b", time_ms=0, source="registry", kind="version.promoted"))
    'change'
    """
    if s.source == "anomaly":
        return DOMAIN_BY_METRIC.get(s.metric, "performance")
    return DOMAIN_BY_SOURCE.get(s.source, "other")


def impact_of(d: str, severity: str) -> tuple[str, float] | None:
    """(impact dimension, weight) of a member of domain d with this severity; None: no impact."""
    dim = IMPACT_OF.get(d)
    if dim is None:
        return None
    w = SEVERITY_WEIGHT.get(severity, 0.1)
    if dim == "cost" and d == "usage":
        w *= 0.5  # usage drives cost, indirectly
    return dim, round(w, 4)


# `impact_of` precomputed for every known domain and severity (it runs for every member added).
IMPACT = {(d, sev): impact_of(d, sev) for d in {*DOMAIN_BY_SOURCE.values(), *DOMAIN_BY_METRIC.values(), "other"}
          for sev in FINDING_SEVERITIES}
