"""What the correlator reports: a group's incident record (members with their roles, the event
graph, root cause and reasons), its edge rows, and which records also go to the alerts topic.

Roles: root_cause; effect (causal descendants of the root, or members in the pattern's effect
domains: not required to come after the root, detection delays differ across sources);
contributor (members in cause domains, or in the root's domain); related (the rest). Every effect
not already a child of the root gets a "causes" edge from it.
"""
from __future__ import annotations

from config.detection import CorrelationSettings, DetectionSettings
from operators.correlate.groups import Group
from operators.correlate.root_cause import (
    EFFECT_DOMAINS,
    ROOT_PRIOR,
    descendants,
    pattern_reasons,
    prior_reasons,
    root_cause,
)
from schemas.incidents import Anomaly, Incident, IncidentEdge, IncidentMember, Signal
from schemas.vocabulary import severity_rank


def should_alert(record: Anomaly | Incident, settings: DetectionSettings | None = None) -> bool:
    """High-severity anomalies and incidents go to the alerts topic too (incidents only while
    confident enough, and never their "merged" records).

    >>> from schemas.incidents import Anomaly
    >>> def spike(severity):
    ...     return Anomaly(id="a1", metric="latency_ms", window_start_ms=0, anomaly_type="spike", score=0.97,
    ...                    expected=100.0, spread=5.0, observed=400.0, detector="robust_z", severity=severity)
    >>> should_alert(spike("critical")), should_alert(spike("medium"))
    (True, False)
    """
    s = settings or DetectionSettings()
    if isinstance(record, Incident):
        if record.status == "merged" or record.confidence < s.correlation.min_confidence:
            return False
    return severity_rank(record.severity) >= severity_rank(s.alert_severity)


def incident_edges(incident: Incident) -> list[IncidentEdge]:
    """Rows for ClickHouse `incident_edges` (the incident's event graph, at its version)."""
    return list(incident.edges)


def build_incident(g: Group, status: str, version: int, settings: CorrelationSettings) -> Incident | None:
    """The incident record for a group at this version, or None if it does not qualify (yet)."""
    st = g.stats()
    # once emitted, a group keeps being reported (so its close record is written too)
    if not g.emitted and (len(g.members) < 2 or (st.nfacets < 2 and not (st.parent_of or st.same_corr))):
        return None
    pattern = st.pattern()
    confidence = st.confidence(pattern)
    if confidence < settings.min_confidence and not g.emitted:
        return None
    members = sorted(g.members.values(), key=_time_id)
    dom_of = st.dom
    root, n_desc = root_cause(g, st, pattern)
    best = g.members[root]
    if n_desc >= 0:
        reasons = [f"earliest ancestor of the causal chain: {best.source} {best.kind} is the parent of "
                   f"{n_desc} member(s) through parent-event links"]
    else:
        reasons = prior_reasons(members, best, dom_of[root], pattern)
    # roles: see the module docstring
    desc = descendants(root, st.children) if st.children else set()
    effects = EFFECT_DOMAINS.get(pattern, frozenset())
    prior = ROOT_PRIOR.get(pattern, {})
    root_dom = dom_of[root]
    by_dom = {d: ("effect" if d in effects else
                  "contributor" if prior.get(d, 0.0) >= 0.5 or d == root_dom else "related") for d in st.doms}
    gid = g.id
    edges = [IncidentEdge(incident_id=gid, from_id=a, to_id=b, relationship=rel, weight=w, time_ms=t,
                          version=version) for a, b, rel, w, t in g.edges]
    have = set(st.children.get(root, ()))
    root_t = best.time_ms
    conf4 = round(confidence, 4)
    out_members = []
    for m in members:
        mid = m.id
        if mid == root:
            role = "root_cause"
        elif mid in desc:
            role = "effect"
        else:
            role = by_dom[dom_of[mid]]
        if role == "effect" and mid not in have:
            edges.append(IncidentEdge(incident_id=gid, from_id=root, to_id=mid, relationship="causes",
                                      weight=conf4, time_ms=max(root_t, m.time_ms), version=version))
        out_members.append(IncidentMember(signal_id=mid, role=role, source=m.source, kind=m.kind, asset=m.asset,
                                          time_ms=m.time_ms, severity=m.severity, metric=m.metric,
                                          value=m.value, score=m.score))
    return Incident(
        id=gid, version=version, status=status, pattern=pattern, confidence=conf4,
        severity=st.severity(), opened_ms=g.opened_ms, start_ms=st.t_min, end_ms=st.t_max,
        assets=sorted(st.assets), members=out_members, impact=dict(st.impact), root_cause_id=root,
        root_cause_reasons=reasons, pattern_reasons=pattern_reasons(st, pattern), edges=edges,
        overflow=g.overflow)


def _time_id(m: Signal) -> tuple[int, str]:
    return (m.time_ms, m.id)
