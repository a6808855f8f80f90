"""Cross-source correlation: group signals (events worth correlating, and anomalies) into incidents.

`Correlator.add(signal)` links the signal to what it belongs with:
  (a) causal chain: the signal's parent (parent_id), children that named it as parent before it
      arrived, and the latest signal with the same correlation_id;
  (b) temporal: for the same asset, the latest earlier signal of each other facet within
      `window_ms` (relationship "temporal" across domains, "same_asset" within one domain).
Linked signals form one group (union of connected signals, oldest group survives a merge). A group
becomes an incident once it has two facets (distinct domain/metric/kind) or a causal link, and its
confidence reaches `min_confidence`. `add` returns the incidents this signal created or changed
(each emitted change bumps `version`, same `id`; see `_emit_if_ready` for when), plus "merged"
records for groups absorbed into another.
`flush(now_ms)` closes groups idle for `window_ms` of event time and returns their final record.

Pattern (first that applies): security_incident (a security signal), compliance_cascade (two
compliance signals, or one followed by another domain), cost_impact (a cost signal),
performance_degradation (a performance signal), generic.

Root cause: the earliest member with no parent in the group when causal links exist; otherwise the
member with the highest prior for the pattern (e.g. a registry change, a security finding, a
token-usage surge before a cost spike) plus an earliness bonus. Roles: root_cause; effect (causal
descendants of the root, or later members in the pattern's effect domains); contributor (other
members in cause domains); related (the rest).

Confidence is a noisy-OR of independent pieces of evidence (documented in `_confidence`), so
each piece can only raise it and it stays in 0..1. Everything is deterministic for a given input
order (ids from signal ids, sorted iteration), bounded (open groups, remembered signals, members
per incident) and picklable (Bytewax snapshots).
"""
from __future__ import annotations

from collections import OrderedDict, deque

from config.detection import CorrelationSettings, DetectionSettings, severity_rank
from schemas.incidents import Anomaly, Incident, IncidentEdge, IncidentMember, Signal, stable_id

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
SEVERITIES = ("info", "low", "medium", "high", "critical")

# Prior that a member of a domain is the root cause, per pattern (a change to the system is the
# classic cause; effects show up in performance and cost).
ROOT_PRIOR: dict[str, dict[str, float]] = {
    "security_incident": {"security": 1.0, "change": 0.7, "compliance": 0.5, "usage": 0.4, "performance": 0.2, "cost": 0.1},
    "compliance_cascade": {"compliance": 1.0, "change": 0.7, "security": 0.5, "usage": 0.3, "performance": 0.2, "cost": 0.1},
    "cost_impact": {"change": 1.0, "usage": 0.8, "performance": 0.4, "security": 0.4, "compliance": 0.3, "cost": 0.2},
    "performance_degradation": {"change": 1.0, "usage": 0.7, "security": 0.5, "performance": 0.4, "compliance": 0.3, "cost": 0.2},
    "generic": {},
}
EFFECT_DOMAINS: dict[str, frozenset[str]] = {
    "security_incident": frozenset({"performance", "cost", "usage", "compliance"}),
    "compliance_cascade": frozenset({"security", "cost", "performance", "usage"}),
    "cost_impact": frozenset({"cost"}),
    "performance_degradation": frozenset({"performance"}),
    "generic": frozenset(),
}
EARLINESS_BONUS = 0.3
MAX_TEMPORAL_LINKS = 8
SMALL_INCIDENT = 16
ASSET_RECENT = 64


def domain_of(s: Signal) -> str:
    if s.source == "anomaly":
        return DOMAIN_BY_METRIC.get(s.metric, "performance")
    return DOMAIN_BY_SOURCE.get(s.source, "other")


def facet_of(s: Signal) -> str:
    """What makes two signals different evidence: domain plus metric (anomalies) or kind."""
    return f"{domain_of(s)}:{s.metric or s.kind}"


def signal_from_anomaly(a: Anomaly) -> Signal:
    """The correlator's view of an anomaly: asset = model (or endpoint), time = window start."""
    tags = {"endpoint": a.endpoint, "team": a.team, "detector": a.detector}
    tags.update(a.tags)
    return Signal(id=a.id, time_ms=a.window_start_ms, source="anomaly", kind=a.anomaly_type,
                  asset=a.model or a.endpoint, severity=a.severity, metric=a.metric, value=a.observed,
                  score=a.score, tags=tags)


