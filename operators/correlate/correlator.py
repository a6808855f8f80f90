"""Cross-source correlation: group signals (events worth correlating, and anomalies) into incidents.

`Correlator.add(signal)` links the signal to what it belongs with:
  (a) causal chain: the signal's parent (parent_id), children that named it as parent before it
      arrived, and the latest signal with the same correlation_id;
  (b) temporal: for the same asset, among its ASSET_RECENT most recently added signals, the latest
      one of each facet within `window_ms` of it (before or after: sources report late) whose
      group is open and would not span more than `max_span_ms`; at most MAX_TEMPORAL_LINKS, the
      latest (relationship "temporal" across domains, "same_asset" within one domain).
Linked signals form one group (union of connected signals, oldest group survives a merge). A group
becomes an incident once it has two facets (distinct domain/metric/kind) or a causal link, and its
confidence reaches `min_confidence`. `add` returns the incidents this signal created or changed
(each emitted change bumps `version`, same `id`; see `_emit_if_ready` for when), plus "merged"
records for groups absorbed into another.
`flush(now_ms)` closes groups idle for `window_ms` of event time and returns their final record.

Pattern (first that applies): security_incident (a security signal), compliance_cascade (two
compliance signals, or one followed by another domain), cost_impact (a cost signal),
performance_degradation (a performance signal), generic.

Root cause: with parent-event links, the member with no parent in the group that has the most
descendants in it (then the earliest); otherwise the member with the highest prior for the pattern
(e.g. a registry change, a security finding, a token-usage surge before a cost spike) plus an
earliness bonus. Roles: root_cause; effect (causal descendants of the root, or members in the
pattern's effect domains); contributor (members in cause domains, or in the root's domain);
related (the rest).

Confidence is a noisy-OR of independent pieces of evidence (documented in `_Stats.confidence`),
so each piece can only raise it and it stays in 0..1. Everything is deterministic for a given
input order (ids from signal ids, sorted iteration), bounded (open groups, remembered signals,
members per incident) and picklable (Bytewax snapshots).

Cost per signal (this is on the flow's hot path): whether a group's change is emitted is decided
from per-group running stats (`_Stats`: domains, facets, severity, evidence, root candidates),
updated as members and edges arrive; the incident record is only built when it is emitted.
Temporal linking walks a per-asset index of the recent signals sorted by time (`_AssetIndex`)
newest first from the signal's time and stops once no other facet can make the cut; signals no
longer tracked are taken out of the index until they are tracked again. Both are derived from the
snapshotted state and rebuilt after a restore, so snapshots hold exactly what they held before.
"""
from __future__ import annotations

import heapq
import math
from bisect import bisect_left, bisect_right, insort
from collections import OrderedDict, deque

from config.detection import CorrelationSettings, DetectionSettings
from schemas.vocabulary import FINDING_SEVERITIES, severity_rank
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
SEVERITIES = FINDING_SEVERITIES

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


_UNSET: tuple = ("<unset>",)  # a cache not filled yet


def _impact_of(d: str, severity: str) -> tuple[str, float] | None:
    """(impact dimension, weight) of a member of domain d with this severity; None: no impact."""
    dim = IMPACT_OF.get(d)
    if dim is None:
        return None
    w = SEVERITY_WEIGHT.get(severity, 0.1)
    if dim == "cost" and d == "usage":
        w *= 0.5  # usage drives cost, indirectly
    return dim, round(w, 4)


_RANK = {sev: severity_rank(sev) for sev in SEVERITIES}
_IMPACT = {(d, sev): _impact_of(d, sev) for d in {*DOMAIN_BY_SOURCE.values(), *DOMAIN_BY_METRIC.values(), "other"}
           for sev in SEVERITIES}


