"""The detection step of the flow: closed windows -> anomalies, signals -> incidents.

All shards feed one detection state (anomaly bank + correlator). Several shards can each close
a partial window for the same series (a topic not partitioned by model): partials are held
until a later window of that series shows up, every shard still running has closed a later
window, no shard can still send a part of it (its windows or its watermark are past it: the last
minute when input stops), the fastest shard is `partial_wait_s` past it, or the input ends;
then merged and scored, so detectors see one window per series per minute in order. Signals
reach the correlator in event-time order once every shard has closed past them. Silent
series are filled with zeros up to the slowest shard's progress (`tick`), never ahead of a shard
that is still catching up.

Memory: held windows are those of the last minutes (a series seen once is not held until the
end of input), and the bank forgets series idle for `idle_series_evict_after_s`, checked once per
minute of event time. Work per step follows the windows that arrive and leave, not the series held.
"""
from __future__ import annotations

import heapq

from config.detection import DetectionSettings
from operators.correlate import Correlator, should_alert, signal_from_anomaly
from operators.detect.bank import AnomalyDetectorBank
from operators.feeds.book import Horizon
from operators.windows import sketch
from schemas.incidents import Signal
from schemas.items import ALL_CLOSED, DetectionOutput
from schemas.metrics import SeriesKey, WindowMetric


EVICT_EVERY_MS = 60_000  # event time between two idle-eviction passes over the bank
NEVER = -(2**62)