def should_alert(record: Anomaly | Incident, settings: DetectionSettings | None = None) -> bool:
    """High-severity anomalies and incidents go to the alerts topic too."""
    s = settings or DetectionSettings()
    if isinstance(record, Incident):
        if record.status == "merged" or record.confidence < s.correlation.min_confidence:
            return False
    return severity_rank(record.severity) >= severity_rank(s.alert_severity)


def incident_edges(incident: Incident) -> list[IncidentEdge]:
    """Rows for ClickHouse `incident_edges` (the incident's event graph, at its version)."""
    return list(incident.edges)


class _Group:
    __slots__ = ("id", "seed", "opened_ms", "members", "edges", "edge_keys", "version", "emitted", "last_ms",
                 "start_ms", "overflow", "dirty", "last_key", "last_n")

    def __init__(self, seed: Signal) -> None:
        self.id = stable_id("incident", seed.id)
        self.seed = seed.id
        self.opened_ms = seed.time_ms
        self.members: dict[str, Signal] = {seed.id: seed}
        self.edges: list[tuple[str, str, str, float, int]] = []  # from, to, relationship, weight, time
        self.edge_keys: set[tuple[str, str, str]] = set()
        self.version = 0
        self.emitted = False
        self.last_ms = seed.time_ms
        self.start_ms = seed.time_ms
        self.overflow = 0
        self.dirty = True
        self.last_key: tuple = ()
        self.last_n = 0

    def __getstate__(self) -> tuple:
        return tuple(getattr(self, s) for s in self.__slots__)

    def __setstate__(self, st: tuple) -> None:
        for k, v in zip(self.__slots__, st):
            setattr(self, k, v)

    def add_edge(self, a: str, b: str, rel: str, weight: float, t: int) -> None:
        key = (a, b, rel)
        if key not in self.edge_keys:
            self.edge_keys.add(key)
            self.edges.append((a, b, rel, weight, t))
            self.dirty = True


def _settings(settings: DetectionSettings | CorrelationSettings | None) -> CorrelationSettings:
    if settings is None:
        return CorrelationSettings()
    if isinstance(settings, DetectionSettings):
        return settings.correlation
    return settings