class _Stats:
    """What the emission rules and `_build` need about a group, kept up to date as members and
    edges are added (so `add` does not rebuild the incident to find out whether to emit it).
    Derived from the group's members and edges only: never pickled, rebuilt on first use after a
    restore (or after a member is replaced by a different signal with the same id)."""

    __slots__ = ("dom", "doms", "what", "nfacets", "assets", "sev", "impact", "t_min", "t_max", "parent_of",
                 "same_corr", "prox", "children", "pnodes", "croot")

    def __init__(self) -> None:
        self.dom: dict[str, str] = {}  # member id -> domain
        self.doms: dict[str, list] = {}  # domain -> [members, earliest time, max id at that time, latest time]
        self.what: dict[str, set[str]] = {}  # domain -> metrics/kinds (facet = domain + one of these)
        self.nfacets = 0
        self.assets: set[str] = set()
        self.sev: tuple = (-1, 0, "", "")  # (rank, time, id, severity) of the first most severe member
        self.impact = {"performance": 0.0, "cost": 0.0, "security": 0.0, "compliance": 0.0}
        self.t_min = 0
        self.t_max = 0
        self.parent_of = False  # any parent_of edge
        self.same_corr = False  # any same_correlation edge
        self.prox: list[float] = []  # weights of the temporal/same_asset edges, in edge order
        self.children: dict[str, list[str]] = {}  # parent_of edges: from -> [to]
        self.pnodes: set[str] = set()  # ids at either end of a parent_of edge
        self.croot: tuple | None = _UNSET  # cached causal root: (id, descendants in group) or None

    def add_member(self, sig: Signal, d: str, what: str) -> None:
        sid, t = sig.id, sig.time_ms
        self.dom[sid] = d
        ds = self.doms.get(d)
        if ds is None:
            self.doms[d] = [1, t, sid, t]
            self.what[d] = {what}
            self.nfacets += 1
        else:
            ds[0] += 1
            if t < ds[1]:
                ds[1], ds[2] = t, sid
            elif t == ds[1] and sid > ds[2]:
                ds[2] = sid
            if t > ds[3]:
                ds[3] = t
            w = self.what[d]
            if what not in w:
                w.add(what)
                self.nfacets += 1
        if len(self.dom) == 1:
            self.t_min = self.t_max = t
        elif t < self.t_min:
            self.t_min = t
        elif t > self.t_max:
            self.t_max = t
        if sig.asset:
            self.assets.add(sig.asset)
        sev = sig.severity
        r = _RANK.get(sev)
        if r is None:
            r = severity_rank(sev)
        b = self.sev
        if r > b[0] or (r == b[0] and (t < b[1] or (t == b[1] and sid < b[2]))):
            self.sev = (r, t, sid, sev)
        imp = _IMPACT.get((d, sev), _UNSET)
        if imp is _UNSET:
            imp = _impact_of(d, sev)
        if imp is not None and imp[1] > self.impact[imp[0]]:
            self.impact[imp[0]] = imp[1]
        if sid in self.pnodes:
            self.croot = _UNSET

    def add_edge(self, a: str, b: str, rel: str, weight: float) -> None:
        if rel == "parent_of":
            self.parent_of = True
            self.children.setdefault(a, []).append(b)
            self.pnodes.add(a)
            self.pnodes.add(b)
            self.croot = _UNSET
        elif rel == "same_correlation":
            self.same_corr = True
        elif rel in ("temporal", "same_asset"):
            self.prox.append(weight)

    def pattern(self) -> str:
        doms = self.doms
        if "security" in doms:
            return "security_incident"
        comp = doms.get("compliance")
        if comp is not None:
            if comp[0] >= 2 or any(ds[3] >= comp[1] for d, ds in doms.items() if d not in ("compliance", "change")):
                return "compliance_cascade"
        if "cost" in doms:
            return "cost_impact"
        if "performance" in doms:
            return "performance_degradation"
        return "generic"

    def severity(self) -> str:
        rank, sev = self.sev[0], self.sev[3]
        if len(self.doms) >= 3 and rank < 4:
            sev = SEVERITIES[rank + 1]  # corroborated by three or more domains
        return sev

    def confidence(self, pattern: str) -> float:
        """Noisy-OR of evidence pieces (each in 0..1, independent):
        - causal links: 0.8 with parent-event links, 0.6 with correlation-id links only;
        - cross-source corroboration: 0.35 per extra domain plus 0.25 per extra facet within a
          domain (capped at 0.7);
        - time proximity of temporal links: 0.3 x mean link proximity (1 = same time, 0 = window apart);
        - a seed pattern matched: 0.15;
        - severity: 0.1 if any member is high or critical.
        """
        ev = []
        if self.parent_of:
            ev.append(0.8)
        elif self.same_corr:
            ev.append(0.6)
        ndoms = len(self.doms)
        ev.append(min(0.7, 0.35 * (ndoms - 1) + 0.25 * (self.nfacets - ndoms)))
        prox = self.prox
        if prox:
            ev.append(0.3 * sum(prox) / len(prox))
        if pattern != "generic":
            ev.append(0.15)
        if self.sev[0] >= 3:
            ev.append(0.1)
        p = 1.0
        for e in ev:
            p *= 1.0 - max(0.0, min(e, 1.0))
        return 1.0 - p


