"""Per-series online detectors: the ensemble members behind `operators.anomaly.AnomalyDetectorBank`.

All members learn online (no training phase beyond a warm-up), keep bounded state (fixed-size
ring buffers, 24 + 7 seasonal slots, a pruned reference histogram) and pickle compactly, because
they live in Bytewax recovery snapshots.

`RobustDetector` (one per scalar stream) does, per point, predict-then-learn:
  1. seasonal baseline: the point is deseasonalized with an additive hour-of-day profile (linearly
     interpolated between hourly slots) plus a day-of-week offset, both learned by exponential
     averaging over days/weeks of data, clipped so outliers do not teach the profile;
  2. spike / drop: robust z = (y - median) / sigma over the last `window` deseasonalized points,
     sigma = IQR / 1.349 (mean absolute deviation * 1.2533 when the IQR is 0, e.g. discrete data),
     floored by a noise model (relative, Poisson for counts, binomial for rates);
  3. level shift: two-sided CUSUM on Huber-clipped z; on alarm the pre-change part of the buffer
     is moved to the new level (median of the run since the CUSUM left 0) so the baseline adapts
     at once instead of alerting on every point until the window has turned over;
  4. volatility (distribution shift of a raw stream): fast vs slow EWMA of |first difference|
     relative to its own slow mean, standardized by its own slow variance (self-calibrating; first
     differences make it blind to level shifts and to single spikes).
`HistShiftDetector` measures the Jensen-Shannon divergence between a window's log-bucket histogram
and a decayed reference histogram, and scores that divergence with a one-sided RobustDetector, so
the threshold adapts to the series' own sampling noise.

Scores: r = |statistic| / threshold, score = r^4 / (1 + r^4) (0.5 at the threshold).
"""
from __future__ import annotations

import math
from array import array
from bisect import bisect_left, insort

HOUR_MS = 3_600_000
DAY_MS = 86_400_000

FLOOR_RELATIVE = 0  # sigma >= relative_floor * |expected|
FLOOR_POISSON = 1  # counts: sigma >= sqrt(max(expected, 1))
FLOOR_BINOMIAL = 2  # rates of a 0/1 flag: sigma >= sqrt(p(1-p)/n)
FLOOR_ABSOLUTE = 3  # sigma >= a fixed value (divergence streams)

SEASON_NONE, SEASON_DAILY, SEASON_WEEKLY = 0, 1, 2
SEASON_CODES = {"none": SEASON_NONE, "daily": SEASON_DAILY, "weekly": SEASON_WEEKLY}

# Finding: (anomaly_type, score, expected, spread, observed, detector)
Finding = tuple[str, float, float, float, float, str]


def squash(r: float) -> float:
    """Map statistic/threshold to 0..1: 0.5 at the threshold, 0.94 at twice it, -> 1."""
    r2 = r * r
    r4 = r2 * r2
    return r4 / (1.0 + r4)


def _median(values: list[float]) -> float:
    s = sorted(values)
    m = len(s)
    return s[m >> 1] if m & 1 else 0.5 * (s[(m >> 1) - 1] + s[m >> 1])


