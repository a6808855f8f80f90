"""`SeasonalNaive`: automatic period detection and a phase profile for one raw stream.

Time is cut into 5-minute phase bins (288 a day). Warm-up: the mean of each bin is buffered until
two days are covered. The candidate period is one day (288 bins; an hour is too short: any slowly
moving series looks "hourly"; a week would need two weeks of warm-up); it is kept if the
autocorrelation of the binned warm-up at its lag is >= `min_acf` and a period holds >= 4 samples.
The buffer is then dropped and replaced by a profile of one slot per bin of the period, each an
EWMA of its values (`rate` per visit), seeded from the buffer.
Per point (predict, then learn): residual e = x - profile[bin], in units of a running mean
absolute residual (converted to sd); points more than 4 sd off do not teach the profile and move
the scale by at most 4 sd. No period found: the member stays off (returns None) and holds nothing
but a few numbers. Model choice: the caller passes the robust baseline's residual for the same
point; the member speaks (returns its z) only while its own out-of-sample error is the smaller
(mean squares over ~`SEL_SPAN` points, each winsorized at 4 x its running root mean square so one
anomaly does not decide): a period that exists but is poorly followed by the phase profile (noisy
1-minute data, a weekend, a trend) leaves the robust baseline in charge.
Memory (in memory and pickled, packed arrays): during warm-up at most 577 bins x 12 bytes (6.9 KB),
then 8 bytes per slot if a period was found (2.3 KB for a daily period), else nothing.
"""
from __future__ import annotations

import math
from array import array
from operators.detect.slots import SlotState

BIN_MS = 300_000  # 5 minutes
DAY_BINS = 288
PERIODS = (DAY_BINS,)  # candidate periods in bins: a day
SEL_SPAN = 333  # points behind the model-choice error averages (alpha 0.003)


class SeasonalNaive(SlotState):
    """See the module docstring. `step(t, x)` -> standardized residual, or None while off.

    >>> import math
    >>> s = SeasonalNaive()
    >>> [s.step(i * 300_000, math.sin(i * 2 * math.pi / 288)) for i in range(580)].count(None), s.lag
    (578, 288)
    >>> abs(s.step(580 * 300_000, math.sin(580 * 2 * math.pi / 288))) < 1.0
    True
    """

    __slots__ = ("buf", "bins", "cur", "acc", "cnt", "min_acf", "rate", "prof", "scale", "done", "er", "es", "ne")

    def __init__(self, min_acf: float = 0.5, rate: float = 0.3) -> None:
        self.buf: array | None = array("d")  # warm-up: mean of each bin, and its bin number
        self.bins: array | None = array("q")
        self.cur = -1  # warm-up: the bin being filled, its sum and count
        self.acc = 0.0
        self.cnt = 0
        self.min_acf = min_acf
        self.rate = rate
        self.prof: array | None = None
        self.scale = 0.0
        self.done = False
        self.er = 0.0  # model choice: mean squared error of the caller's baseline and of the profile
        self.es = 0.0
        self.ne = 0

    @property
    def lag(self) -> int:
        """Detected period in 5-minute bins (0: none, or still warming up)."""
        return len(self.prof) if self.prof is not None else 0

    def _detect(self) -> None:
        xs, bins = self.buf, self.bins
        self.buf = self.bins = None
        self.done = True
        n = len(xs)
        if n < 8:
            return
        m = sum(xs) / n
        dev = {b: x - m for b, x in zip(bins, xs)}
        den = sum(d * d for d in dev.values())
        if den <= 0.0:
            return
        best = None
        for lag in PERIODS:
            pairs = [(d, dev[b - lag]) for b, d in dev.items() if b - lag in dev]
            if len(pairs) < max(8, n // 3) or len({b % lag for b in bins}) < 4:
                continue  # too little overlap, or fewer than 4 samples per period
            r = sum(a * b for a, b in pairs) / den * n / len(pairs)
            if r >= self.min_acf and (best is None or r > best[0]):
                best = (r, lag)
        if best is None:
            return
        lag = best[1]
        prof: list[float | None] = [None] * lag
        for b, x in zip(bins, xs):
            p = prof[b % lag]
            prof[b % lag] = x if p is None else p + 0.5 * (x - p)
        self.prof = array("d", (m if p is None else p for p in prof))
        e = [abs(x - xs_lag) for b, x in zip(bins, xs) if b - lag in dev for xs_lag in (dev[b - lag] + m,)]
        self.scale = sum(e) / len(e) * 0.6267  # mean |x_t - x_t-lag| -> sd of one residual

    def step(self, t: int, x: float, e_ref: float | None = None) -> float | None:
        """Residual z of x against the phase profile, then learn x; None while warming up, when
        no period was found, or while the caller's baseline (residual `e_ref`) predicts better."""
        b = t // BIN_MS
        if not self.done:
            cur = self.cur
            if b != cur:
                if self.cnt:
                    self.buf.append(self.acc / self.cnt)
                    self.bins.append(cur)
                self.cur, self.acc, self.cnt = b, x, 1
                bins = self.bins
                if bins and b - bins[0] > 2 * DAY_BINS:
                    self._detect()
            else:
                self.acc += x
                self.cnt += 1
            return None
        prof = self.prof
        if prof is None:
            return None
        ph = b % len(prof)
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
        if e_ref is None:
            return z
        ne = self.ne + 1
        self.ne = ne
        er, es = self.er, self.es
        r2, s2 = e_ref * e_ref, e * e
        if ne > 1:  # winsorized at 4 root mean squares
            if r2 > 16.0 * er:
                r2 = 16.0 * er
            if s2 > 16.0 * es:
                s2 = 16.0 * es
        a = 1.0 / ne if ne < SEL_SPAN else 1.0 / SEL_SPAN
        er += a * (r2 - er)
        es += a * (s2 - es)
        self.er, self.es = er, es
        return z if es < er else None
