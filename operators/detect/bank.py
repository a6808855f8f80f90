"""Online anomaly detection per series: `AnomalyDetectorBank`, a pure operator (no I/O).

The flow feeds it one merged `WindowMetric` per series and closed 1-minute window (`update`), and
calls `tick(watermark_ms)` so that series which went silent are seen as dropping to zero. The
evaluation harness feeds raw points (`update_value`). The bank keeps one small detector ensemble
per series (robust.py, volatility.py, shape.py, hst.py in this package):

- value member (RobustDetector on the per-window value chosen per metric: mean, sum, count, rate,
  max): spike, drop, level_shift (and, for raw streams, volatility -> distribution_shift);
- rate member (RobustDetector on log(1 + events per window), missing windows counted as 0, Poisson
  noise floor): frequency_change, both directions, including level changes of the rate;
- histogram member (HistShiftDetector on the window's log-bucket histogram): distribution_shift;
- optionally river HalfSpaceTrees (settings.use_hst) as a further spike/drop voter;
- on the value member: the seasonal member (seasonal.py: daily period found automatically, used
  where it predicts better), the anomaly likelihood (likelihood.py: the score) and the tail test
  (tail.py: which point outliers are alerts, after a minimum of evidence).

Memory is bounded: fixed-size ring buffers, 31 seasonal floats and a pruned histogram per series
(~1.5 KB pickled for a value member), at most `max_series` series (least recently updated evicted
first), and series with no data for `idle_series_evict_after_s` of event time are forgotten
(`evict_idle`, which the flow calls once per minute of event time). An evicted series that comes
back starts a new warm-up; windows and stored metrics are never affected, only detection.
`tick` does a full pass only when the watermark moves (once per window), in between it visits only
series created since, so its cost does not grow with idle series between window closes.
The whole bank pickles, so it can be the state of a Bytewax stateful operator and survive restarts;
a restored bank produces exactly the output the original would have.
"""
from __future__ import annotations

import math
import zlib
from collections import OrderedDict
from collections.abc import Iterable

from config.detection import AnomalySettings, DetectionSettings, MetricDetection
from operators.detect.findings import Finding
from operators.detect.hst import HSTMember
from operators.detect.likelihood import ALERT_SCORE, AnomalyLikelihood
from operators.detect.robust import FLOOR_BINOMIAL, FLOOR_POISSON, FLOOR_RELATIVE, SEASON_CODES, RobustDetector
from operators.detect.seasonal import SeasonalNaive
from operators.detect.shape import HistShiftDetector
from operators.detect.tail import TailTest
from schemas.incidents import Anomaly, anomaly_id
from schemas.metrics import SeriesKey, WindowMetric

VALUE_TYPES = frozenset(("spike", "drop", "level_shift"))
# Point outliers of the value member are alerts only where the point is rare in the series' own
# tail (TailTest); level shifts (CUSUM) and volatility changes accumulate evidence no point shows.
GATED = frozenset(("spike", "drop"))
VOL_RECENT = 16  # a volatility finding needs a rare point within this many points,
VOL_PERSIST = 8  # or to persist this many points (half the volatility test's fast span of 16)
EPISODE = 16  # value findings within this many points of the previous one are its episode: not repeated
NEVER = -(2**62)


def severity_for(score: float) -> str:
    """Severity from score: >= 0.95 critical (|z| >~ 2.1x threshold), >= 0.8 high (~1.4x),
    >= 0.6 medium (~1.1x), else low."""
    if score >= 0.95:
        return "critical"
    if score >= 0.8:
        return "high"
    if score >= 0.6:
        return "medium"
    return "low"


