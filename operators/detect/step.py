"""The detection step of the flow: closed windows -> anomalies, signals -> incidents.

All shards feed one detection state (anomaly bank + correlator). Several shards can each close
a partial window for the same series (a topic not partitioned by model): partials are held
until a later window of that series shows up, or the input ends, then merged and scored, so
detectors see one window per series per minute in order. Silent series are filled with zeros
up to the slowest shard's progress (`tick`), never ahead of a shard that is still catching up.
"""
from __future__ import annotations

from config.detection import DetectionSettings
from operators.correlate import Correlator, should_alert, signal_from_anomaly
from operators.detect.bank import AnomalyDetectorBank
from operators.windows import sketch
from schemas.incidents import Signal
from schemas.items import DetectionOutput
from schemas.metrics import SeriesKey, WindowMetric


class DetectionState:
    """Picklable: lives in Bytewax snapshots like the window state."""

    def __init__(self, settings: DetectionSettings) -> None:
        self.settings = settings
        self.bank = AnomalyDetectorBank(settings)
        self.correlator = Correlator(settings)
        self.pending: dict[tuple[SeriesKey, int], WindowMetric] = {}
        self.latest_start: dict[SeriesKey, int] = {}
        self.shard_progress: dict[str, int] = {}
        self.shards_seen: set[str] = set()
        self.shards_done: set[str] = set()

    def step(self, shard: str, windows: list[WindowMetric], signals: list[Signal], final: bool) -> DetectionOutput:
        """Take one shard's closed windows and noteworthy events (`final`: the shard's last output);
        returns the anomalies and incidents found, and which of them go to the alerts topic.

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
        self.shards_seen.add(shard)
        if final:
            self.shards_done.add(shard)
        # The end of one shard is not the end of the input: flush only when every shard ended.
        final = self.shards_done >= self.shards_seen
        ready: list[WindowMetric] = []
        for w in windows:
            key = (w.series, w.window_start_ms)
            held = self.pending.get(key)
            self.pending[key] = w if held is None else _merge(held, w)
            if w.window_start_ms > self.latest_start.get(w.series, -1):
                self.latest_start[w.series] = w.window_start_ms
            self.shard_progress[shard] = max(self.shard_progress.get(shard, 0), w.window_start_ms + w.window_ms)
        for key in sorted((k for k in self.pending if final or k[1] < self.latest_start[k[0]]), key=lambda k: k[1]):
            ready.append(self.pending.pop(key))
        for w in ready:
            out.anomalies += self.bank.update(w)
        if self.shard_progress and not final:
            # Up to the slowest shard, and never over a window still held for merging: a window
            # filled as "silent" would make the bank ignore its real data later.
            horizon = min(self.shard_progress.values())
            if self.pending:
                horizon = min(horizon, min(start for _, start in self.pending))
            out.anomalies += self.bank.tick(horizon)
        for a in out.anomalies:
            out.incidents += self.correlator.add(signal_from_anomaly(a))
        for s in sorted(signals, key=lambda s: s.time_ms):
            out.incidents += self.correlator.add(s)
        watermark = max(self.shard_progress.values(), default=0)
        if final:
            out.incidents += self.correlator.flush(2**62)
        elif watermark:
            out.incidents += self.correlator.flush(watermark)
        out.alerts = [r for r in (*out.anomalies, *out.incidents) if should_alert(r, self.settings)]
        return out


def _merge(a: WindowMetric, b: WindowMetric) -> WindowMetric:
    hist = dict(a.hist)
    sketch.merge_into(hist, b.hist)
    return WindowMetric(series=a.series, window_start_ms=a.window_start_ms, window_ms=a.window_ms,
                        count=a.count + b.count, sum=a.sum + b.sum, min=min(a.min, b.min), max=max(a.max, b.max),
                        sumsq=a.sumsq + b.sumsq, hist=hist, shard="*")
