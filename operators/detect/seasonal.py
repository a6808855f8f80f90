"""`SeasonalNaive`: automatic period detection and a phase profile for one raw stream.

Warm-up: the first points are buffered until they cover two days (at most `2 * max_period`
points). The sampling interval dt is their median spacing; candidate periods are one day and one
week (lag = period / dt points, at most `max_period`, covered at least twice by the buffer); the
period with the highest autocorrelation at its lag, if >= `min_acf`, is kept. The buffer is then
dropped and replaced by a profile of `lag` phase slots (phase = (t mod period) / dt), each an
EWMA of its value (`rate` per period), seeded from the buffer. Per point (predict, then learn):
residual e = x - profile[phase], scaled by a running mean absolute residual (sd units); points
more than 4 sd off do not teach the profile and move the scale by at most 4 sd.
No period found: the member stays off (returns None) and holds nothing but a few numbers.
Memory (in memory and pickled, as packed arrays): the warm-up buffer, 16 bytes a point for at most
2 * lag + 1 points (2 days: 9.2 KB for 5-minute data, 46 KB for 1-minute data), then 8 bytes per
phase slot if a period was found (2.3 KB for 5-minute data, 11.5 KB for 1-minute data), else none.
"""
from __future__ import annotations

import math
from array import array

DAY_MS = 86_400_000
PERIODS = (DAY_MS, 7 * DAY_MS)


class SeasonalNaive:
    """See the module docstring. `step(t, x)` -> standardized residual, or None while off."""

    __slots__ = ("buf", "tb", "max_period", "min_acf", "rate", "period", "dt", "prof", "scale", "done")

    def __init__(self, max_period: int = 2016, min_acf: float = 0.5, rate: float = 0.3) -> None:
        self.buf: array | None = array("d")
        self.tb: array | None = array("q")
        self.max_period = max_period
        self.min_acf = min_acf
        self.rate = rate
        self.period = 0
        self.dt = 0
        self.prof: array | None = None
        self.scale = 0.0
        self.done = False

    def __getstate__(self) -> tuple:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __setstate__(self, st: tuple) -> None:
        for name, v in zip(self.__slots__, st):
            setattr(self, name, v)

    @property
    def lag(self) -> int:
        return len(self.prof) if self.prof is not None else 0

    def _detect(self) -> None:
        xs, tb = self.buf, self.tb
        self.buf = self.tb = None
        self.done = True
        diffs = sorted(b - a for a, b in zip(tb, tb[1:]))
        dt = diffs[len(diffs) // 2] if diffs else 0
        if dt <= 0:
            return
        n = len(xs)
        m = sum(xs) / n
        dev = [x - m for x in xs]
        den = sum(d * d for d in dev)
        if den <= 0.0:
            return
        best = None
        for per in PERIODS:
            lag = per // dt
            if lag < 4 or lag > self.max_period or n < 2 * lag + 1:
                continue
            r = sum(dev[i] * dev[i - lag] for i in range(lag, n)) / den * n / (n - lag)
            if r >= self.min_acf and (best is None or r > best[0]):
                best = (r, per, lag)
        if best is None:
            return
        _, per, lag = best
        self.period, self.dt = per, dt
        prof: list[float | None] = [None] * lag
        for t, x in zip(tb, xs):
            ph = (t % per) // dt % lag
            p = prof[ph]
            prof[ph] = x if p is None else p + 0.5 * (x - p)
        self.prof = array("d", (m if p is None else p for p in prof))
        e = [abs(xs[i] - xs[i - lag]) for i in range(lag, n)]
        self.scale = sum(e) / len(e) * 0.6267  # mean |x_t - x_t-lag| -> sd of one residual

    def step(self, t: int, x: float) -> float | None:
        if not self.done:
            buf, tb = self.buf, self.tb
            buf.append(x)
            tb.append(t)
            k = len(tb)
            if k >= 3:
                tail = tb[-50:]
                diffs = sorted(b - a for a, b in zip(tail, tail[1:]))
                dt = diffs[len(diffs) // 2]
                lag = DAY_MS // dt if dt > 0 else 0
                if lag > self.max_period or k >= 2 * lag + 1 or k > 2 * self.max_period:
                    self._detect()
            return None
        prof = self.prof
        if prof is None:
            return None
        ph = (t % self.period) // self.dt % len(prof)
        e = x - prof[ph]
        sc = self.scale
        ae = e if e >= 0.0 else -e
        if sc > 1e-12:
            z = e / sc
        else:
            z = 0.0 if ae < 1e-12 else math.copysign(10.0, e)
        cap = 4.0 * sc if sc > 1e-12 else ae
        self.scale = sc + 0.01 * ((ae if ae < cap else cap) * 1.2533 - sc)
        if -4.0 < z < 4.0:
            prof[ph] += self.rate * e
        return z
