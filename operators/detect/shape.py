"""`HistShiftDetector`: distribution shift of a windowed series, as a change of its histogram's shape.

It measures the Jensen-Shannon divergence between a window's median-aligned log-bucket histogram
and a decayed reference shape, standardizes it by its chi-square sampling distribution and scores
it with a one-sided RobustDetector, so the threshold adapts to the series' own sampling noise.
"""
from __future__ import annotations

import math

from operators.detect.findings import Finding
from operators.detect.robust import FLOOR_ABSOLUTE, RobustDetector


class HistShiftDetector:
    """Distribution shift of a windowed histogram: change of *shape*, at any location.

    Each window's log-bucket histogram is first aligned on its median bucket (a multiplicative
    level change is a spike or level shift, reported by the value member, not a shape change),
    then coarsened by `bits` (2^bits log-buckets of ~2% each, ~17% wide for bits=3) so a window
    with tens of events still gives a usable shape. Its Jensen-Shannon divergence to a decayed
    reference shape is standardized with its sampling distribution under "same shape"
    (8 n JS ~ chi-square with B-1 degrees of freedom for B reference buckets and n events), so
    windows of any size compare, and scored one-sided by a RobustDetector against the series' own
    recent values (sigma floored at 1, the multinomial null: never more sensitive than sampling
    noise allows). An alert also needs the divergence to exceed its small-sample bias (B-1)/(8n) by
    `min_js` nats (practical significance).

    >>> d = HistShiftDetector()
    >>> [d.step(minute * 60_000, {100: 20, 101: 40, 102: 40, 103: 20}) for minute in range(40)].count(None)
    40
    >>> d.step(40 * 60_000, {90: 60, 112: 60})[0]  # same median, two modes far apart
    'distribution_shift'
    """

    __slots__ = ("ref", "alpha", "bits", "min_count", "min_js", "nw", "js")

    def __init__(self, *, half_life: int = 60, bits: int = 3, min_count: int = 30, min_js: float = 0.02,
                 window: int = 64, warm_up: int = 30, threshold: float = 5.0) -> None:
        self.ref: dict[int, float] = {}
        self.alpha = 1.0 - 0.5 ** (1.0 / max(half_life, 1))
        self.bits = bits
        self.min_count = min_count
        self.min_js = min_js
        self.nw = 0
        self.js = RobustDetector(window=window, warm_up=warm_up, threshold=threshold, floor_kind=FLOOR_ABSOLUTE,
                                 floor_val=1.0, types=("distribution_shift",) * 3, prefix="hist_js",
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

    def shape(self, hist: dict[int, int]) -> tuple[dict[int, float], int]:
        """Median-aligned, coarsened, normalized histogram and its event count."""
        items = sorted((k, c) for k, c in hist.items() if c > 0)
        total = sum(c for _, c in items)
        if not total:
            return {}, 0
        half = total / 2.0
        acc = 0
        med_k = items[-1][0]
        for k, c in items:
            acc += c
            if acc >= half:
                med_k = k
                break
        bits = self.bits
        off = (1 << bits) >> 1
        inv = 1.0 / total
        p: dict[int, float] = {}
        for k, c in items:
            kk = (k - med_k + off) >> bits
            p[kk] = p.get(kk, 0.0) + c * inv
        return p, total

    def step(self, t: int, hist: dict[int, int]) -> Finding | None:
        p, total = self.shape(hist)
        if total < self.min_count:
            return None
        ref = self.ref
        self.nw += 1
        found = None
        if ref:
            js = self.divergence(p, ref)
            dof = max(sum(1 for v in ref.values() if v >= 1e-3) - 1, 1)
            # Under "same shape", 8 n JS ~ chi2(dof): standardize so windows of any size compare.
            stat = (8.0 * total * js - dof) / math.sqrt(2.0 * dof)
            res = self.js.step(t, stat)
            if res:
                excess = js - dof / (8.0 * total)
                if excess >= self.min_js:
                    _, score, exp_s, sig_s, _, det = res[0]
                    scale = math.sqrt(2.0 * dof) / (8.0 * total)
                    found = ("distribution_shift", score, max(exp_s * scale + dof / (8.0 * total), 0.0), sig_s * scale,
                             js, det)
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