class _Group:
    __slots__ = ("id", "seed", "opened_ms", "members", "edges", "edge_keys", "version", "emitted", "last_ms",
                 "start_ms", "overflow", "dirty", "last_key", "last_n", "st")
    _STATE = __slots__[:-1]  # pickled (the derived `st` is rebuilt on demand)

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
        self.st: _Stats | None = None

    def __getstate__(self) -> tuple:
        return tuple(getattr(self, s) for s in self._STATE)

    def __setstate__(self, st: tuple) -> None:
        for k, v in zip(self._STATE, st):
            setattr(self, k, v)
        self.st = None

    def stats(self) -> _Stats:
        st = self.st
        if st is None:
            st = self.st = _Stats()
            for sig in self.members.values():
                d = domain_of(sig)
                st.add_member(sig, d, sig.metric or sig.kind)
            for a, b, rel, w, _t in self.edges:
                st.add_edge(a, b, rel, w)
        return st

    def add_member(self, sig: Signal, d: str) -> None:
        old = self.members.get(sig.id)
        self.members[sig.id] = sig
        self.dirty = True
        if self.st is not None:
            if old is None:
                self.st.add_member(sig, d, sig.metric or sig.kind)
            elif old != sig:
                self.st = None  # replaced by a different signal with the same id: rebuild

    def add_links(self, links: list[tuple[str, str, str, float]], t: int) -> None:
        """Add (from, to, relationship, weight) links of a new signal at time t as edges (their
        time: the later of the two ends, t for an end that is not a member), skipping known ones."""
        keys, mine, st, members = self.edge_keys, self.edges, self.st, self.members
        for a, b, rel, w in links:
            key = (a, b, rel)
            if key in keys:
                continue
            keys.add(key)
            ta = members[a].time_ms if a in members else t
            tb = members[b].time_ms if b in members else t
            mine.append((a, b, rel, w, ta if ta > tb else tb))
            self.dirty = True
            if st is not None:
                if rel == "temporal" or rel == "same_asset":
                    st.prox.append(w)
                else:
                    st.add_edge(a, b, rel, w)

    def add_edges(self, edges: list[tuple[str, str, str, float, int]]) -> None:
        """Add (from, to, relationship, weight, time) edges, skipping ones already there."""
        keys, mine, st = self.edge_keys, self.edges, self.st
        for e in edges:
            key = e[:3]
            if key in keys:
                continue
            keys.add(key)
            mine.append(e)
            self.dirty = True
            if st is not None:
                rel = e[2]
                if rel == "temporal" or rel == "same_asset":
                    st.prox.append(e[3])
                else:
                    st.add_edge(e[0], e[1], rel, e[3])