class DetectionState:
    """Picklable: lives in Bytewax snapshots like the window state."""

    def __init__(self, settings: DetectionSettings, lateness_ms: int = 0) -> None:
        self.settings = settings
        # The windows' allowed lateness: a shard with no open window can still open one ending
        # after its watermark minus this.
        self.lateness_ms = lateness_ms
        # Per shard, the end of event time before which it can send no more window parts.
        self.shard_bound: dict[str, int] = {}
        self.bank = AnomalyDetectorBank(settings)
        self.correlator = Correlator(settings)
        self.pending: dict[tuple[SeriesKey, int], WindowMetric] = {}
        # Latest window start of each series with a held window at that start.
        self.latest_start: dict[SeriesKey, int] = {}
        # Held windows by window end (entries released meanwhile are skipped), and how many are
        # held per window start (the earliest bounds `tick`).
        self.held_by_end: dict[int, list[tuple[SeriesKey, int]]] = {}
        self.held_starts: dict[int, int] = {}
        self.shard_progress: dict[str, int] = {}
        self.shards_seen: set[str] = set()
        self.shards_done: set[str] = set()
        self.evicted_at_ms = NEVER
        # Signals (events' and anomalies') wait until their time is whole across shards (as
        # alerting and reports judge it): the correlator takes them in event-time order, so
        # incidents do not depend on how shards interleave (a replay after a crash, or two
        # processes, find the same ones).
        self.signals_held: list[tuple[int, str, Signal]] = []
        self.horizon = Horizon()

    def __setstate__(self, state: dict) -> None:
        if "held_by_end" not in state:  # snapshots taken before bounded holding
            state["held_by_end"], state["held_starts"] = {}, {}
            state["evicted_at_ms"] = NEVER
            state["latest_start"] = {s: t for s, t in state["latest_start"].items() if (s, t) in state["pending"]}
        state.setdefault("signals_held", [])
        state.setdefault("lateness_ms", 0)
        state.setdefault("shard_bound", {})
        state.setdefault("horizon", Horizon())
        self.__dict__.update(state)
        if not self.held_by_end:
            for key, w in self.pending.items():
                self._hold(key, w)

    def step(self, shard: str, windows: list[WindowMetric], signals: list[Signal], final: bool,
             closed_ms: int | None = None, watermark_ms: int = 0) -> DetectionOutput:
        """Take one shard's closed windows and noteworthy events (`final`: the shard's last output;
        `closed_ms`, `watermark_ms`: its progress, as in ShardOutput; without them signals wait
        for the end of input); returns the anomalies and incidents found, and which of them go to
        the alerts topic.

        >>> from schemas.metrics import SeriesKey, WindowMetric
        >>> def window(minute, mean, n=50):
        ...     return WindowMetric(series=SeriesKey("latency_ms", model="gpt-4"), window_start_ms=minute * 60_000,
        ...                         window_ms=60_000, count=n, sum=mean * n, min=mean, max=mean,
        ...                         sumsq=mean * mean * n, hist={})
        >>> state = DetectionState(DetectionSettings())
        >>> [state.step("shard-0", [window(m, 100.0 + m % 3)], [], final=False).anomalies for m in range(60)].count([])
        60
        >>> state.step("shard-0", [window(60, 400.0)], [], final=False).anomalies  # held: partials may follow
        []
        >>> out = state.step("shard-0", [window(61, 101.0)], [], final=False)
        >>> [(a.anomaly_type, a.window_start_ms // 60_000) for a in out.anomalies], out.alerts == out.anomalies
        ([('spike', 60)], True)
        """
        out = DetectionOutput()
        final_shard = final
        self.shards_seen.add(shard)
        if final:
            self.shards_done.add(shard)
        # The end of one shard is not the end of the input: flush only when every shard ended.
        final = self.shards_done >= self.shards_seen
        pending, latest_start = self.pending, self.latest_start
        ready: list[tuple[SeriesKey, int]] = []
        for w in windows:
            series, start = w.series, w.window_start_ms
            key = (series, start)
            held = pending.get(key)
            if held is None:
                pending[key] = w
                self._hold(key, w)
            else:
                pending[key] = _merge(held, w)
            latest = latest_start.get(series)
            if latest is None or start > latest:
                latest_start[series] = start
                if latest is not None and (series, latest) in pending:
                    ready.append((series, latest))  # a later window of the series: that one is complete
            elif start < latest:
                ready.append(key)
            self.shard_progress[shard] = max(self.shard_progress.get(shard, 0), start + w.window_ms)
        if closed_ms is not None:
            self.horizon.update(shard, closed_ms, watermark_ms, final_shard)
            # Strict, unlike the horizon (which lets a shard with no open window hold nothing, as
            # alerting may re-judge a minute): such a shard can still open a window ending after
            # its watermark minus the lateness, so a replay that reads shards in another order
            # releases the same windows whole.
            # A shard that has seen no event at all (an empty topic) cannot be waited for.
            if watermark_ms > 0 or closed_ms != ALL_CLOSED:
                self.shard_bound[shard] = (ALL_CLOSED if final_shard else closed_ms if closed_ms != ALL_CLOSED
                                           else watermark_ms - self.lateness_ms)
        whole = ALL_CLOSED if final else self.horizon.complete_ms
        progress = self._running_progress()
        if final:
            ready += pending
            self.held_by_end.clear()
        elif progress:
            # Every shard still running has closed a later window, or no shard can send a part of
            # it any more (when input stops, the last minute is whole once every watermark has
            # moved on), or the fastest is far past it.
            wait_ms = self.settings.anomaly.partial_wait_s * 1000
            bound = min(self.shard_bound.values(), default=0)
            cutoff = max(min(progress), bound + 1, max(self.shard_progress.values()) - wait_ms)
            for end in sorted(e for e in self.held_by_end if e < cutoff):
                ready += self.held_by_end.pop(end)
        for key in sorted(dict.fromkeys(ready), key=lambda k: k[1]):
            w = pending.pop(key, None)
            if w is None:
                continue
            n = self.held_starts[key[1]] - 1
            if n:
                self.held_starts[key[1]] = n
            else:
                del self.held_starts[key[1]]
            if latest_start.get(key[0]) == key[1]:
                del latest_start[key[0]]
            out.anomalies += self.bank.update(w)
        if progress and not final:
            # Up to the slowest shard, and never over a window still held for merging: a window
            # filled as "silent" would make the bank ignore its real data later.
            horizon = min(progress)
            if self.held_starts:
                horizon = min(horizon, min(self.held_starts))
            out.anomalies += self.bank.tick(horizon)
            if horizon >= self.evicted_at_ms + EVICT_EVERY_MS:
                self.evicted_at_ms = horizon
                self.bank.evict_idle(horizon)
        held = self.signals_held
        for sig in (*map(signal_from_anomaly, out.anomalies), *signals):
            heapq.heappush(held, (sig.time_ms, sig.id, sig))
        while held and held[0][0] < whole:
            out.incidents += self.correlator.add(heapq.heappop(held)[2])
        if whole:
            out.incidents += self.correlator.flush(whole)
        out.alerts = [r for r in (*out.anomalies, *out.incidents) if should_alert(r, self.settings)]
        return out

    def _hold(self, key: tuple[SeriesKey, int], w: WindowMetric) -> None:
        self.held_by_end.setdefault(key[1] + w.window_ms, []).append(key)
        self.held_starts[key[1]] = self.held_starts.get(key[1], 0) + 1

    def _running_progress(self) -> list[int]:
        """Progress of the shards still running (an ended shard holds nobody back), or of all
        shards with windows when those have all ended (the others have sent no window yet)."""
        running = [p for s, p in self.shard_progress.items() if s not in self.shards_done]
        return running or list(self.shard_progress.values())


def _merge(a: WindowMetric, b: WindowMetric) -> WindowMetric:
    hist = dict(a.hist)
    sketch.merge_into(hist, b.hist)
    return WindowMetric(series=a.series, window_start_ms=a.window_start_ms, window_ms=a.window_ms,
                        count=a.count + b.count, sum=a.sum + b.sum, min=min(a.min, b.min), max=max(a.max, b.max),
                        sumsq=a.sumsq + b.sumsq, hist=hist, shard="*")
