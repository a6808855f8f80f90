"""Log-bucketed histograms with 1% relative accuracy (the DDSketch idea).

Bucket k holds values in (gamma^(k-1), gamma^k]; reporting 2*gamma^k/(gamma+1) for it is within
ALPHA of every value in it. Histograms merge by adding counts, which is what lets ClickHouse roll
1-minute rows up to any window with sumMap and still answer p50/p95/p99 within 1%. The same
constants live in the SQL function `hub_quantile` (schemas/migrations) — keep them in step.
"""
from __future__ import annotations

import math

import numpy as np

ALPHA = 0.01
GAMMA = (1 + ALPHA) / (1 - ALPHA)
LOG_GAMMA = math.log(GAMMA)
# Values at or below this (including 0 and negatives) share one bucket reported as 0.
MIN_POSITIVE = 1e-9
ZERO_BUCKET = -(2**31)


def bucket_indices(values: np.ndarray) -> np.ndarray:
    """Bucket index per value, vectorised."""
    safe = np.where(values > MIN_POSITIVE, values, 1.0)
    idx = np.ceil(np.log(safe) / LOG_GAMMA).astype(np.int64)
    return np.where(values > MIN_POSITIVE, idx, ZERO_BUCKET)


def bucket_value(index: int) -> float:
    return 0.0 if index == ZERO_BUCKET else 2.0 * GAMMA**index / (GAMMA + 1.0)


def quantile(hist: dict[int, int], q: float) -> float:
    """Value at 0-based rank floor(q*(n-1)), within ALPHA relative error; NaN when empty."""
    total = sum(hist.values())
    if total == 0:
        return math.nan
    rank = math.floor(q * (total - 1))
    seen = 0
    for index in sorted(hist):
        seen += hist[index]
        if seen > rank:
            return bucket_value(index)
    return bucket_value(max(hist))


def merge_into(target: dict[int, int], other: dict[int, int]) -> None:
    for k, c in other.items():
        target[k] = target.get(k, 0) + c
