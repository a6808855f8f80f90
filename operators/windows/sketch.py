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
    """Bucket index per value, vectorised (a whole window's values at once).

    >>> bucket_indices(np.array([0.0, -3.0, 1.0, 1.01, 100.0, 200.0])).tolist()
    [-2147483648, -2147483648, 0, 1, 231, 265]
    """
    safe = np.where(values > MIN_POSITIVE, values, 1.0)
    idx = np.ceil(np.log(safe) / LOG_GAMMA).astype(np.int64)
    return np.where(values > MIN_POSITIVE, idx, ZERO_BUCKET)


def bucket_value(index: int) -> float:
    """The value a bucket reports: within ALPHA of every value that falls in it.

    >>> [index] = bucket_indices(np.array([250.0])).tolist()
    >>> abs(bucket_value(index) / 250.0 - 1) <= ALPHA, bucket_value(ZERO_BUCKET)
    (True, 0.0)
    """
    return 0.0 if index == ZERO_BUCKET else 2.0 * GAMMA**index / (GAMMA + 1.0)


def quantile(hist: dict[int, int], q: float) -> float:
    """Value at 0-based rank floor(q*(n-1)), within ALPHA relative error; NaN when empty.

    >>> from collections import Counter
    >>> hist = dict(Counter(bucket_indices(np.arange(1.0, 101.0)).tolist()))  # the values 1..100
    >>> abs(quantile(hist, 0.95) / 95.0 - 1) <= ALPHA, math.isnan(quantile({}, 0.5))
    (True, True)
    """
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
    """Add `other`'s counts to `target`: the merged histogram is that of both value sets.

    >>> hist = {0: 2, 231: 1}
    >>> merge_into(hist, {231: 1, 265: 3})
    >>> hist
    {0: 2, 231: 2, 265: 3}
    """
    for k, c in other.items():
        target[k] = target.get(k, 0) + c