class _AssetIndex:
    """The entries of one asset's `asset_recent` deque sorted by (time, signal id), with a count
    per facet, so temporal linking walks back from the signal's time and stops early. Derived
    from the deque: never pickled."""

    __slots__ = ("entries", "facets")

    def __init__(self, entries=()) -> None:
        self.entries: list[tuple[int, str, str, str]] = sorted(entries)
        self.facets: dict[str, int] = {}
        for e in self.entries:
            self.facets[e[2]] = self.facets.get(e[2], 0) + 1

    def insert(self, e: tuple) -> None:
        lst = self.entries
        if not lst or lst[-1] <= e:
            lst.append(e)
        else:
            insort(lst, e)
        self.facets[e[2]] = self.facets.get(e[2], 0) + 1

    def remove(self, e: tuple) -> None:
        lst = self.entries
        del lst[bisect_left(lst, e)]
        n = self.facets[e[2]] - 1
        if n:
            self.facets[e[2]] = n
        else:
            del self.facets[e[2]]


def _settings(settings: DetectionSettings | CorrelationSettings | None) -> CorrelationSettings:
    if settings is None:
        return CorrelationSettings()
    if isinstance(settings, DetectionSettings):
        return settings.correlation
    return settings


def _time(e: tuple) -> int:
    return e[0]


def _time_id(m: Signal) -> tuple[int, str]:
    return (m.time_ms, m.id)