class RobustDetector:
    """Spike/drop, level shift and volatility on one scalar stream (see module docstring)."""

    __slots__ = (
        "W", "ring", "srt", "pos", "n", "warm", "thr", "k", "h", "clip", "floor_kind", "floor_val",
        "types", "prefix", "spike_on", "drop_on", "cusum_on", "vol_on",
        "sp", "sn", "lp", "ln",
        "season", "prof", "dow", "c_h", "c_d", "t_last", "dt", "hour_mark", "day_mark",
        "prev", "nv", "vr", "vf", "vm", "vv", "a_f", "a_s", "hst", "hst_thr",
    )

    def __init__(
        self,
        *,
        window: int = 64,
        warm_up: int = 30,
        threshold: float = 5.0,
        cusum_k: float = 1.5,
        cusum_h: float = 4.0,
        cusum_clip: float = 3.0,
        floor_kind: int = FLOOR_RELATIVE,
        floor_val: float = 0.01,
        types: tuple[str, str, str] = ("spike", "drop", "level_shift"),
        prefix: str = "robust",
        spike: bool = True,
        drop: bool = True,
        cusum: bool = True,
        volatility: bool = False,
        volatility_span: int = 16,
        volatility_slow_span: int = 256,
        season: int = SEASON_NONE,
        season_days: float = 4.0,
        season_weeks: float = 3.0,
        hst: object | None = None,
        hst_threshold: float = 0.9,
    ) -> None:
        self.W = max(8, int(window))
        self.ring: list[float] = []
        self.srt: list[float] = []
        self.pos = 0
        self.n = 0
        self.warm = max(int(warm_up), 8)
        self.thr = float(threshold)
        self.k, self.h, self.clip = float(cusum_k), float(cusum_h), float(cusum_clip)
        self.floor_kind, self.floor_val = floor_kind, float(floor_val)
        self.types = types
        self.prefix = prefix
        self.spike_on, self.drop_on, self.cusum_on, self.vol_on = spike, drop, cusum, volatility
        self.sp = self.sn = 0.0
        self.lp = self.ln = 0
        self.season = season
        self.prof = [0.0] * 24 if season else None
        self.dow = [0.0] * 7 if season == SEASON_WEEKLY else None
        # Per-point learning rate = (point spacing) * c: a slot averages over ~season_days days.
        self.c_h = 1.0 / (HOUR_MS * season_days)
        self.c_d = 1.0 / (DAY_MS * season_weeks)
        self.t_last = -1
        self.dt = 0.0
        self.hour_mark = -1
        self.day_mark = -1
        self.prev = math.nan
        self.nv = 0
        self.vr = self.vf = self.vm = self.vv = 0.0
        self.a_f = 2.0 / (volatility_span + 1)
        self.a_s = 2.0 / (volatility_slow_span + 1)
        self.hst = hst
        self.hst_thr = hst_threshold

    # -- state -------------------------------------------------------------------------------
    def __getstate__(self) -> dict:
        st = {s: getattr(self, s) for s in self.__slots__ if s not in ("ring", "srt")}
        st["ring"] = array("d", self.ring)  # 8 bytes per value in the snapshot
        return st

    def __setstate__(self, st: dict) -> None:
        for s, v in st.items():
            setattr(self, s, v)
        self.ring = st["ring"].tolist()
        self.srt = sorted(self.ring)

    def _position(self, t: int) -> tuple[int, int, float, int]:
        pos_h = (t % DAY_MS) / HOUR_MS - 0.5  # slot i is centred on hour i + 0.5
        if pos_h < 0.0:
            pos_h += 24.0
        i0 = int(pos_h)
        return i0, (i0 + 1 if i0 < 23 else 0), pos_h - i0, (t // DAY_MS + 3) % 7  # Monday = 0

    def seasonal(self, t: int) -> float:
        """Seasonal offset the baseline adds at time t (0 when seasonality is off)."""
        if not self.season:
            return 0.0
        i0, i1, w, d = self._position(t)
        s = self.prof[i0] + w * (self.prof[i1] - self.prof[i0])
        return s + self.dow[d] if self.dow is not None else s

    def baseline(self) -> tuple[float, float]:
        """(median, sigma) of the deseasonalized window, before any floor."""
        srt = self.srt
        m = len(srt)
        if not m:
            return 0.0, 0.0
        med = srt[m >> 1] if m & 1 else 0.5 * (srt[(m >> 1) - 1] + srt[m >> 1])
        sig = (srt[(3 * m) >> 2] - srt[m >> 2]) * 0.7413
        if sig <= 0.0:
            sig = sum(abs(v - med) for v in srt) / m * 1.2533
        return med, sig

    # -- hot path ----------------------------------------------------------------------------
    def step(self, t: int, x: float, nobs: float = 0.0) -> list[Finding] | None:
        """Score x at time t (ms) against the current baseline, then learn it. None = nothing found."""
        out: list[Finding] | None = None
        season = self.season
        if season:
            pos_h = (t % DAY_MS) / HOUR_MS - 0.5
            if pos_h < 0.0:
                pos_h += 24.0
            i0 = int(pos_h)
            w = pos_h - i0
            i1 = i0 + 1 if i0 < 23 else 0
            prof = self.prof
            s = prof[i0] + w * (prof[i1] - prof[i0])
            if season == SEASON_WEEKLY:
                d = (t // DAY_MS + 3) % 7
                s += self.dow[d]
        else:
            s = 0.0
        y = x - s
        srt = self.srt
        m = len(srt)
        n = self.n
        med = sig = 0.0
        if n >= self.warm:
            med = srt[m >> 1] if m & 1 else 0.5 * (srt[(m >> 1) - 1] + srt[m >> 1])
            sig = (srt[(3 * m) >> 2] - srt[m >> 2]) * 0.7413
            if sig <= 0.0:
                sig = sum([abs(v - med) for v in srt]) / m * 1.2533
            exp_ = med + s
            fk = self.floor_kind
            if fk == FLOOR_RELATIVE:
                fl = self.floor_val * (exp_ if exp_ >= 0.0 else -exp_)
            elif fk == FLOOR_POISSON:
                fl = math.sqrt(exp_ if exp_ > 1.0 else 1.0)
            elif fk == FLOOR_BINOMIAL and nobs > 0.0:
                p = exp_ if exp_ > 0.0 else 0.0
                if p < 1.0 / (nobs + 1.0):
                    p = 1.0 / (nobs + 1.0)
                elif p > 1.0:
                    p = 1.0
                fl = math.sqrt(p * (1.0 - p) / nobs) if p < 1.0 else 1.0 / nobs
            elif fk == FLOOR_ABSOLUTE:
                fl = self.floor_val
            else:
                fl = 0.0
            if sig < fl:
                sig = fl
            if sig < 1e-12:
                sig = 1e-12
            z = (y - med) / sig
            thr = self.thr
            if z >= thr:
                if self.spike_on:
                    r = z / thr
                    r *= r
                    r *= r
                    out = [(self.types[0], r / (1.0 + r), exp_, sig, x, self.prefix + "_z")]
            elif z <= -thr:
                if self.drop_on:
                    r = z / thr
                    r *= r
                    r *= r
                    out = [(self.types[1], r / (1.0 + r), exp_, sig, x, self.prefix + "_z")]
            if self.cusum_on:
                c = self.clip
                zc = c if z > c else (-c if z < -c else z)
                k = self.k
                sp = self.sp + zc - k
                if sp > 0.0:
                    self.lp += 1
                else:
                    sp = 0.0
                    self.lp = 0
                sn = self.sn - zc - k
                if sn > 0.0:
                    self.ln += 1
                else:
                    sn = 0.0
                    self.ln = 0
                self.sp, self.sn = sp, sn
                h = self.h
                if sp > h or sn > h:
                    f = self._level_shift(y, med, sig, s, max(sp, sn) / h, self.lp if sp > h else self.ln)
                    if out is None:
                        out = [f]
                    else:
                        out.append(f)
            if self.vol_on:
                f = self._volatility(y, n)
                if f is not None:
                    if out is None:
                        out = [f]
                    else:
                        out.append(f)
            if self.hst is not None:
                f = self._hst(y, x, z, exp_, sig)
                if f is not None:
                    if out is None:
                        out = [f]
                    else:
                        out.append(f)
        elif self.vol_on:
            self._volatility(y, n)
        # learn: ring buffer + sorted copy (a level shift may have rebuilt the sorted copy)
        ring = self.ring
        srt = self.srt
        if m < self.W:
            ring.append(y)
            insort(srt, y)
        else:
            pos = self.pos
            old = ring[pos]
            ring[pos] = y
            del srt[bisect_left(srt, old)]
            insort(srt, y)
        self.pos = (self.pos + 1) % self.W
        self.n = n + 1
        if season:
            self._learn_season(t, x, s, med, sig, i0, i1, w)
        return out

    def _learn_season(self, t: int, x: float, s: float, med: float, sig: float, i0: int, i1: int, w: float) -> None:
        tl = self.t_last
        if tl >= 0 and t > tl:
            gap = t - tl
            dt = self.dt
            if dt == 0.0:
                self.dt = float(gap)
            elif gap < 4.0 * dt:
                self.dt = dt + 0.05 * (gap - dt)
        if t > tl:
            self.t_last = t
        if sig <= 0.0 or self.dt <= 0.0:
            return  # still warming up: the level is not known yet
        c = 3.0 * sig
        u = x - med
        u = c if u > c else (-c if u < -c else u)
        e = u - s
        eta = self.dt * self.c_h
        if eta > 0.5:
            eta = 0.5
        prof = self.prof
        prof[i0] += eta * (1.0 - w) * e
        prof[i1] += eta * w * e
        if self.dow is not None:
            etd = self.dt * self.c_d
            self.dow[(t // DAY_MS + 3) % 7] += (etd if etd < 0.5 else 0.5) * e
        hour = t // HOUR_MS
        if hour != self.hour_mark:  # keep the profile zero-mean: the level lives in the median
            self.hour_mark = hour
            mean = sum(prof) / 24.0
            for i in range(24):
                prof[i] -= mean
            if self.dow is not None and hour // 24 != self.day_mark:
                self.day_mark = hour // 24
                mean = sum(self.dow) / 7.0
                for i in range(7):
                    self.dow[i] -= mean

    def _level_shift(self, y: float, med: float, sig: float, s: float, ratio: float, run: int) -> Finding:
        """CUSUM alarm: estimate the new level from the run and move the older buffer to it."""
        ring = self.ring
        m = len(ring)
        j = min(max(run, 1) - 1, m)  # run includes the current (not yet stored) point
        recent_idx = [(self.pos - i) % m for i in range(1, j + 1)] if m else []
        new_med = _median([ring[i] for i in recent_idx] + [y])
        delta = new_med - med
        keep = set(recent_idx)
        for i in range(m):
            if i not in keep:
                ring[i] += delta
        self.srt = sorted(ring)
        self.sp = self.sn = 0.0
        self.lp = self.ln = 0
        r = max(ratio, abs(delta) / (sig * 2.0 * self.k) if sig > 0.0 else ratio)
        return (self.types[2], squash(r), med + s, sig, new_med + s, self.prefix + "_cusum")

    def _volatility(self, y: float, n: int) -> Finding | None:
        prev = self.prev
        self.prev = y
        if prev != prev:  # NaN: first point
            return None
        r = y - prev
        if r < 0.0:
            r = -r
        nv = self.nv + 1
        self.nv = nv
        a_s = self.a_s if self.a_s > 1.0 / nv else 1.0 / nv
        a_f = self.a_f if self.a_f > 1.0 / nv else 1.0 / nv
        vr = self.vr
        c = r / vr if vr > 0.0 else 1.0
        if c > 4.0:
            c = 4.0
        self.vr = vr + a_s * (r - vr)
        vf = self.vf + a_f * (c - self.vf)
        self.vf = vf
        vm = self.vm
        d = c - vm
        self.vm = vm + a_s * d
        self.vv += a_s * (d * d - self.vv)
        if nv < self.warm + 2.0 / self.a_f or self.vv <= 0.0:
            return None
        sd = math.sqrt(self.vv * self.a_f / (2.0 - self.a_f))
        z = (vf - vm) / sd
        thr = self.thr
        if z >= thr or z <= -thr:
            return ("distribution_shift", squash(z / thr), vr, sd * vr, vf * vr, "volatility")
        return None

    def _hst(self, y: float, x: float, z: float, exp_: float, sig: float) -> Finding | None:
        prev = self.ring[(self.pos - 1) % len(self.ring)] if self.ring else y
        s = self.hst.step(y, y - prev)
        thr = self.hst_thr
        if s >= thr:
            score = 0.5 + 0.5 * (s - thr) / (1.0 - thr) if thr < 1.0 else 1.0
            return (self.types[0] if z >= 0 else self.types[1], min(score, 1.0), exp_, sig, x, "hst")
        return None

    def shift_levels(self, delta: float) -> None:
        for i in range(len(self.ring)):
            self.ring[i] += delta
        self.srt = sorted(self.ring)


class HSTMember:
    """Optional ensemble member: river's HalfSpaceTrees on min-max scaled (level, change)."""

    def __init__(self, window: int, seed: int) -> None:
        from river import anomaly, compose, preprocessing

        self.model = compose.Pipeline(
            preprocessing.MinMaxScaler(),
            anomaly.HalfSpaceTrees(n_trees=10, height=6, window_size=max(window, 32), seed=seed),
        )

    def step(self, level: float, change: float) -> float:
        x = {"y": level, "d": change}
        s = self.model.score_one(x)
        self.model.learn_one(x)
        return s


class HistShiftDetector:
    """Distribution shift of a windowed histogram: JS divergence to a decayed reference.

    Buckets are coarsened by `bits` (2^bits log-buckets of ~2% each, i.e. ~17% wide for bits=3)
    so a window with tens of events still gives a usable shape. The divergence is corrected for
    its small-sample bias ((B-1)/(8n) nats for B reference buckets and n events) and then scored by
    a one-sided RobustDetector against the series' own recent divergences, floored at `min_js`.
    """

    __slots__ = ("ref", "alpha", "bits", "min_count", "nw", "js")

    def __init__(self, *, half_life: int = 60, bits: int = 3, min_count: int = 30, min_js: float = 0.02,
                 window: int = 64, warm_up: int = 30, threshold: float = 5.0) -> None:
        self.ref: dict[int, float] = {}
        self.alpha = 1.0 - 0.5 ** (1.0 / max(half_life, 1))
        self.bits = bits
        self.min_count = min_count
        self.nw = 0
        self.js = RobustDetector(window=window, warm_up=warm_up, threshold=threshold, floor_kind=FLOOR_ABSOLUTE,
                                 floor_val=min_js / threshold, types=("distribution_shift",) * 3, prefix="hist_js",
                                 drop=False, cusum=False)

    @staticmethod
    def divergence(p: dict[int, float], q: dict[int, float]) -> float:
        """Jensen-Shannon divergence (nats, 0..ln 2) of two normalized bucket -> mass maps."""
        js = 0.0
        for k, pk in p.items():
            qk = q.get(k, 0.0)
            mk = 0.5 * (pk + qk)
            if pk > 0.0:
                js += pk * math.log(pk / mk)
            if qk > 0.0:
                js += qk * math.log(qk / mk)
        for k, qk in q.items():
            if k not in p and qk > 0.0:
                js += qk * math.log(2.0)
        return 0.5 * js

    def step(self, t: int, hist: dict[int, int]) -> Finding | None:
        total = 0
        bits = self.bits
        p: dict[int, float] = {}
        for k, c in hist.items():
            if c > 0:
                kk = k >> bits
                p[kk] = p.get(kk, 0.0) + c
                total += c
        if total < self.min_count:
            return None
        inv = 1.0 / total
        for k in p:
            p[k] *= inv
        ref = self.ref
        self.nw += 1
        found = None
        if ref:
            js = self.divergence(p, ref)
            b = sum(1 for v in ref.values() if v >= 1e-3)
            js_c = js - (b - 1) / (8.0 * total)
            res = self.js.step(t, js_c if js_c > 0.0 else 0.0)
            if res:
                found = res[0]
        # learn the reference (bias-corrected start: plain average of the first windows)
        a = self.alpha if self.alpha > 1.0 / self.nw else 1.0 / self.nw
        keep = 1.0 - a
        for k in list(ref):
            v = ref[k] * keep
            if v < 1e-6 and k not in p:
                del ref[k]
            else:
                ref[k] = v
        for k, v in p.items():
            ref[k] = ref.get(k, 0.0) + a * v
        return found
