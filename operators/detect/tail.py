"""`TailTest`: is a surprise rare for this series' own tail? (alerts only; scores do not use it)

A point may alert only where its surprise a = |residual z| is rarer than 1e-5 per point
under an extreme-value model of the series' own surprise, with enough evidence behind it. Why:
mean and sd of the surprise (the score's calibration) say nothing about how often a series makes
extremes; a Student-t(3) series makes a 10-sigma point every ~1,000 points, Gaussian noise one in
10^23. Peaks over threshold, as in SPOT, with three refinements:

- threshold u: a running 90th percentile of a (stochastic approximation, scale-relative steps);
- runs declustering (Coles 2001, ch. 5): consecutive excesses over u are one cluster and only the
  cluster maximum is learnt, so an episode (a variance burst, the points after a level shift)
  counts once rather than as many heavy-tailed draws; theta (the extremal index) is the share of
  excesses that start a cluster, and P(A >= a) = 0.1 theta G(a - u) per point;
- G is a generalized Pareto tail whose shape xi and scale come from the Dekkers-Einmahl-de Haan
  moment estimator on log(cluster max / u) (running means M1, M2 over ~`SPAN` clusters): unlike
  moments of the excesses it is consistent for light (xi < 0, Gaussian-like) and power-law
  (xi > 0, t(3): 1/3) tails alike. It starts from the values for |N(0, 1)| worth `PRIOR`
  clusters; a rare cluster maximum is learnt at the test's level, so one wild point cannot
  fatten the tail but a series that keeps making them does.
Minimum evidence (`ready`): `MIN_CLUSTERS` learnt clusters (the effective sample of a GPD fit),
or `MIN_POINTS` points for series that hardly ever exceed (smooth or constant ones). Before it,
the shape is taken as at least `XI_EARLY` (Student-t(2)-like: the heaviest tail still taken for
noise), so only points rare even under such a tail pass (in practice |z| near the cap of 100:
a 12x latency jump on a series a few minutes old, not a 12-sigma blip). Learning is paused by
the caller while a change is building up (CUSUM, volatility), so a change is not learnt as the
series' noise before it is reported.
Measured with the bank (bench/anomaly_eval.py, alerts per 10k points of clean series): Student-t(3)
0.6 (7.9 with the previous moment-based tail test), Student-t(3) on a daily cycle 0.2, Gaussian
0.0. State: 9 numbers, ~110 bytes pickled.
"""
from __future__ import annotations

import math
from operators.detect.slots import SlotState

ALPHA_NINES = 5.0  # alert where P(A >= a) <= 10^-5 per point
P_U = 0.1  # u tracks the (1 - P_U) quantile of surprise
U_STEP = 0.02  # quantile step, in units of u * M1 (the mean log-excess: scale-free)
U_FLOOR = 0.05
CAP = 100.0
SPAN = 1000  # clusters behind M1, M2 (EWMA)
# The Gaussian prior is worth 100 clusters (~1,200 points): the shape estimate's own noise (sd
# ~1/sqrt(clusters)) must not swing a 1e-5 test; measured, 20 -> 100 raised synthetic recall
# 0.63 -> 0.69 with the clean Student-t(3) sets' alerts unchanged (a t(3) tail outweighs it fast).
PRIOR = 100.0
THETA_PRIOR = 5.0
MIN_CLUSTERS = 50  # the usual minimum sample of a GPD fit
MIN_POINTS = 1000  # extrapolating to 1e-5 from 1000 points spans two decades
XI_EARLY = 0.5  # Student-t(2)-like: the heaviest tail still taken for noise
# log(|Z| / u) above u = 1.645 for Z ~ N(0, 1): E = 0.2120, E[.^2] = 0.0722 (numerical integral)
_M1_GAUSS, _M2_GAUSS = 0.2120, 0.0722
_LIM = ALPHA_NINES * math.log(10.0)  # -ln P at the test level
_ALPHA = 2.0 / (SPAN + 1)