class _Series:
    # `seen`: event time of the last data (not of zero-filled windows), for idle eviction.
    __slots__ = ("cfg", "value", "rate", "hist", "last_ws", "wms", "fill", "seas", "lik", "prev", "same", "since",
                 "tail", "rare", "quiet", "vrun", "seen")

    def __init__(self, cfg: MetricDetection, value: RobustDetector | None, rate: RobustDetector | None,
                 hist: HistShiftDetector | None, fill: bool) -> None:
        self.cfg = cfg
        self.value = value
        self.rate = rate
        self.hist = hist
        self.last_ws: int | None = None
        self.wms = 0
        self.fill = fill
        self.seas = SeasonalNaive() if value is not None else None
        self.lik = AnomalyLikelihood() if value is not None else None
        self.prev = math.nan  # last value, points it has been repeated (capped), points since a rare point
        self.same = 0
        self.since = VOL_RECENT + 1
        self.tail = TailTest() if value is not None else None
        self.rare = False  # the previous point was rare
        self.quiet = EPISODE  # points since the last value finding (capped)
        self.vrun = 0  # consecutive points with a volatility finding
        self.seen = NEVER

    def __getstate__(self) -> tuple:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __setstate__(self, st: tuple) -> None:
        for name, v in zip(self.__slots__, st):
            setattr(self, name, v)
        if len(st) < len(self.__slots__):  # snapshots taken before idle eviction
            self.seen = self.last_ws if self.last_ws is not None else NEVER

    def step_value(self, t: int, x: float, nobs: float = 0.0) -> tuple[float, list[Finding] | None]:
        """Value member, seasonal member, likelihood and tail test on one point: (score, findings).
        The surprise is the robust z, or the seasonal residual z where a daily period was found and
        its profile predicts better. A point is rare where `TailTest` puts its surprise beyond
        10^-5 per point in the series' own tail.
        - Spikes and drops are kept only at a point alert: the first rare point of a run (a run is
          one episode), with score >= ALERT_SCORE.
        - Volatility findings are kept within `VOL_RECENT` points after a rare point (a real change
          of volatility brings surprising points; the cycle of a smooth series seen before its
          period is known does not) or once they persist `VOL_PERSIST` points (accumulated
          evidence, as a CUSUM's).
        - Where the seasonal profile is in charge it gates all findings.
        - Before the tail's minimum evidence: point alerts only (rare even under the tail test's
          early heavy shape); where the window shows no noise at all (a flat or step series, whose
          z is only the 1% floor, so every step is "rare") only a change by an order of magnitude
          or more (x10, /10, to or from 0): NAB's daily step series step x3-4 off a flat first
          day, a broken service x15-20. Nothing on a flat line: a value repeated for more than
          `cfg.warm_up` points is not new.
        - A finding less than `EPISODE` points after the previous one continues its episode and
          is not reported again (a volatility burst, a spike and its aftermath: one alert).
        Findings keep their own score and severity."""
        value = self.value
        f = value.step(t, x, nobs)
        zs = self.seas.step(t, x, value.last_e)
        z = value.last_z if zs is None else zs
        a = z if z >= 0.0 else -z
        score = self.lik.step(a)
        tail = self.tail
        rare = tail.step(a, not value.building())
        first = rare and not self.rare and score >= ALERT_SCORE and (
            tail.ready or not value.no_noise or _order_of_magnitude(x, x - value.last_e))
        self.rare = rare
        since = 0 if rare else self.since + 1
        if since <= VOL_RECENT:
            self.since = since
        if x == self.prev:
            flat = self.same >= self.cfg.warm_up
            if not flat:
                self.same += 1
        else:
            self.prev = x
            self.same = 0
            flat = False
        vol = f is not None and any(y[5] == "volatility" for y in f)
        self.vrun = self.vrun + 1 if vol else 0
        if f:
            if flat:
                f = None
            elif first:
                if not tail.ready:
                    f = [y for y in f if y[0] in GATED] or None
            elif zs is not None or not tail.ready:
                f = None
            else:
                vol_ok = since <= VOL_RECENT or self.vrun >= VOL_PERSIST
                f = [y for y in f if y[0] not in GATED and (y[5] != "volatility" or vol_ok)] or None
        if f:
            if self.quiet < EPISODE:
                f = None
            self.quiet = 0
        elif self.quiet < EPISODE:
            self.quiet += 1
        return score, f


def _order_of_magnitude(x: float, expected: float) -> bool:
    """x differs from expected by a factor of 10 or more (or one of them is 0 or the sign flips)."""
    if x == 0.0 or expected == 0.0 or (x > 0.0) != (expected > 0.0):
        return x != expected
    r = x / expected
    return r >= 10.0 or r <= 0.1


