"""`AnomalyLikelihood`: one calibrated anomaly score in [0, 1) per point of a series.

Per point, predict-then-learn:
  1. surprise a = |residual z| (the caller's): the robust z of the value member
     (`RobustDetector`: deseasonalized window median and sigma) or, where a daily period was
     found and its phase profile predicts better (`SeasonalNaive`), the standardized residual
     against that profile;
  2. likelihood (in the spirit of Numenta's anomaly likelihood): how far a (capped at 10) is above
     the series' own long-run distribution of surprise: q = (a - mean) / sd, mean and sd
     exponentially weighted over ~`span` points (sd floored at 0.1 z units: a flat series does
     not make every wiggle infinite);
  3. refractory: q minus the part of its recent peak (decaying by `decay` per point) above
     `REFRACTORY_FROM`, so one anomaly episode scores high once, at its start, and not again on
     every point of it, while ordinary noise peaks do not mask a real outlier;
  4. score = q / (q + 5) for q > 0, else 0: strictly increasing in q, 0.5 at q = 5
     (`ALERT_SCORE`), never exactly 1, so there is no plateau of ties at the top.
Alerts are decided apart (`TailTest` in tail.py, and the gates of the bank): this score ranks.
Measured on the 31 NAB series: ranking by the tail probability itself instead of q costs 8 to 30
points of NAB's standard score (real anomalies sit in series whose surprise is heavy-tailed), so
the tail only gates alerts. State: 4 floats and 2 ints plus settings (~100 bytes pickled).
"""
from __future__ import annotations

import math
from operators.detect.slots import SlotState

ALERT_SCORE = 0.5  # q = 5 long-run sds above the usual surprise (the score's own threshold)
CAP = 10.0
SD_FLOOR = 0.1
REFRACTORY_FROM = 3.0  # only a recent peak above this (a notable one) raises the bar


class AnomalyLikelihood(SlotState):
    """Calibrated score of a surprise stream; see the module docstring.

    >>> lk = AnomalyLikelihood()
    >>> quiet = [lk.step(0.5 + 0.3 * (i % 3)) for i in range(200)]
    >>> max(quiet) < 0.5 < lk.step(9.0) < 1.0
    True
    """

    __slots__ = ("mu", "var", "peak", "n", "alpha", "decay", "warm", "last")

    def __init__(self, span: int = 2000, decay: float = 0.99, warm_up: int = 20) -> None:
        self.mu = 0.0
        self.var = 0.0
        self.peak = 0.0
        self.n = 0
        self.alpha = 2.0 / (span + 1)
        self.decay = decay
        self.warm = warm_up
        self.last = 0.0

    def step(self, a: float) -> float:
        """Score surprise a (>= 0), then learn it."""
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
