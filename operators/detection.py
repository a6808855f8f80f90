"""The detection step of the flow: closed windows -> anomalies, signals -> incidents.

All shards feed one detection state (anomaly bank + correlator). Several shards can each close
a partial window for the same series (a topic not partitioned by model): partials are held
until a later window of that series shows up, or the input ends, then merged and scored, so
detectors see one window per series per minute in order. Silent series are filled with zeros
up to the slowest shard's progress (`tick`), never ahead of a shard that is still catching up.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from config.detection import DetectionSettings
from operators import sketch
from operators.anomaly import AnomalyDetectorBank
from operators.correlation import Correlator, should_alert, signal_from_anomaly
from schemas.incidents import Anomaly, Incident, Signal
from schemas.metrics import SeriesKey, WindowMetric

# What the correlator sees of the raw events: things that go wrong or change (severity low and
# up, failed checks, registry changes that can cause incidents). Routine records (requests,
# per-request costs, passed evaluations, audits at info) are not signals: their problems
# surface as anomalies of the windowed metrics, and they would swamp the correlator.
NOTEWORTHY = {"low", "medium", "high", "critical"}
CHANGE_TYPES = {"asset.updated", "asset.deprecated", "version.published", "version.promoted", "version.retired",
                "policy.updated"}
FAILED = {"failed", "fail", "denied", "deny", "violated", "blocked"}
NOT_SIGNALS = {"telemetry.request", "telemetry.latency", "telemetry.tokens", "telemetry.throughput",
               "cost.tokens", "cost.api", "cost.resource"}


@dataclass
class DetectionOutput:
    anomalies: list[Anomaly] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)
    alerts: list[Anomaly | Incident] = field(default_factory=list)


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
    return value if value in ("info", "low", "medium", "high", "critical") else "info"