def _settings(settings: DetectionSettings | AnomalySettings | None) -> AnomalySettings:
    if settings is None:
        return AnomalySettings()
    if isinstance(settings, DetectionSettings):
        return settings.anomaly
    return settings


class AnomalyDetectorBank:
    """One detector ensemble per series; see the module docstring.

    >>> from schemas.metrics import SeriesKey
    >>> bank = AnomalyDetectorBank()
    >>> key = SeriesKey("latency_ms", model="gpt-4")
    >>> [bank.update_value(key, minute * 60_000, 100.0 + minute % 3) for minute in range(60)].count([])
    60
    >>> [(a.anomaly_type, a.severity, a.observed) for a in bank.update_value(key, 60 * 60_000, 400.0)]
    [('spike', 'critical', 400.0)]
    """

    def __init__(self, settings: DetectionSettings | AnomalySettings | None = None) -> None:
        self.settings = _settings(settings)
        self._series: OrderedDict[SeriesKey, _Series] = OrderedDict()
        self.evicted = 0  # series dropped because of max_series, all time
        self.idle_evicted = 0  # series dropped by evict_idle, all time
        # `tick`: the watermark of its last full pass and the window series created since.
        self._ticked_ms = NEVER
        self._fresh: list[SeriesKey] = []

    def __len__(self) -> int:
        return len(self._series)

    def __getstate__(self) -> dict:
        return {"settings": self.settings, "series": self._series, "evicted": self.evicted,
                "idle_evicted": self.idle_evicted, "ticked_ms": self._ticked_ms, "fresh": self._fresh}

    def __setstate__(self, st: dict) -> None:
        self.settings = st["settings"]
        self._series = st["series"]
        self.evicted = st["evicted"]
        # Snapshots taken before idle eviction: the next tick does a full pass.
        self.idle_evicted = st.get("idle_evicted", 0)
        self._ticked_ms = st.get("ticked_ms", NEVER)
        self._fresh = st.get("fresh", [])

    # -- construction ------------------------------------------------------------------------
    def _new_series(self, key: SeriesKey, raw: bool) -> _Series:
        s = self.settings
        cfg = s.for_metric(key.metric)
        types = set(cfg.types)
        thr = s.z_threshold / max(cfg.sensitivity, 1e-6)
        season = SEASON_CODES.get(cfg.seasonality, 0)
        common = dict(window=s.window, warm_up=cfg.warm_up, threshold=thr, cusum_k=s.cusum_k, cusum_h=s.cusum_h,
                      cusum_clip=s.cusum_clip, season=season, season_days=s.season_days)
        value = rate = hist = None
        if raw or types & VALUE_TYPES:
            floor_kind = {"count": FLOOR_POISSON, "rate": FLOOR_BINOMIAL}.get(cfg.value, FLOOR_RELATIVE)
            hst = None
            if s.use_hst:
                hst = HSTMember(s.window, zlib.crc32(repr(key).encode()) & 0x7FFFFFFF)
            value = RobustDetector(
                floor_kind=floor_kind, floor_val=s.relative_floor, spike="spike" in types, drop="drop" in types,
                cusum="level_shift" in types,
                # volatility stands in for histogram shape on raw streams (no histogram there)
                volatility=raw and "distribution_shift" in types,
                volatility_span=s.volatility_span, volatility_slow_span=s.volatility_slow_span,
                hst=hst, hst_threshold=s.hst_threshold, **common)
        if not raw and "frequency_change" in types:
            rate = RobustDetector(floor_kind=FLOOR_POISSON, types=("frequency_change",) * 3, prefix="rate", log=True,
                                  **common)
        if not raw and "distribution_shift" in types:
            hist = HistShiftDetector(half_life=s.hist_half_life, bits=s.hist_coarsen_bits, min_count=s.hist_min_count,
                                     min_js=s.hist_min_js, window=s.window, warm_up=cfg.warm_up, threshold=thr)
        fill = cfg.fill_missing if cfg.fill_missing is not None else cfg.value in ("sum", "count")
        return _Series(cfg, value, rate, hist, fill)

    def _get(self, key: SeriesKey, raw: bool) -> _Series | None:
        series = self._series
        st = series.get(key)
        if st is None:
            if not self.settings.enabled or not self.settings.for_metric(key.metric).enabled:
                return None
            st = self._new_series(key, raw)
            series[key] = st
            if len(series) > self.settings.max_series:
                series.popitem(last=False)
                self.evicted += 1
            if not raw:
                if len(self._fresh) >= self.settings.max_series:  # never ticked: the next tick does a full pass
                    self._fresh.clear()
                    self._ticked_ms = NEVER
                self._fresh.append(key)
        else:
            series.move_to_end(key)
        return st

    def evict_idle(self, now_ms: int) -> int:
        """Forget series with no data for longer than `idle_series_evict_after_s` before `now_ms`
        (event time); returns how many. One pass over the bank: call it once per window, not per event.

        >>> from schemas.metrics import SeriesKey
        >>> bank = AnomalyDetectorBank(AnomalySettings(idle_series_evict_after_s=3600))
        >>> for team, minute in (("a", 0), ("b", 50)):
        ...     _ = bank.update_value(SeriesKey("latency_ms", team=team), minute * 60_000, 100.0)
        >>> bank.evict_idle(100 * 60_000), len(bank), bank.idle_evicted
        (1, 1, 1)
        """
        idle_ms = self.settings.idle_series_evict_after_s * 1000
        if not idle_ms:
            return 0
        cutoff = now_ms - idle_ms
        series = self._series
        gone = [key for key, st in series.items() if st.seen < cutoff]
        for key in gone:
            del series[key]
        self.idle_evicted += len(gone)
        return len(gone)

    # -- output ------------------------------------------------------------------------------
    @staticmethod
    def _emit(out: list[Anomaly], key: SeriesKey, ws: int, wms: int, findings: Iterable[Finding], min_score: float,
              tags: dict[str, str] | None) -> None:
        for typ, score, expected, spread, observed, detector in findings:
            if score < min_score:
                continue
            out.append(Anomaly(
                id=anomaly_id(key, ws, typ, detector), metric=key.metric, model=key.model, endpoint=key.endpoint,
                team=key.team, window_start_ms=ws, window_ms=wms, anomaly_type=typ, score=round(score, 6),
                expected=expected, spread=spread, observed=observed, detector=detector,
                severity=severity_for(score), tags=dict(tags) if tags else {}))

    # -- public API --------------------------------------------------------------------------
    def update(self, window: WindowMetric, tags: dict[str, str] | None = None) -> list[Anomaly]:
        """Score one closed window of one series (shards already merged). Windows must arrive in
        order per series; a window at or before the last one seen is ignored (already scored)."""
        key = window.series
        st = self._get(key, raw=False)
        if st is None:
            return []
        ws, wms = window.window_start_ms, window.window_ms
        out: list[Anomaly] = []
        cfg = st.cfg
        if st.last_ws is not None:
            if ws <= st.last_ws:
                return out
            if wms > 0:
                self._fill_gap(st, key, st.last_ws, ws, wms, out, tags)
        st.last_ws, st.wms, st.seen = ws, wms, ws
        count = window.count
        if st.value is not None:
            v = _window_value(window, cfg.value)
            if v is not None and (count >= cfg.min_count or cfg.value in ("sum", "count")):
                _, f = st.step_value(ws, v, float(count))
                if f:
                    self._emit(out, key, ws, wms, f, cfg.min_score, tags)
        if st.rate is not None:
            f = st.rate.step(ws, float(count))
            if f:
                self._emit(out, key, ws, wms, f, cfg.min_score, tags)
        if st.hist is not None and window.hist:
            f1 = st.hist.step(ws, window.hist)
            if f1:
                self._emit(out, key, ws, wms, (f1,), cfg.min_score, tags)
        return out

    def _fill_gap(self, st: _Series, key: SeriesKey, last_ws: int, until_ws: int, wms: int, out: list[Anomaly],
                  tags: dict[str, str] | None) -> None:
        """Windows with no data between last_ws and until_ws (exclusive): zero events."""
        missing = (until_ws - last_ws) // wms - 1
        if missing <= 0:
            return
        cap = self.settings.max_gap_fill
        first = until_ws - min(missing, cap) * wms
        cfg = st.cfg
        for ws in range(first, until_ws, wms):
            if st.rate is not None:
                f = st.rate.step(ws, 0.0)
                if f:
                    self._emit(out, key, ws, wms, f, cfg.min_score, tags)
            if st.value is not None and st.fill:
                _, f = st.step_value(ws, 0.0, 0.0)
                if f:
                    self._emit(out, key, ws, wms, f, cfg.min_score, tags)

    def tick(self, now_ms: int) -> list[Anomaly]:
        """Close out silent series: every window that ended at or before now_ms (the event-time
        watermark) and had no data counts as zero events. Call it as the watermark advances; a
        window arriving later for an already-filled slot is ignored.

        After a full pass at watermark T every series is filled up to T, and `last_ws` only grows,
        so until the watermark passes T only series created since can have windows to fill."""
        out: list[Anomaly] = []
        series = self._series
        if now_ms > self._ticked_ms:
            self._ticked_ms = now_ms
            keys: Iterable[SeriesKey] = list(series)
        else:
            keys = self._fresh
        self._fresh = []
        for key in keys:
            st = series.get(key)
            if st is None or st.last_ws is None or st.wms <= 0 or (st.rate is None and not st.fill):
                continue
            wms = st.wms
            # last window start whose end <= now_ms
            last_closed = (now_ms - wms) // wms * wms
            if last_closed > st.last_ws:
                self._fill_gap(st, key, st.last_ws, last_closed + wms, wms, out, None)
                st.last_ws = last_closed
        return out

    def update_value(self, series: SeriesKey, time_ms: int, value: float) -> list[Anomaly]:
        """Score one raw point (value member only: spike, drop, level_shift, volatility)."""
        if value != value or value in (math.inf, -math.inf):
            return []
        st = self._get(series, raw=True)
        if st is None or st.value is None:
            return []
        st.seen = time_ms
        _, f = st.step_value(time_ms, value)
        if f:
            out: list[Anomaly] = []
            self._emit(out, series, time_ms, 0, f, st.cfg.min_score, None)
            return out
        return []

    def score_value(self, series: SeriesKey, time_ms: int, value: float) -> float:
        """`update_value` that returns the ensemble's anomaly likelihood of the point, in [0, 1):
        0 for the usual, `ALERT_SCORE` (0.5) at 5 long-run sds of surprise (a point alert also
        needs it, besides the tail test), strictly increasing in surprise, never exactly 1 (no
        plateau of ties). Same state as `update_value` (either may be used on a series, in any
        mix). NaN/inf values and disabled metrics score 0 and are not learnt."""
        if value != value or value in (math.inf, -math.inf):
            return 0.0
        st = self._get(series, raw=True)
        if st is None or st.value is None:
            return 0.0
        st.seen = time_ms
        return st.step_value(time_ms, value)[0]

    def update_values(self, series: SeriesKey, times: Iterable[int], values: Iterable[float]) -> list[Anomaly]:
        """`update_value` for a run of points of one series (same result, less call overhead)."""
        st = self._get(series, raw=True)
        if st is None or st.value is None:
            return []
        step = st.step_value
        out: list[Anomaly] = []
        min_score = st.cfg.min_score
        for t, v in zip(times, values):
            if v != v or v in (math.inf, -math.inf):
                continue
            st.seen = t
            _, f = step(t, v)
            if f:
                self._emit(out, series, t, 0, f, min_score, None)
        return out

    def baseline(self, series: SeriesKey, time_ms: int = 0) -> tuple[float, float] | None:
        """(expected, sigma) of the value member now, for dashboards and tests; None if unknown."""
        st = self._series.get(series)
        if st is None or st.value is None or not st.value.srt:
            return None
        med, sig = st.value.baseline()
        return med + st.value.seasonal(time_ms), sig


def _window_value(w: WindowMetric, how: str) -> float | None:
    if how == "count":
        return float(w.count)
    if how == "sum":
        return w.sum
    if w.count <= 0:
        return None
    if how == "max":
        return w.max
    return w.sum / w.count  # mean, rate
