"""A group of linked signals (a candidate incident) and what is kept up to date about it.

`Group` holds what is snapshotted: members, edges, emission bookkeeping. `GroupStats` is derived
from them and updated as members and edges arrive, so the correlator decides whether a change is
worth emitting without building the incident record. `AssetIndex` orders one asset's recent
signals by time for temporal linking. Both derived structures are never pickled and are rebuilt
after a restore, so snapshots hold exactly the group's own state.
"""
from __future__ import annotations

from bisect import bisect_left, insort

from operators.correlate.domains import IMPACT, domain_of, impact_of
from schemas.incidents import Signal, stable_id
from schemas.vocabulary import FINDING_SEVERITIES, severity_rank

UNSET: tuple = ("<unset>",)  # a cache not filled yet
_RANK = {sev: severity_rank(sev) for sev in FINDING_SEVERITIES}


class GroupStats:
    """What the emission rules and `build_incident` need about a group, kept up to date as members and
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
        self.croot: tuple | None = UNSET  # cached causal root: (id, descendants in group) or None

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
        imp = IMPACT.get((d, sev), UNSET)
        if imp is UNSET:
            imp = impact_of(d, sev)
        if imp is not None and imp[1] > self.impact[imp[0]]:
            self.impact[imp[0]] = imp[1]
        if sid in self.pnodes:
            self.croot = UNSET

    def add_edge(self, a: str, b: str, rel: str, weight: float) -> None:
        if rel == "parent_of":
            self.parent_of = True
            self.children.setdefault(a, []).append(b)
            self.pnodes.add(a)
            self.pnodes.add(b)
            self.croot = UNSET
        elif rel == "same_correlation":
            self.same_corr = True
        elif rel in ("temporal", "same_asset"):
            self.prox.append(weight)

    def pattern(self) -> str:
        """First that applies: security_incident (a security signal), compliance_cascade (two
        compliance signals, or one followed by another domain), cost_impact (a cost signal),
        performance_degradation (a performance signal), generic."""
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
        """The most severe member's, one step up when three or more domains corroborate it."""
        rank, sev = self.sev[0], self.sev[3]
        if len(self.doms) >= 3 and rank < 4:
            sev = FINDING_SEVERITIES[rank + 1]  # corroborated by three or more domains
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


class Group:
    """Linked signals that may be an incident, and what was emitted for them so far."""

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
        self.st: GroupStats | None = None

    def __getstate__(self) -> tuple:
        return tuple(getattr(self, s) for s in self._STATE)

    def __setstate__(self, st: tuple) -> None:
        for k, v in zip(self._STATE, st):
            setattr(self, k, v)
        self.st = None

    def stats(self) -> GroupStats:
        st = self.st
        if st is None:
            st = self.st = GroupStats()
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


class AssetIndex:
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


