"""Settings for online anomaly detection and cross-source correlation (`[detection]` in the config).

Every default here is a principled, documented choice rather than a value fitted to a data set:

- thresholds are robust z-scores (deviation / robust sigma, where sigma comes from the
  interquartile range of a bounded window, IQR / 1.349 for Gaussian data); 5 sigma keeps the
  false-alarm rate on Gaussian noise near 1e-6 per point while real incidents (usually tens of
  sigma) still pass easily;
- the level-shift test is a two-sided CUSUM in long-run sd units with the textbook drift
  allowance k = half the smallest shift worth catching (3 sd -> k = 1.5) and decision interval
  h = 4, on standardized z Huber-clipped at 2 so that fewer than 8 consecutive outliers can never
  look like a shift (8 x (2 - 1.5) = h) (measured on NAB's 31 training series: clip 2 / 2.5 / 3
  -> standard score 59 / 58 / 55);
- warm-up 30 points: enough for a quartile-based spread estimate to be within ~20%;
- scores are squashed with score = r^4 / (1 + r^4), r = statistic / threshold: 0.5 exactly at
  the threshold, ~0.94 at twice it, so `min_score` 0.5 means "alert at the threshold".
"""
from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from schemas.vocabulary import AlertSeverity, AnomalyType

VALUE_TYPES = ["spike", "drop", "level_shift"]
DEFAULT_TYPES = ["spike", "drop", "level_shift", "distribution_shift"]


