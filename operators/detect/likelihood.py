"""`AnomalyLikelihood`: one calibrated anomaly score in [0, 1) per point of a series, and a tail test.

Per point, predict-then-learn:
  1. surprise a = |residual z|: the robust z of the value member (`RobustDetector`: deseasonalized
     window median and sigma, heavy tails discounted by the series' own 99th percentile of |z|),
     or, when a daily or weekly period was detected (`SeasonalNaive`), the standardized residual
     against that period's phase profile;
  2. likelihood (in the spirit of Numenta's anomaly likelihood): how far a (capped at 10) is above
     the series' own long-run distribution of surprise: q = (a - mean) / sd, mean and sd
     exponentially weighted over ~`span` points (sd floored at 0.1 z units: a flat series does
     not make every wiggle infinite);
  3. refractory: q minus the part of its recent peak (decaying by `decay` per point) above
     `REFRACTORY_FROM`, so one anomaly episode scores high once, at its start, and not again on
     every point of it, while ordinary noise peaks do not mask a real outlier;
  4. score = q / (q + 5) for q > 0, else 0: strictly increasing in q, 0.5 at q = 5 (the alert
     threshold `ALERT_SCORE`), never exactly 1, so there is no plateau of ties at the top.
  5. tail test (`tail_ok`, for alerts only; the score is unchanged by it): the mean and sd of
     surprise say nothing about how often a heavy-tailed series produces extremes, so an alert
     also needs the point to be rare against the series' own *tail* (peaks over threshold, as in
     SPOT): u is a running 90th percentile of a (stochastic approximation); the excesses a - u
     follow a generalized Pareto law whose scale s and shape xi (0: exponential, Gaussian-like
     tails; up to 0.45: power laws such as Student-t(3)) come from the running mean and mean
     square of the excesses (method of moments); tail_ok = P(A >= a) = 0.1 (1 + xi y / s)^(-1/xi)
     <= 10^-TAIL_NINES. It starts from a Gaussian prior (u = 1.645, exponential excesses of mean
     0.42, worth `PRIOR_EXCESSES` excesses); excesses that pass the test are not learnt (one wild
     point must not fatten the tail).
Measured on the 31 NAB series: ranking by the tail probability itself instead of q costs 7 to 12
points of NAB's standard score (real anomalies sit in series whose surprise is heavy-tailed), so
the tail only vetoes alerts. State: 7 floats and 3 ints (~150 bytes pickled).
"""
from __future__ import annotations

import math

ALERT_SCORE = 0.5  # score at which a point is an alert: q = 5 long-run sds above the usual surprise
CAP = 10.0
SD_FLOOR = 0.1
REFRACTORY_FROM = 3.0  # only a recent peak above this (a notable one) raises the bar
TAIL_NINES = 4.0  # tail test: P(surprise >= a) <= 10^-TAIL_NINES
TAIL_CAP = 100.0
TAIL_P = 0.1  # u tracks the (1 - TAIL_P) quantile of surprise
U_STEP = 0.02  # stochastic-approximation step of u, in units of the tail scale
S_FLOOR = 0.1
XI_MAX = 0.45
PRIOR_EXCESSES = 20.0
_TAIL_NATS = (TAIL_NINES - 1.0) * math.log(10.0)  # -ln P(excess > y) at the test's level


class AnomalyLikelihood:
    """Calibrated score of a surprise stream; see the module docstring.

    >>> lk = AnomalyLikelihood()
    >>> quiet = [lk.step(0.5 + 0.3 * (i % 3)) for i in range(200)]
    >>> max(quiet) < 0.5 < lk.step(9.0) < 1.0, lk.tail_ok
    (True, True)
    """

    __slots__ = ("mu", "var", "u", "m1", "m2", "ne", "peak", "n", "alpha", "decay", "warm", "last", "tail_ok")

    def __init__(self, span: int = 2000, decay: float = 0.99, warm_up: int = 20) -> None:
        self.mu = 0.0
        self.var = 0.0
        self.u = 1.645
        self.m1 = 0.417  # mean and mean square of the excesses over u (Gaussian prior)
        self.m2 = 2.0 * 0.417 * 0.417
        self.ne = 0
        self.peak = 0.0
        self.n = 0
        self.alpha = 2.0 / (span + 1)
        self.decay = decay
        self.warm = warm_up
        self.last = 0.0
        self.tail_ok = False

    def __getstate__(self) -> tuple:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __setstate__(self, st: tuple) -> None:
        for name, v in zip(self.__slots__, st):
            setattr(self, name, v)

    def tail(self) -> tuple[float, float, float]:
        """(u, scale, shape): the running 90th percentile of surprise and the generalized Pareto
        law of the excesses over it (method of moments, shape clamped to [0, XI_MAX])."""
        m1 = self.m1
        var = self.m2 - m1 * m1
        xi = 0.0
        if var > 1e-12:
            xi = 0.5 * (1.0 - m1 * m1 / var)
            xi = 0.0 if xi < 0.0 else (XI_MAX if xi > XI_MAX else xi)
        s = m1 * (1.0 - xi)  # GPD: mean excess = s / (1 - xi)
        return self.u, (s if s > S_FLOOR else S_FLOOR), xi

    def _learn_tail(self, a: float) -> bool:
        """Tail test of surprise a (True: rarer than 10^-TAIL_NINES), then learn it."""
        if a > TAIL_CAP:
            a = TAIL_CAP
        u, s, xi = self.tail()
        y = a - u
        if y <= 0.0:
            u -= U_STEP * s * TAIL_P
            self.u = u if u > 0.0 else 0.0
            return False
        t = y / s
        nats = math.log1p(xi * t) / xi if xi > 1e-6 else t  # -ln P(excess > y)
        self.u = u + U_STEP * s * (1.0 - TAIL_P)
        if nats >= _TAIL_NATS:  # an outlier of the tail itself is not learnt: it must not fatten it
            return True
        ne = self.ne + 1
        self.ne = ne
        al = 1.0 / (ne + PRIOR_EXCESSES)
        if al < self.alpha:
            al = self.alpha
        self.m1 += al * (y - self.m1)
        self.m2 += al * (y * y - self.m2)
        return False

    def step(self, a: float) -> float:
        """Score surprise a (>= 0), then learn it; `tail_ok` tells whether a is rare in the tail."""
        self.tail_ok = self._learn_tail(a)
        if a > CAP:
            a = CAP
        n = self.n + 1
        self.n = n
        mu = self.mu
        q = 0.0
        if n > self.warm:
            sd = math.sqrt(self.var)
            q = (a - mu) / (sd if sd > SD_FLOOR else SD_FLOOR)
        al = self.alpha if self.alpha > 1.0 / n else 1.0 / n
        d = a - mu
        self.mu = mu + al * d
        self.var = (1.0 - al) * (self.var + al * d * d)
        if q < 0.0:
            q = 0.0
        peak = self.peak * self.decay
        self.peak = q if q > peak else peak
        if peak > REFRACTORY_FROM:
            q -= peak - REFRACTORY_FROM
        score = q / (q + 5.0) if q > 0.0 else 0.0
        self.last = score
        return score
