"""What every member of a series' detector ensemble reports, and how it scores it.

All members learn online (no training phase beyond a warm-up), keep bounded state (fixed-size
ring buffers, 24 or 48 seasonal slots, a pruned reference histogram) and pickle compactly, because
they live in Bytewax recovery snapshots. Each step reports nothing or Findings:
(anomaly_type, score, expected, spread, observed, detector).

Scores: r = |statistic| / threshold, score = r^4 / (1 + r^4) (0.5 at the threshold), so a bank's
`min_score` of 0.5 means "alert at the threshold" whatever the member's statistic.
"""
from __future__ import annotations

# Finding: (anomaly_type, score, expected, spread, observed, detector)
Finding = tuple[str, float, float, float, float, str]


def squash(r: float) -> float:
    """Map statistic/threshold to 0..1: 0.5 at the threshold, 0.94 at twice it, -> 1.

    >>> squash(1.0), round(squash(2.0), 2), squash(0.0)
    (0.5, 0.94, 0.0)
    """
    r2 = r * r
    r4 = r2 * r2
    return r4 / (1.0 + r4)