class TailTest(SlotState):
    """Rarity of a surprise against the series' own declustered tail; see the module docstring.

    >>> import random
    >>> rnd = random.Random(1)
    >>> tt = TailTest()
    >>> sum(tt.step(abs(rnd.gauss(0.0, 1.0))) for _ in range(3000)), tt.ready
    (0, True)
    >>> tt.step(7.0), round(tt.shape(), 1) <= 0.0
    (True, True)
    """

    __slots__ = ("u", "m1", "m2", "theta", "ne", "nc", "n", "cmax", "gap")

    def __init__(self) -> None:
        self.u = 1.6449  # 90th percentile of |N(0, 1)|
        self.m1 = _M1_GAUSS
        self.m2 = _M2_GAUSS
        self.theta = 1.0
        self.ne = 0  # excesses, clusters learnt, points seen
        self.nc = 0
        self.n = 0
        self.cmax = 0.0  # maximum of the open cluster (0: none open)
        self.gap = 1  # points since the last excess

    @property
    def ready(self) -> bool:
        """Enough evidence to certify rarity (see `MIN_CLUSTERS`, `MIN_POINTS`)."""
        return self.nc >= MIN_CLUSTERS or self.n >= MIN_POINTS

    def _gpd(self) -> tuple[float, float]:
        """(shape, scale) of the excesses over u: Dekkers-Einmahl-de Haan moment estimator."""
        m1 = self.m1
        r = 1.0 - m1 * m1 / self.m2 if self.m2 > 0.0 else 0.5
        if r < 1e-3:
            r = 1e-3
        neg = 1.0 - 0.5 / r  # the estimator's negative part
        xi = m1 + neg
        if neg > 0.0:
            neg = 0.0
        u = self.u if self.u > U_FLOOR else U_FLOOR
        sig = u * m1 * (1.0 - neg)
        return (xi if xi > -0.5 else -0.5), (sig if sig > 1e-6 else 1e-6)

    def shape(self) -> float:
        """Current tail shape xi (0: exponential-like tail; t(3): 1/3)."""
        return self._gpd()[0]

    def _nats(self, y: float, xi: float, sig: float) -> float:
        """-ln P(excess over u >= y) under the GPD (huge beyond a light tail's endpoint)."""
        t = y / sig
        if -1e-6 < xi < 1e-6:
            return t
        b = 1.0 + xi * t
        return math.log(b) / xi if b > 0.0 else 1e9

    def step(self, a: float, learn: bool = True) -> bool:
        """True when surprise a (>= 0) is rarer than 10^-ALPHA_NINES per point (with the early,
        heavy shape before the minimum evidence); then learn it (unless `learn` is False: a change
        is building up)."""
        if a > CAP:
            a = CAP
        self.n += 1
        u = self.u if self.u > U_FLOOR else U_FLOOR
        rare = out = False
        if a > u:
            xi, sig = self._gpd()
            base = -math.log(P_U * self.theta)
            rare = out = base + self._nats(a - u, xi, sig) >= _LIM
            if rare and xi < XI_EARLY and not self.ready:  # the alert, not the learning, is cautious
                out = base + self._nats(a - u, XI_EARLY, sig) >= _LIM
            if rare and learn:  # learnt at the test's level: bounded influence
                lt = _LIM - base
                a = u + (sig * lt if -1e-6 < xi < 1e-6 else sig * math.expm1(xi * lt) / xi)
        if not learn:
            return out
        step = U_STEP * u * self.m1
        if a > u:
            self.u = u + step * (1.0 - P_U)
            new = self.gap >= 1
            if new and self.cmax > 0.0:
                self._commit(u)
            ne = self.ne + 1
            self.ne = ne
            al = 1.0 / (ne + THETA_PRIOR)
            if al < _ALPHA:
                al = _ALPHA
            self.theta += al * ((1.0 if new else 0.0) - self.theta)
            if a > self.cmax:
                self.cmax = a
            self.gap = 0
        else:
            nu = u - step * P_U
            self.u = nu if nu > U_FLOOR else U_FLOOR
            self.gap += 1
            if self.gap == 1 and self.cmax > 0.0:
                self._commit(u)
        return out

    def _commit(self, u: float) -> None:
        """A cluster closed: learn log(max / u)."""
        a = self.cmax
        self.cmax = 0.0
        if a <= u:
            return
        la = math.log(a / u)
        nc = self.nc + 1
        self.nc = nc
        al = 1.0 / (nc + PRIOR)
        if al < _ALPHA:
            al = _ALPHA
        self.m1 += al * (la - self.m1)
        self.m2 += al * (la * la - self.m2)
