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

What a group concludes lives next door: its pattern, severity and confidence (a noisy-OR of
independent evidence, `GroupStats.confidence`) in groups.py, the root-cause guess in root_cause.py,
the incident record with member roles in records.py. Everything is deterministic for a given input
order (ids from signal ids, sorted iteration), bounded (open groups, remembered signals, members
per incident) and picklable (Bytewax snapshots).

Cost per signal (this is on the flow's hot path): whether a group's change is emitted is decided
from per-group running stats (`GroupStats`: domains, facets, severity, evidence, root candidates),
updated as members and edges arrive; the incident record is only built when it is emitted.
Temporal linking walks a per-asset index of the recent signals sorted by time (`AssetIndex`)
newest first from the signal's time and stops once no other facet can make the cut; signals no
longer tracked are taken out of the index until they are tracked again. Both are derived from the
snapshotted state and rebuilt after a restore, so snapshots hold exactly what they held before.
"""
from __future__ import annotations

import heapq
import math
from bisect import bisect_right
from collections import OrderedDict, deque

from config.detection import CorrelationSettings, DetectionSettings
from operators.correlate.domains import domain_of
from operators.correlate.groups import AssetIndex, Group
from operators.correlate.records import build_incident
from operators.correlate.root_cause import root_cause
from schemas.incidents import Incident, Signal

MAX_TEMPORAL_LINKS = 8
SMALL_INCIDENT = 16
ASSET_RECENT = 64


def _settings(settings: DetectionSettings | CorrelationSettings | None) -> CorrelationSettings:
    if settings is None:
        return CorrelationSettings()
    if isinstance(settings, DetectionSettings):
        return settings.correlation
    return settings


def _time(e: tuple) -> int:
    return e[0]


def _newest_first(e: tuple) -> tuple[int, str]:
    return (-e[0], e[1])


class Correlator:
    """Groups signals into incidents; see the module docstring.

    A deploy and, a minute later, a latency spike on the same model are one incident; closing it
    (no new member for `window_ms` of event time) gives its final record:

    >>> from schemas.incidents import Signal
    >>> t = 1_704_067_200_000
    >>> c = Correlator()
    >>> c.add(Signal(id="deploy", time_ms=t, source="registry", kind="version.promoted", asset="gpt-4"))
    []
    >>> opened = c.add(Signal(id="lat", time_ms=t + 60_000, source="anomaly", kind="spike", asset="gpt-4",
    ...                       metric="latency_ms", severity="high"))
    >>> [(i.status, i.pattern, i.root_cause_id) for i in opened]
    [('open', 'performance_degradation', 'deploy')]
    >>> [(i.status, i.id == opened[0].id, [(m.signal_id, m.role) for m in i.members]) for i in c.flush(t + 3_600_000)]
    [('closed', True, [('deploy', 'root_cause'), ('lat', 'effect')])]
    """

    def __init__(self, settings: DetectionSettings | CorrelationSettings | None = None) -> None:
        self.settings = _settings(settings)
        self.groups: dict[str, Group] = {}
        self.sig_group: OrderedDict[str, str] = OrderedDict()  # signal id -> open group id
        self.corr_last: dict[str, str] = {}  # correlation id -> latest signal id
        self.asset_recent: dict[str, deque] = {}  # asset -> deque[(time, signal id, facet, domain)]
        self.pending: OrderedDict[str, list[tuple[str, int]]] = OrderedDict()  # parent id -> children
        self.max_ms = 0
        # Derived, not pickled: asset -> its asset_recent entries by time, and the entries taken
        # out of that index because their signal left sig_group (signal id -> [(asset, entry)]),
        # put back if the id is tracked again.
        self.by_time: dict[str, AssetIndex] = {}
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
        self.by_time = {a: AssetIndex(dq) for a, dq in self.asset_recent.items()}
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
            g = Group(signal)
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
            inc = build_incident(self.groups[gid], "open", self.groups[gid].version, self.settings)
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
                idx = self.by_time[asset] = AssetIndex()
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

    def _merge(self, keep: Group, gone: Group) -> list[Incident]:
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

    def _emit_if_ready(self, g: Group, status: str) -> Incident | None:
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
            if pattern == last[0] and st.severity() == last[2] and root_cause(g, st, pattern)[0] == last[1]:
                return None
        inc = build_incident(g, status, g.version + 1, self.settings)
        if inc is None:  # cannot happen (same rules as above); kept for safety
            return None
        self._mark_emitted(g, inc)
        return inc

    @staticmethod
    def _mark_emitted(g: Group, inc: Incident) -> None:
        g.version = inc.version
        g.emitted = True
        g.dirty = False
        g.last_key = (inc.pattern, inc.root_cause_id, inc.severity)
        g.last_n = len(inc.members)

    def _close(self, g: Group) -> list[Incident]:
        out = []
        if g.emitted or g.dirty:
            inc = build_incident(g, "closed", g.version + 1, self.settings)
            if inc is not None:
                self._mark_emitted(g, inc)
                out.append(inc)
        self._drop(g)
        return out

    def _drop(self, g: Group) -> None:
        for sid in g.members:
            if self.sig_group.get(sid) == g.id:
                del self.sig_group[sid]
        self.groups.pop(g.id, None)