class Correlator:
    """Groups signals into incidents; see the module docstring."""

    def __init__(self, settings: DetectionSettings | CorrelationSettings | None = None) -> None:
        self.settings = _settings(settings)
        self.groups: dict[str, _Group] = {}
        self.sig_group: OrderedDict[str, str] = OrderedDict()  # signal id -> open group id
        self.corr_last: dict[str, str] = {}  # correlation id -> latest signal id
        self.asset_recent: dict[str, deque] = {}  # asset -> deque[(time, signal id, facet, domain)]
        self.pending: OrderedDict[str, list[tuple[str, int]]] = OrderedDict()  # parent id -> children
        self.max_ms = 0

    def __getstate__(self) -> dict:
        return {k: getattr(self, k) for k in ("settings", "groups", "sig_group", "corr_last", "asset_recent",
                                               "pending", "max_ms")}

    def __setstate__(self, st: dict) -> None:
        for k, v in st.items():
            setattr(self, k, v)

    # -- public API --------------------------------------------------------------------------
    def add(self, signal: Signal) -> list[Incident]:
        """Correlate one signal; returns incidents created or updated by it (and merge records)."""
        s = self.settings
        if not s.enabled or signal.id in self.sig_group:
            return []
        self.max_ms = max(self.max_ms, signal.time_ms)
        links: list[tuple[str, str, str, float]] = []  # (from, to, relationship, weight)
        # (a) causal chain
        if signal.parent_id:
            if signal.parent_id in self.sig_group:
                links.append((signal.parent_id, signal.id, "parent_of", 1.0))
            else:
                waiting = self.pending.setdefault(signal.parent_id, [])
                if len(waiting) < s.max_members:
                    waiting.append((signal.id, signal.time_ms))
                while len(self.pending) > s.max_tracked_signals:
                    self.pending.popitem(last=False)
        for child, _t in self.pending.pop(signal.id, ()):
            if child in self.sig_group:
                links.append((signal.id, child, "parent_of", 1.0))
        if signal.correlation_id:
            prev = self.corr_last.get(signal.correlation_id)
            if prev is not None and prev in self.sig_group:
                links.append((prev, signal.id, "same_correlation", 1.0))
            self.corr_last[signal.correlation_id] = signal.id
        # (b) temporal, same asset
        if signal.asset:
            links.extend(self._temporal_links(signal))
        # groups involved
        gids = sorted({self.sig_group[o] for a, b, _, _ in links for o in (a, b) if o != signal.id and o in self.sig_group},
                      key=lambda g: (self.groups[g].opened_ms, g))
        out: list[Incident] = []
        if not gids:
            g = _Group(signal)
            self.groups[g.id] = g
        else:
            g = self.groups[gids[0]]
            for other in gids[1:]:
                out.extend(self._merge(g, self.groups[other]))
            if len(g.members) >= s.max_members:
                g.overflow += 1  # counted, not stored or indexed
                g.last_ms = max(g.last_ms, signal.time_ms)
                return out
            g.members[signal.id] = signal
            g.last_ms = max(g.last_ms, signal.time_ms)
            g.start_ms = min(g.start_ms, signal.time_ms)
            g.dirty = True
        for a, b, rel, w in links:
            ta = g.members[a].time_ms if a in g.members else signal.time_ms
            tb = g.members[b].time_ms if b in g.members else signal.time_ms
            g.add_edge(a, b, rel, w, max(ta, tb))
        self._index(signal, g.id)
        out.extend(self._bound(keep=g.id))
        inc = self._emit_if_ready(g, "open")
        if inc is not None:
            out.append(inc)
        return out

    def flush(self, now_ms: int) -> list[Incident]:
        """Close groups with no new member for `window_ms` before now_ms (event time); returns the
        final ("closed") record of each that was an incident. Also drops stale bookkeeping."""
        s = self.settings
        out: list[Incident] = []
        horizon = now_ms - s.window_ms
        for gid in sorted(self.groups, key=lambda k: (self.groups[k].opened_ms, k)):
            g = self.groups[gid]
            if g.last_ms < horizon:
                out.extend(self._close(g))
        for asset in list(self.asset_recent):
            dq = self.asset_recent[asset]
            while dq and dq[0][0] < horizon:
                dq.popleft()
            if not dq:
                del self.asset_recent[asset]
        stale = now_ms - s.pending_parent_ms
        for pid in [p for p, kids in self.pending.items() if all(t < stale for _, t in kids)]:
            del self.pending[pid]
        for cid in [c for c, sid in self.corr_last.items() if sid not in self.sig_group]:
            del self.corr_last[cid]
        return out

    def open_incidents(self) -> list[Incident]:
        """Current view of every open group that qualifies as an incident (for inspection)."""
        res = []
        for gid in sorted(self.groups, key=lambda k: (self.groups[k].opened_ms, k)):
            inc = self._build(self.groups[gid], "open", self.groups[gid].version)
            if inc is not None:
                res.append(inc)
        return res

    # -- internals ---------------------------------------------------------------------------
    def _temporal_links(self, signal: Signal) -> list[tuple[str, str, str, float]]:
        s = self.settings
        dq = self.asset_recent.get(signal.asset)
        if not dq:
            return []
        dom = domain_of(signal)
        best: dict[str, tuple[int, str, str]] = {}
        for t, sid, f, d in dq:
            if abs(signal.time_ms - t) > s.window_ms or sid not in self.sig_group:
                continue
            g = self.groups.get(self.sig_group[sid])
            if g is None or signal.time_ms - g.start_ms > s.max_span_ms:
                continue
            cur = best.get(f)
            if cur is None or (t, sid) > (cur[0], cur[1]):
                best[f] = (t, sid, d)
        links = []
        for f in sorted(best, key=lambda k: (-best[k][0], best[k][1]))[:MAX_TEMPORAL_LINKS]:
            t, sid, d = best[f]
            proximity = 1.0 - abs(signal.time_ms - t) / s.window_ms
            rel = "temporal" if d != dom else "same_asset"
            a, b = (sid, signal.id) if (t, sid) <= (signal.time_ms, signal.id) else (signal.id, sid)
            links.append((a, b, rel, round(max(proximity, 0.0), 4)))
        return links

    def _index(self, signal: Signal, gid: str) -> None:
        self.sig_group[signal.id] = gid
        if signal.asset:
            dq = self.asset_recent.pop(signal.asset, None)  # re-inserted: least recently used first
            if dq is None:
                dq = deque(maxlen=ASSET_RECENT)
            self.asset_recent[signal.asset] = dq
            dq.append((signal.time_ms, signal.id, facet_of(signal), domain_of(signal)))

    def _bound(self, keep: str = "") -> list[Incident]:
        """Enforce the memory limits; groups pushed out are closed (their final record returned)."""
        s = self.settings
        out: list[Incident] = []
        while len(self.sig_group) > s.max_tracked_signals:
            self.sig_group.popitem(last=False)
        while len(self.corr_last) > s.max_tracked_signals:  # dicts keep insertion order: oldest first
            del self.corr_last[next(iter(self.corr_last))]
        while len(self.asset_recent) > max(s.max_tracked_signals // ASSET_RECENT, 1):
            del self.asset_recent[next(iter(self.asset_recent))]
        if len(self.groups) > s.max_open_incidents:
            excess = len(self.groups) - s.max_open_incidents
            for gid in sorted((k for k in self.groups if k != keep), key=lambda k: (self.groups[k].last_ms, k))[:excess]:
                out.extend(self._close(self.groups[gid]))
        return out

    def _merge(self, keep: _Group, gone: _Group) -> list[Incident]:
        out: list[Incident] = []
        for sid, sig in gone.members.items():
            if len(keep.members) < self.settings.max_members:
                keep.members[sid] = sig
            else:
                keep.overflow += 1
        keep.overflow += gone.overflow
        for e in gone.edges:
            keep.add_edge(*e)
        keep.last_ms = max(keep.last_ms, gone.last_ms)
        keep.start_ms = min(keep.start_ms, gone.start_ms)
        keep.dirty = True
        for sid in gone.members:
            if sid in keep.members:
                self.sig_group[sid] = keep.id
            else:
                self.sig_group.pop(sid, None)
        if gone.emitted:
            gone.version += 1
            out.append(Incident(id=gone.id, version=gone.version, status="merged", opened_ms=gone.opened_ms,
                                start_ms=gone.start_ms, end_ms=gone.last_ms, merged_into=keep.id))
        del self.groups[gone.id]
        return out

    def _emit_if_ready(self, g: _Group, status: str) -> Incident | None:
        """Emit every change of a small incident (< SMALL_INCIDENT members); for a larger one only
        when its pattern, root cause or severity changes or its member count doubles, the rest waits
        for the next emission or the close record (bounded output during alert storms)."""
        if not g.dirty:
            return None
        inc = self._build(g, status, g.version + 1)
        if inc is None:
            return None  # not an incident (yet): nothing emitted, version unchanged
        key = (inc.pattern, inc.root_cause_id, inc.severity)
        n = len(inc.members)
        if g.emitted and key == g.last_key and n >= SMALL_INCIDENT and n < 2 * g.last_n:
            return None
        self._mark_emitted(g, inc)
        return inc

    @staticmethod
    def _mark_emitted(g: _Group, inc: Incident) -> None:
        g.version = inc.version
        g.emitted = True
        g.dirty = False
        g.last_key = (inc.pattern, inc.root_cause_id, inc.severity)
        g.last_n = len(inc.members)

    def _close(self, g: _Group) -> list[Incident]:
        out = []
        if g.emitted or g.dirty:
            inc = self._build(g, "closed", g.version + 1)
            if inc is not None:
                self._mark_emitted(g, inc)
                out.append(inc)
        self._drop(g)
        return out

    def _drop(self, g: _Group) -> None:
        for sid in g.members:
            if self.sig_group.get(sid) == g.id:
                del self.sig_group[sid]
        self.groups.pop(g.id, None)

    def _build(self, g: _Group, status: str, version: int) -> Incident | None:
        """The incident record for a group, or None if it does not qualify (yet)."""
        s = self.settings
        members = sorted(g.members.values(), key=lambda m: (m.time_ms, m.id))
        facets = {facet_of(m) for m in members}
        causal = [e for e in g.edges if e[2] in ("parent_of", "same_correlation")]
        # once emitted, a group keeps being reported (so its close record is written too)
        if not g.emitted and (len(members) < 2 or (len(facets) < 2 and not causal)):
            return None
        domains = sorted({domain_of(m) for m in members})
        pattern, pattern_reasons = _classify(members)
        root, reasons = _root_cause(members, g.edges, pattern)
        confidence = _confidence(members, g.edges, pattern, s.window_ms)
        if confidence < s.min_confidence and not g.emitted:
            return None
        roles = _roles(members, g.edges, pattern, root)
        impact = _impact(members)
        sev = max((m.severity for m in members), key=severity_rank)
        if len(domains) >= 3 and severity_rank(sev) < 4:
            sev = SEVERITIES[severity_rank(sev) + 1]  # corroborated by three or more domains
        edges = [IncidentEdge(incident_id=g.id, from_id=a, to_id=b, relationship=rel, weight=w, time_ms=t,
                              version=version) for a, b, rel, w, t in g.edges]
        have = {(a, b) for a, b, rel, *_ in g.edges if rel == "parent_of"}
        root_t = g.members[root].time_ms
        for m in members:
            if roles[m.id] == "effect" and (root, m.id) not in have:
                edges.append(IncidentEdge(incident_id=g.id, from_id=root, to_id=m.id, relationship="causes",
                                          weight=round(confidence, 4), time_ms=max(root_t, m.time_ms),
                                          version=version))
        return Incident(
            id=g.id, version=version, status=status, pattern=pattern, confidence=round(confidence, 4),
            severity=sev, opened_ms=g.opened_ms, start_ms=members[0].time_ms, end_ms=max(m.time_ms for m in members),
            assets=sorted({m.asset for m in members if m.asset}),
            members=[IncidentMember(signal_id=m.id, role=roles[m.id], source=m.source, kind=m.kind, asset=m.asset,
                                    time_ms=m.time_ms, severity=m.severity, metric=m.metric, value=m.value,
                                    score=m.score) for m in members],
            impact=impact, root_cause_id=root, root_cause_reasons=reasons, pattern_reasons=pattern_reasons,
            edges=edges, overflow=g.overflow)


def _classify(members: list[Signal]) -> tuple[str, list[str]]:
    by_dom: dict[str, list[Signal]] = {}
    for m in members:
        by_dom.setdefault(domain_of(m), []).append(m)
    doms = set(by_dom)
    if "security" in doms:
        kinds = sorted({m.metric or m.kind for m in by_dom["security"]})
        others = sorted(doms - {"security"})
        return "security_incident", [f"security signal(s): {', '.join(kinds)}"] + (
            [f"together with {', '.join(others)} signals"] if others else [])
    if "compliance" in doms:
        comp = by_dom["compliance"]
        first = min(m.time_ms for m in comp)
        later = sorted({d for d in doms - {"compliance", "change"} if any(m.time_ms >= first for m in by_dom[d])})
        if len(comp) >= 2 or later:
            reasons = [f"{len(comp)} compliance/policy signal(s)"]
            if later:
                reasons.append(f"followed by {', '.join(later)} signals")
            return "compliance_cascade", reasons
    if "cost" in doms:
        drivers = sorted(doms & {"usage", "performance", "change"})
        return "cost_impact", ["cost signal(s)"] + ([f"with {', '.join(drivers)} signals"] if drivers else [])
    if "performance" in doms:
        metrics = sorted({m.metric or m.kind for m in by_dom["performance"]})
        return "performance_degradation", [f"performance signal(s): {', '.join(metrics)}"]
    return "generic", [f"domains: {', '.join(sorted(doms))}"]


def _children(edges: list[tuple]) -> dict[str, list[str]]:
    ch: dict[str, list[str]] = {}
    for a, b, rel, *_ in edges:
        if rel == "parent_of":
            ch.setdefault(a, []).append(b)
    return ch


def _descendants(root: str, children: dict[str, list[str]]) -> set[str]:
    seen: set[str] = set()
    stack = [root]
    while stack:
        for c in children.get(stack.pop(), ()):
            if c not in seen:
                seen.add(c)
                stack.append(c)
    return seen


def _root_cause(members: list[Signal], edges: list[tuple], pattern: str) -> tuple[str, list[str]]:
    ids = {m.id for m in members}
    children = _children(edges)
    has_parent = {b for a, b, rel, *_ in edges if rel == "parent_of" and a in ids}
    if children:
        roots = [m for m in members if m.id not in has_parent and m.id in children]
        if roots:
            best = max(roots, key=lambda m: (len(_descendants(m.id, children) & ids), -m.time_ms, m.id))
            n = len(_descendants(best.id, children) & ids)
            return best.id, [f"earliest ancestor of the causal chain: {best.source} {best.kind} is the parent of "
                             f"{n} member(s) through parent-event links"]
    prior = ROOT_PRIOR.get(pattern, {})
    t0 = members[0].time_ms
    span = max(members[-1].time_ms - t0, 1)
    def score(m: Signal) -> tuple[float, int, str]:
        return (prior.get(domain_of(m), 0.0) + EARLINESS_BONUS * (1.0 - (m.time_ms - t0) / span), -m.time_ms, m.id)
    best = max(members, key=score)
    reasons = []
    dom = domain_of(best)
    if prior:
        reasons.append(f"{dom} signals are the most likely cause in a {pattern.replace('_', ' ')} (prior {prior.get(dom, 0.0):.1f})")
    later = [m for m in members if m.time_ms > best.time_ms]
    if best.time_ms == t0:
        reasons.append("earliest member of the incident")
    earlier = [m for m in members if m.time_ms < best.time_ms]
    if later:
        lead_s = (min(m.time_ms for m in later) - best.time_ms) // 1000
        reasons.append(f"precedes {len(later)} other member(s), the first by {lead_s} s")
    if earlier:
        lag_s = (best.time_ms - members[0].time_ms) // 1000
        reasons.append(f"seen {lag_s} s after the first member (detection delays differ across sources)")
    what = best.metric or best.kind
    reasons.append(f"{best.source} {what}" + (f" on {best.asset}" if best.asset else ""))
    return best.id, reasons


def _roles(members: list[Signal], edges: list[tuple], pattern: str, root: str) -> dict[str, str]:
    ids = {m.id for m in members}
    desc = _descendants(root, _children(edges)) & ids
    effects = EFFECT_DOMAINS.get(pattern, frozenset())
    prior = ROOT_PRIOR.get(pattern, {})
    roles = {}
    for m in members:
        d = domain_of(m)
        if m.id == root:
            roles[m.id] = "root_cause"
        elif m.id in desc or d in effects:
            # not required to come after the root: detection delays differ across sources
            roles[m.id] = "effect"
        elif prior.get(d, 0.0) >= 0.5 or d == domain_of(next(x for x in members if x.id == root)):
            roles[m.id] = "contributor"
        else:
            roles[m.id] = "related"
    return roles


def _confidence(members: list[Signal], edges: list[tuple], pattern: str, window_ms: int) -> float:
    """Noisy-OR of evidence pieces (each in 0..1, independent):
    - causal links: 0.8 with parent-event links, 0.6 with correlation-id links only;
    - cross-source corroboration: 0.35 per extra domain plus 0.25 per extra facet within a domain
      (capped at 0.7);
    - time proximity of temporal links: 0.3 x mean link proximity (1 = same time, 0 = window apart);
    - a seed pattern matched: 0.15;
    - severity: 0.1 if any member is high or critical.
    """
    rels = {e[2] for e in edges}
    ev = []
    if "parent_of" in rels:
        ev.append(0.8)
    elif "same_correlation" in rels:
        ev.append(0.6)
    doms = {domain_of(m) for m in members}
    facets = {facet_of(m) for m in members}
    ev.append(min(0.7, 0.35 * (len(doms) - 1) + 0.25 * (len(facets) - len(doms))))
    prox = [e[3] for e in edges if e[2] in ("temporal", "same_asset")]
    if prox:
        ev.append(0.3 * sum(prox) / len(prox))
    if pattern != "generic":
        ev.append(0.15)
    if any(severity_rank(m.severity) >= 3 for m in members):
        ev.append(0.1)
    p = 1.0
    for e in ev:
        p *= 1.0 - max(0.0, min(e, 1.0))
    return 1.0 - p


def _impact(members: list[Signal]) -> dict[str, float]:
    out = {"performance": 0.0, "cost": 0.0, "security": 0.0, "compliance": 0.0}
    for m in members:
        dim = IMPACT_OF.get(domain_of(m))
        if dim is None:
            continue
        w = SEVERITY_WEIGHT.get(m.severity, 0.1)
        if dim == "cost" and domain_of(m) == "usage":
            w *= 0.5  # usage drives cost, indirectly
        out[dim] = max(out[dim], round(w, 4))
    return out