def _newest_first(e: tuple) -> tuple[int, str]:
    return (-e[0], e[1])


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
        # Derived, not pickled: asset -> its asset_recent entries by time, and the entries taken
        # out of that index because their signal left sig_group (signal id -> [(asset, entry)]),
        # put back if the id is tracked again.
        self.by_time: dict[str, _AssetIndex] = {}
        self.parked: dict[str, list[tuple[str, tuple]]] = {}
        # Derived: a lazy min-heap of (last_ms, group id) for evicting the least recently active
        # group past max_open_incidents without scanning all of them on every signal.
        self.by_last: list[tuple[int, str]] = []

    def __getstate__(self) -> dict:
        return {k: getattr(self, k) for k in ("settings", "groups", "sig_group", "corr_last", "asset_recent",
                                               "pending", "max_ms")}

    def __setstate__(self, st: dict) -> None:
        for k, v in st.items():
            setattr(self, k, v)
        self.by_time = {a: _AssetIndex(dq) for a, dq in self.asset_recent.items()}
        self.parked = {}
        self.by_last = [(g.last_ms, gid) for gid, g in self.groups.items()]
        heapq.heapify(self.by_last)

    # -- public API --------------------------------------------------------------------------
    def add(self, signal: Signal) -> list[Incident]:
        """Correlate one signal; returns incidents created or updated by it (and merge records)."""
        s = self.settings
        sid = signal.id
        sig_group = self.sig_group
        if not s.enabled or sid in sig_group:
            return []
        t = signal.time_ms
        if t > self.max_ms:
            self.max_ms = t
        links: list[tuple[str, str, str, float]] = []  # (from, to, relationship, weight)
        # (a) causal chain
        if signal.parent_id:
            if signal.parent_id in sig_group:
                links.append((signal.parent_id, sid, "parent_of", 1.0))
            else:
                waiting = self.pending.setdefault(signal.parent_id, [])
                if len(waiting) < s.max_members:
                    waiting.append((sid, t))
                while len(self.pending) > s.max_tracked_signals:
                    self.pending.popitem(last=False)
        if self.pending:
            for child, _t in self.pending.pop(sid, ()):
                if child in sig_group:
                    links.append((sid, child, "parent_of", 1.0))
        if signal.correlation_id:
            prev = self.corr_last.get(signal.correlation_id)
            if prev is not None and prev in sig_group:
                links.append((prev, sid, "same_correlation", 1.0))
            self.corr_last[signal.correlation_id] = sid
        dom = domain_of(signal)
        # (b) temporal, same asset
        if signal.asset:
            links.extend(self._temporal_links(signal, dom))
        # groups involved
        groups = self.groups
        gset = set()
        for a, b, _, _ in links:  # one end is this signal (not tracked yet), the other is tracked
            gid = sig_group.get(b if a == sid else a)
            if gid is not None:
                gset.add(gid)
        gids = list(gset)
        if len(gids) > 1:
            gids.sort(key=lambda g: (groups[g].opened_ms, g))
        out: list[Incident] = []
        if not gids:
            g = _Group(signal)
            groups[g.id] = g
            heapq.heappush(self.by_last, (g.last_ms, g.id))
        else:
            g = groups[gids[0]]
            for other in gids[1:]:
                out.extend(self._merge(g, groups[other]))
            if len(g.members) >= s.max_members:
                g.overflow += 1  # counted, not stored or indexed
                if t > g.last_ms:
                    g.last_ms = t
                return out
            g.add_member(signal, dom)
            if t > g.last_ms:
                g.last_ms = t
            if t < g.start_ms:
                g.start_ms = t
        if links:
            g.add_links(links, t)
        self._index(signal, g.id, dom)
        if (len(sig_group) > s.max_tracked_signals or len(self.corr_last) > s.max_tracked_signals
                or len(self.asset_recent) > max(s.max_tracked_signals // ASSET_RECENT, 1)
                or len(groups) > s.max_open_incidents):
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
        idle = [self.groups[gid] for gid in self._idle_before(horizon)]
        idle.sort(key=lambda g: (g.opened_ms, g.id))
        for g in idle:
            out.extend(self._close(g))
        for asset in list(self.asset_recent):
            dq = self.asset_recent[asset]
            while dq and dq[0][0] < horizon:
                self._unindex(asset, dq.popleft())
            if not dq:
                del self.asset_recent[asset]
                del self.by_time[asset]
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
    def _temporal_links(self, signal: Signal, dom: str) -> list[tuple[str, str, str, float]]:
        """For each facet among the asset's recent signals, the latest one within `window_ms` of
        the signal (either side) whose group is still open and would not span more than
        `max_span_ms` with it; the MAX_TEMPORAL_LINKS latest of those (ties: smaller id first).
        Walks the asset's entries from the signal's time back, newest first, so it stops after
        enough facets instead of looking at every recent signal."""
        idx = self.by_time.get(signal.asset)
        if idx is None:
            return []
        s = self.settings
        lst = idx.entries
        if not lst:
            return []
        T = signal.time_ms
        W = s.window_ms
        i = len(lst)
        if lst[-1][0] > T + W:
            i = bisect_right(lst, T + W, key=_time)
        lo = T - W
        max_span = s.max_span_ms
        sg_get, groups_get = self.sig_group.get, self.groups.get
        nfacets = len(idx.facets)
        found: set[str] = set()
        picked: list[tuple] = []  # the latest valid entry of each facet, newest first
        n = 0
        t_prev = t_last = -math.inf  # t_last: time of the MAX_TEMPORAL_LINKS-th pick (older facets miss the cut)
        tie = False  # two picks at the same time: they are ordered by id (smaller first)
        last_gid = None
        ok = False
        for e in (reversed(lst) if i == len(lst) else lst[i - 1::-1] if i else ()):
            t = e[0]
            if t < lo:
                break
            f = e[2]
            if f in found:
                continue
            if t < t_last:
                break
            gid = sg_get(e[1])
            if gid is None:  # no longer tracked: out of the index until it is again
                idx.remove(e)
                self.parked.setdefault(e[1], []).append((signal.asset, e))
                continue
            if gid is not last_gid:  # runs of entries usually share a group
                last_gid = gid
                g = groups_get(gid)
                ok = g is not None and T - g.start_ms <= max_span
            if not ok:
                continue
            found.add(f)
            picked.append(e)
            if t == t_prev:
                tie = True
            t_prev = t
            n += 1
            if n == nfacets:
                break
            if n == MAX_TEMPORAL_LINKS:
                t_last = t
        if tie:
            picked.sort(key=_newest_first)
            if len({e[1] for e in picked}) < n:
                # one id under several facets (an id re-delivered with other content): such ties
                # are ordered as in the deque, which the plain scan does
                return self._temporal_links_scan(signal, dom)
            del picked[MAX_TEMPORAL_LINKS:]
        sid = signal.id
        links = []
        for t, other, _f, d in picked:
            rel = "temporal" if d != dom else "same_asset"
            gap = T - t if t < T else t - T
            # weight: the proximity 1 - gap / W (in 0..1) rounded to 4 decimals. In integers
            # (exactly the double round(1.0 - gap / W, 4) gives, as the proximity is never within
            # a rounding error of a half unless it is exactly one: then round() decides)
            q, r = divmod((W - gap) * 10000, W)
            r += r
            if r < W and W < 10**10:
                w = q / 10000
            elif r > W and W < 10**10:
                w = (q + 1) / 10000
            else:
                w = round(1.0 - gap / W, 4)
            if t < T or (t == T and other <= sid):
                links.append((other, sid, rel, w))
            else:
                links.append((sid, other, rel, w))
        return links

    def _temporal_links_scan(self, signal: Signal, dom: str) -> list[tuple[str, str, str, float]]:
        """`_temporal_links` by a plain scan of the asset's deque (reference; ties on one id)."""
        s = self.settings
        best: dict[str, tuple[int, str, str]] = {}
        for t, sid, f, d in self.asset_recent.get(signal.asset, ()):
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

    def _index(self, signal: Signal, gid: str, dom: str) -> None:
        self.sig_group[signal.id] = gid
        if self.parked:
            self._unpark(signal.id)
        asset = signal.asset
        if asset:
            dq = self.asset_recent.pop(asset, None)  # re-inserted: least recently used first
            if dq is None:
                dq = deque(maxlen=ASSET_RECENT)
                idx = self.by_time[asset] = _AssetIndex()
            else:
                idx = self.by_time[asset]
            self.asset_recent[asset] = dq
            if len(dq) == dq.maxlen:
                self._unindex(asset, dq[0])  # about to fall off the deque
            e = (signal.time_ms, signal.id, f"{dom}:{signal.metric or signal.kind}", dom)
            dq.append(e)
            idx.insert(e)

    def _unindex(self, asset: str, e: tuple) -> None:
        """`e` left the asset's deque: drop it from the index, or from the parked entries."""
        parked = self.parked.get(e[1])
        if parked is not None and (asset, e) in parked:
            parked.remove((asset, e))
            if not parked:
                del self.parked[e[1]]
        else:
            self.by_time[asset].remove(e)

    def _unpark(self, sid: str) -> None:
        for asset, e in self.parked.pop(sid, ()):
            self.by_time[asset].insert(e)

    def _bound(self, keep: str = "") -> list[Incident]:
        """Enforce the memory limits; groups pushed out are closed (their final record returned)."""
        s = self.settings
        out: list[Incident] = []
        while len(self.sig_group) > s.max_tracked_signals:
            self.sig_group.popitem(last=False)
        while len(self.corr_last) > s.max_tracked_signals:  # dicts keep insertion order: oldest first
            del self.corr_last[next(iter(self.corr_last))]
        while len(self.asset_recent) > max(s.max_tracked_signals // ASSET_RECENT, 1):
            asset = next(iter(self.asset_recent))
            for e in self.asset_recent.pop(asset):
                self._unindex(asset, e)
            del self.by_time[asset]
        if len(self.groups) > s.max_open_incidents:
            for gid in self._least_recent(len(self.groups) - s.max_open_incidents, keep):
                out.extend(self._close(self.groups[gid]))
        if len(self.by_last) > 2 * len(self.groups) + 1024:  # entries of closed groups pile up
            self.by_last = [(g.last_ms, gid) for gid, g in self.groups.items()]
            heapq.heapify(self.by_last)
        return out

    def _idle_before(self, horizon: int) -> list[str]:
        """Open groups whose last_ms < horizon."""
        out: dict[str, None] = {}
        while self.by_last and self.by_last[0][0] < horizon and (e := self._pop_oldest()) is not None:
            if e[0] >= horizon:
                heapq.heappush(self.by_last, e)
                break
            out[e[1]] = None
        return list(out)

    def _least_recent(self, n: int, keep: str) -> list[str]:
        """The n open groups with the smallest (last_ms, id), `keep` excluded."""
        out: dict[str, None] = {}
        held: list[tuple[int, str]] = []
        while len(out) < n and (e := self._pop_oldest()) is not None:
            if e[1] == keep:
                held.append(e)
            else:
                out[e[1]] = None
        for e in held:
            heapq.heappush(self.by_last, e)
        return list(out)

    def _pop_oldest(self) -> tuple[int, str] | None:
        """Pop the open group with the smallest (last_ms, id) off the lazy heap; the caller closes
        it or pushes it back.

        Every open group has an entry whose key is <= its current one (last_ms only grows), so an
        entry that matches its group's key is the true minimum; a stale one is requeued with the
        current key; entries of closed groups are dropped.
        """
        heap, groups = self.by_last, self.groups
        while heap:
            last, gid = heapq.heappop(heap)
            g = groups.get(gid)
            if g is None:
                continue
            if g.last_ms != last:
                heapq.heappush(heap, (g.last_ms, gid))
                continue
            return last, gid
        return None

    def _merge(self, keep: _Group, gone: _Group) -> list[Incident]:
        out: list[Incident] = []
        max_members = self.settings.max_members
        known = gone.st.dom if gone.st is not None else {}
        for sid, sig in gone.members.items():
            if len(keep.members) < max_members:
                d = known.get(sid)
                keep.add_member(sig, d if d is not None else domain_of(sig))
            else:
                keep.overflow += 1
        keep.overflow += gone.overflow
        keep.add_edges(gone.edges)
        keep.last_ms = max(keep.last_ms, gone.last_ms)
        keep.start_ms = min(keep.start_ms, gone.start_ms)
        keep.dirty = True
        parked = self.parked
        for sid in gone.members:
            if sid in keep.members:
                self.sig_group[sid] = keep.id
                if parked and sid in parked:
                    self._unpark(sid)
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
        for the next emission or the close record (bounded output during alert storms).
        Decided from the group's running stats; the record is only built when it is emitted."""
        if not g.dirty:
            return None
        n = len(g.members)
        if not g.emitted:
            if n < 2:
                return None
            st = g.stats()
            if st.nfacets < 2 and not (st.parent_of or st.same_corr):
                return None  # not an incident (yet): nothing emitted, version unchanged
            if st.confidence(st.pattern()) < self.settings.min_confidence:
                return None
        elif n >= SMALL_INCIDENT and n < 2 * g.last_n:
            st = g.stats()
            pattern = st.pattern()
            last = g.last_key
            if pattern == last[0] and st.severity() == last[2] and self._root(g, st, pattern)[0] == last[1]:
                return None
        inc = self._build(g, status, g.version + 1)
        if inc is None:  # cannot happen (same rules as above); kept for safety
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

    @staticmethod
    def _root(g: _Group, st: _Stats, pattern: str) -> tuple[str, int]:
        """Root cause id, and (for a causal root) how many members descend from it, else -1.

        With parent_of edges: among members with no parent in the group that are a parent, the one
        with the most descendants in the group (then earliest, then largest id). Otherwise the
        highest prior for the pattern plus earliness bonus (ties: earliest, then largest id):
        within a domain that is its earliest member, so only one candidate per domain is scored."""
        if st.parent_of:
            if st.croot is _UNSET:
                st.croot = _causal_root(g.members, st.children)
            if st.croot is not None:
                return st.croot
        prior = ROOT_PRIOR.get(pattern, {})
        t0 = st.t_min
        span = max(st.t_max - t0, 1)
        best: tuple | None = None
        for d, ds in st.doms.items():
            t = ds[1]
            k = (prior.get(d, 0.0) + EARLINESS_BONUS * (1.0 - (t - t0) / span), -t, ds[2])
            if best is None or k > best:
                best = k
        return best[2], -1

    def _build(self, g: _Group, status: str, version: int) -> Incident | None:
        """The incident record for a group, or None if it does not qualify (yet)."""
        s = self.settings
        st = g.stats()
        # once emitted, a group keeps being reported (so its close record is written too)
        if not g.emitted and (len(g.members) < 2 or (st.nfacets < 2 and not (st.parent_of or st.same_corr))):
            return None
        pattern = st.pattern()
        confidence = st.confidence(pattern)
        if confidence < s.min_confidence and not g.emitted:
            return None
        members = sorted(g.members.values(), key=_time_id)
        dom_of = st.dom
        root, n_desc = self._root(g, st, pattern)
        best = g.members[root]
        if n_desc >= 0:
            reasons = [f"earliest ancestor of the causal chain: {best.source} {best.kind} is the parent of "
                       f"{n_desc} member(s) through parent-event links"]
        else:
            reasons = _prior_reasons(members, best, dom_of[root], pattern)
        # roles: root_cause; effect (causal descendants of the root, or in the pattern's effect
        # domains: not required to come after the root, detection delays differ across sources);
        # contributor (cause domains, or the root's domain); related (the rest)
        desc = _descendants(root, st.children) if st.children else set()
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
            root_cause_reasons=reasons, pattern_reasons=_pattern_reasons(st, pattern), edges=edges,
            overflow=g.overflow)


def _pattern_reasons(st: _Stats, pattern: str) -> list[str]:
    doms = st.doms
    if pattern == "security_incident":
        others = sorted(d for d in doms if d != "security")
        return [f"security signal(s): {', '.join(sorted(st.what['security']))}"] + (
            [f"together with {', '.join(others)} signals"] if others else [])
    if pattern == "compliance_cascade":
        comp = doms["compliance"]
        later = sorted(d for d, ds in doms.items() if d not in ("compliance", "change") and ds[3] >= comp[1])
        reasons = [f"{comp[0]} compliance/policy signal(s)"]
        if later:
            reasons.append(f"followed by {', '.join(later)} signals")
        return reasons
    if pattern == "cost_impact":
        drivers = sorted(d for d in doms if d in ("usage", "performance", "change"))
        return ["cost signal(s)"] + ([f"with {', '.join(drivers)} signals"] if drivers else [])
    if pattern == "performance_degradation":
        return [f"performance signal(s): {', '.join(sorted(st.what['performance']))}"]
    return [f"domains: {', '.join(sorted(doms))}"]


def _prior_reasons(members: list[Signal], best: Signal, dom: str, pattern: str) -> list[str]:
    """Why `best` (chosen by prior and earliness) is the root cause; members sorted by time."""
    prior = ROOT_PRIOR.get(pattern, {})
    reasons = []
    if prior:
        reasons.append(f"{dom} signals are the most likely cause in a {pattern.replace('_', ' ')} (prior {prior.get(dom, 0.0):.1f})")
    t0, bt = members[0].time_ms, best.time_ms
    times = [m.time_ms for m in members]
    first_later = bisect_right(times, bt)
    if bt == t0:
        reasons.append("earliest member of the incident")
    if first_later < len(times):
        lead_s = (times[first_later] - bt) // 1000
        reasons.append(f"precedes {len(times) - first_later} other member(s), the first by {lead_s} s")
    if t0 < bt:
        lag_s = (bt - t0) // 1000
        reasons.append(f"seen {lag_s} s after the first member (detection delays differ across sources)")
    what = best.metric or best.kind
    reasons.append(f"{best.source} {what}" + (f" on {best.asset}" if best.asset else ""))
    return reasons


def _causal_root(members: dict[str, Signal], children: dict[str, list[str]]) -> tuple[str, int] | None:
    """Among members that are a parent and have no parent in the group: the one with the most
    descendants in the group (then earliest, then largest id), with that count; None if none."""
    has_parent = {b for a, kids in children.items() if a in members for b in kids}
    best: tuple | None = None
    for sid in children:
        if sid in members and sid not in has_parent:
            n = sum(1 for x in _descendants(sid, children) if x in members)
            k = (n, -members[sid].time_ms, sid)
            if best is None or k > best:
                best = k
    return None if best is None else (best[2], best[0])


def _descendants(root: str, children: dict[str, list[str]]) -> set[str]:
    seen: set[str] = set()
    stack = [root]
    while stack:
        for c in children.get(stack.pop(), ()):
            if c not in seen:
                seen.add(c)
                stack.append(c)
    return seen
