"""`Volatility`: distribution shift of a raw stream, seen as a change of its volatility.

Fast EWMA of c = |first difference|^(2/3) / its slow mean, against c's own slow mean and sd
(self-calibrating; first differences make it blind to level shifts, the cap to single spikes).
Raw point streams have no histogram, so this stands in for the histogram shape test there.
"""
from __future__ import annotations

import math

from operators.detect.findings import Finding, squash
from operators.detect.slots import SlotState


class Volatility(SlotState):
    """Volatility member of a `RobustDetector` (see the module docstring)."""

    __slots__ = ("prev", "n", "vr", "vf", "vm", "vv", "vc", "vcov", "frozen", "a_f", "a_s", "warm", "thr",
                 "max_frozen")

    def __init__(self, *, span: int, slow_span: int, warm_up: int, threshold: float, max_frozen: int) -> None:
        self.prev = math.nan
        self.n = 0
        self.vr = self.vf = self.vm = self.vv = self.vc = self.vcov = 0.0
        self.frozen = 0
        self.a_f = 2.0 / (span + 1)
        self.a_s = 2.0 / (slow_span + 1)
        self.warm = warm_up
        self.thr = threshold
        self.max_frozen = max_frozen

    def shift(self, off: float) -> None:
        """The stream is re-expressed with `off` added (the seasonal profile went on or off)."""
        self.prev += off

    def step(self, y: float) -> Finding | None:
        """Learn point y; a Finding when the volatility changed. The slow statistics are frozen
        while the fast one is beyond half the threshold (for at most `max_frozen` points), so a
        volatility change cannot recalibrate itself away before it is reported, and a lasting one
        still becomes the new normal."""
        prev = self.prev
        self.prev = y
        if prev != prev:  # NaN: first point
            return None
        r = y - prev
        if r < 0.0:
            r = -r
        # |d|^(2/3) = (d^2)^(1/3): Wilson-Hilferty makes the chi-square(1)-like d^2 near-Gaussian,
        # so the fast EWMA's tails match the Gaussian threshold better than |d| itself.
        r = r ** 0.6666666666666666
        n = self.n + 1
        self.n = n
        a_f = self.a_f if self.a_f > 1.0 / n else 1.0 / n
        vr = self.vr
        c = r / vr if vr > 0.0 else 1.0
        if c > 3.0:  # Huber-style cap: a single jump (or the two around a spike) stays small
            c = 3.0
        vf = self.vf + a_f * (c - self.vf)
        self.vf = vf
        vm, vv = self.vm, self.vv
        d = c - vm
        z = 0.0
        sd = 0.0
        ready = n >= self.warm + 2.0 / self.a_f and vv > 0.0
        if ready:
            # consecutive differences share a point (lag-1 correlation ~0.22 even for iid data):
            # widen the EWMA's sd by the measured AR(1) factor (1 + rho) / (1 - rho)
            rho = self.vcov / vv
            rho = 0.0 if rho < 0.0 else (0.9 if rho > 0.9 else rho)
            sd = math.sqrt(vv * self.a_f / (2.0 - self.a_f) * (1.0 + rho) / (1.0 - rho))
            z = (vf - vm) / sd
        if not ready or -0.5 * self.thr < z < 0.5 * self.thr or self.frozen >= self.max_frozen:
            self.frozen = 0
            a_s = self.a_s if self.a_s > 1.0 / n else 1.0 / n
            self.vr = vr + a_s * (r - vr)
            self.vm = vm + a_s * d
            self.vv = vv + a_s * (d * d - vv)
            self.vcov += a_s * (d * self.vc - self.vcov)
        else:
            self.frozen += 1  # at most `max_frozen` points: a lasting change becomes the new normal
        self.vc = d
        thr = self.thr
        if ready and (z >= thr or z <= -thr):
            return ("distribution_shift", squash(z / thr), vr, sd * vr, vf * vr, "volatility")
        return None