class MetricDetection(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """How one metric's series are watched.

    `value` picks the per-window number the value detector sees: mean (per-event size, e.g.
    latency), sum (totals, e.g. spend), count (events per window), rate (mean of a 0/1 flag,
    e.g. error rate; its noise floor is binomial). `fill_missing` treats a window with no data
    as 0 (right for sums and counts; None = automatic: on for sum/count, off for mean/rate).
    """

    enabled: bool = True
    value: Literal["mean", "sum", "count", "rate", "max"] = "mean"
    # Which anomaly types to look for. distribution_shift uses the window histogram, or for raw
    # point streams (update_value) the volatility test; frequency_change uses the event count.
    types: list[AnomalyType] = msgspec.field(default_factory=lambda: list(DEFAULT_TYPES))
    # Multiplies the detector's sensitivity: threshold used = z_threshold / sensitivity.
    sensitivity: float = 1.0
    # Points (windows) a series must have before it may alert.
    warm_up: int = 30
    # Anomalies scoring below this are not emitted.
    min_score: float = 0.5
    # Windows with fewer events than this are not scored for mean/rate/max (too noisy).
    min_count: int = 1
    fill_missing: bool | None = None
    # Seasonal baseline: none, daily (hour-of-day profile), weekly (separate hour-of-day profiles
    # for weekdays and weekends).
    seasonality: Literal["none", "daily", "weekly"] = "weekly"


def _default_metrics() -> dict[str, MetricDetection]:
    """Per-metric defaults for what the flow produces (operators/windows/extract.py).

    Event rate is watched once per (model, endpoint, team), on `requests`; every other metric of
    the same series has the same count, so watching it there too would only repeat the alert.
    """
    perf = ["spike", "drop", "level_shift", "distribution_shift"]
    return {
        "latency_ms": MetricDetection(value="mean", types=perf),
        "ttft_ms": MetricDetection(value="mean", types=perf),
        "input_tokens": MetricDetection(value="mean", types=list(VALUE_TYPES)),
        "output_tokens": MetricDetection(value="mean", types=list(VALUE_TYPES)),
        "cached_tokens": MetricDetection(value="mean", types=list(VALUE_TYPES)),
        "cache_write_tokens": MetricDetection(value="mean", types=list(VALUE_TYPES)),
        "reasoning_tokens": MetricDetection(value="mean", types=list(VALUE_TYPES)),
        "total_tokens": MetricDetection(value="mean", types=list(VALUE_TYPES)),
        "requests": MetricDetection(value="count", types=["frequency_change"]),
        "errors": MetricDetection(value="rate", types=["spike", "level_shift"]),
        # Agent and tool steps: count = steps, sum = failed steps (watched as a failure rate).
        "agent_steps": MetricDetection(value="rate", types=["spike", "level_shift"]),
        "cost_usd": MetricDetection(value="sum", types=list(VALUE_TYPES)),
        # A burst of findings/violations is a spike of their per-window count (Poisson floor).
        "security_findings": MetricDetection(value="count", types=["spike", "level_shift"]),
        "policy_violations": MetricDetection(value="count", types=["spike", "level_shift"]),
        "compliance_checks": MetricDetection(value="rate", types=["drop", "level_shift"]),
    }


class AnomalySettings(msgspec.Struct, forbid_unknown_fields=True):
    """Detector bank: shared statistics knobs plus per-metric overrides."""

    enabled: bool = True
    # Robust z at which a point scores 0.5 (before per-metric sensitivity).
    z_threshold: float = 5.0
    # Points kept per series and detector (ring buffer): ~1 hour of 1-minute windows.
    window: int = 64
    # CUSUM (long-run sd units): drift allowance, decision interval, per-point Huber clip.
    cusum_k: float = 1.5
    cusum_h: float = 4.0
    cusum_clip: float = 2.0
    # Volatility test (raw-value streams): fast span of the |first difference| ratio, slow span.
    volatility_span: int = 16
    volatility_slow_span: int = 256
    # Practical-significance floor: sigma is never below this fraction of |baseline|.
    relative_floor: float = 0.01
    # Distribution shift from histograms: min events per window, reference half-life (windows),
    # buckets merged per coarse bucket (2^bits of 2% each), smallest JS divergence worth an alert.
    hist_min_count: int = 30
    hist_half_life: int = 60
    hist_coarsen_bits: int = 3
    hist_min_js: float = 0.02
    # Seasonal profile averaging time (days of data behind each hour-of-day slot).
    season_days: float = 4.0
    # Missing windows filled with zeros at most this many at a time (bounded work after a gap).
    max_gap_fill: int = 64
    # Bounded memory: least-recently-updated series are evicted beyond this (~2.7 KB each in memory,
    # ~1.4 KB pickled in snapshots, measured by bench/series_memory.py: ~54 MB at the default).
    max_series: Annotated[int, Meta(gt=0)] = 20_000
    # Series with no data for this long (event time) are forgotten, checked once per minute of
    # event time; 0 = only max_series bounds them. A forgotten series that comes back starts a new
    # warm-up. 6 hours: longer than any ring buffer (`window` points) and gap fill (`max_gap_fill`).
    idle_series_evict_after_s: Annotated[int, Meta(ge=0)] = 6 * 3600
    # Several shards can each close part of one series' window; the detector waits for all of them,
    # but at most this long past the fastest shard (event time), so a stalled shard cannot make
    # every window wait: parts arriving later are stored but not scored.
    partial_wait_s: Annotated[int, Meta(ge=0)] = 600
    # Optional ensemble member: river HalfSpaceTrees on min-max scaled (level, change) features,
    # voting with the robust z (reports only where |z| >= threshold / 2). Off by default: it costs
    # ~14 us/point and ~45 KB of snapshot state per series, and measured no recall gain
    # (bench/anomaly_eval.py --hst).
    use_hst: bool = False
    hst_threshold: float = 0.95
    default: MetricDetection = msgspec.field(default_factory=MetricDetection)
    metrics: dict[str, MetricDetection] = msgspec.field(default_factory=_default_metrics)

    def for_metric(self, metric: str) -> MetricDetection:
        return self.metrics.get(metric, self.default)


class CorrelationSettings(msgspec.Struct, forbid_unknown_fields=True):
    """Grouping of events and anomalies into incidents."""

    enabled: bool = True
    # Same asset within this much event time = temporally related.
    window_ms: int = 600_000
    # An incident never spans more than this (long-running noise is cut into several).
    max_span_ms: int = 6 * 3_600_000
    # Incidents below this confidence are kept internally but not emitted.
    min_confidence: float = 0.5
    # Members stored per incident (further ones are counted in `overflow`).
    max_members: int = 200
    # Bounded memory: open incidents and remembered signals (for parent / correlation lookups).
    max_open_incidents: int = 10_000
    max_tracked_signals: int = 200_000
    # A signal that names a parent not yet seen waits this long for it.
    pending_parent_ms: int = 600_000


class DetectionSettings(msgspec.Struct, forbid_unknown_fields=True):
    """The `[detection]` section of the hub config."""

    anomaly: AnomalySettings = msgspec.field(default_factory=AnomalySettings)
    correlation: CorrelationSettings = msgspec.field(default_factory=CorrelationSettings)
    # Anomalies and incidents at or above this severity also go to the alerts topic.
    alert_severity: AlertSeverity = "high"
