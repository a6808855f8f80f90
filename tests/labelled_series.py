"""Realistic labelled series for tests and the evaluation harness (bench/anomaly_eval.py).

Two shapes, both deterministic for a seed:

- `value_series`: one number per step (what `AnomalyDetectorBank.update_value` sees, and what
  public benchmark CSVs look like): level * trend * daily/weekly seasonality + AR(1) noise with
  Gaussian or heavy-tailed (Student t, 3 dof) innovations, randomly missing points, and injected
  spikes, drops, level shifts and variance changes (labelled distribution_shift).
- `window_series`: per-minute traffic of one service as the flow would aggregate it: a `requests`
  series (Poisson counts with gamma overdispersion, daily seasonality) and a `latency_ms` series
  (per-request lognormal latencies whose log-median drifts as AR(1), summarized per window as
  count/sum/min/max/sumsq and the log-bucket histogram), with injected latency spikes, drops,
  level shifts, shape changes at constant mean (distribution_shift) and request-rate surges and
  outages (frequency_change). Windows with no requests are missing, as in the real flow.

Labels are time ranges [start_ms, end_ms] (inclusive) with the injected type. Anomaly magnitudes
are drawn from wide ranges (in units of the series' own noise), so some injections are hard.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from schemas.metrics import SeriesKey, WindowMetric

MINUTE_MS = 60_000
START_MS = 1_704_067_200_000  # 2024-01-01 00:00 UTC, a Monday
LOG_GAMMA = math.log((1 + 0.01) / (1 - 0.01))


@dataclass(frozen=True)
class Label:
    start_ms: int
    end_ms: int
    type: str


@dataclass
class LabelledSeries:
    """One labelled raw series: times (ms), values (NaN-free; missing points are absent)."""

    series: SeriesKey
    times_ms: np.ndarray
    values: np.ndarray
    labels: list[Label]
    step_ms: int = MINUTE_MS
    params: dict = field(default_factory=dict)


@dataclass
class LabelledWindows:
    """Windows of one series (missing windows absent) and the labels that apply to it."""

    series: SeriesKey
    windows: list[WindowMetric]
    labels: list[Label]
    step_ms: int = MINUTE_MS


@dataclass
class Service:
    """A service's two window series (latency and requests)."""

    latency: LabelledWindows
    requests: LabelledWindows
    labels: list[Label] = field(default_factory=list)


def _seasonal(t_ms: np.ndarray, daily_amp: float, weekend_drop: float, phase_h: float) -> np.ndarray:
    hours = (t_ms % 86_400_000) / 3_600_000.0
    day = (t_ms // 86_400_000 + 3) % 7  # Monday = 0
    daily = 1.0 + daily_amp * np.sin(2 * np.pi * (hours - phase_h) / 24.0)
    weekly = np.where(day >= 5, 1.0 - weekend_drop, 1.0)
    return daily * weekly


def _ar1(rng: np.random.Generator, n: int, phi: float, heavy: bool) -> np.ndarray:
    """Stationary AR(1) with unit marginal standard deviation."""
    if heavy:
        e = rng.standard_t(3, size=n) / math.sqrt(3.0)  # t3 scaled to unit variance
    else:
        e = rng.standard_normal(n)
    e *= math.sqrt(1.0 - phi * phi)
    out = np.empty(n)
    acc = e[0] / math.sqrt(1.0 - phi * phi) if phi < 1 else 0.0
    for i in range(n):
        acc = phi * acc + e[i]
        out[i] = acc
    return out


def _place(rng: np.random.Generator, n: int, count: int, min_gap: int, margin: int) -> list[int]:
    """Anomaly start indexes, at least min_gap apart, not in the first `margin` points."""
    starts: list[int] = []
    tries = 0
    while len(starts) < count and tries < 1000:
        tries += 1
        i = int(rng.integers(margin, max(margin + 1, n - min_gap)))
        if all(abs(i - s) >= min_gap for s in starts):
            starts.append(i)
    return sorted(starts)


def value_series(
    seed: int,
    n: int = 4 * 1440,
    *,
    step_ms: int = MINUTE_MS,
    types: tuple[str, ...] = ("spike", "drop", "level_shift", "distribution_shift"),
    per_type: int = 2,
    clean: bool = False,
    missing_rate: float = 0.01,
    name: str = "value",
) -> LabelledSeries:
    """A labelled raw series; `clean=True` gives the same kind of series with no injections."""
    rng = np.random.default_rng(seed)
    t = START_MS + np.arange(n, dtype=np.int64) * step_ms
    level = float(rng.uniform(50, 500))
    noise_rel = float(rng.uniform(0.02, 0.08))
    sigma = level * noise_rel
    phi = float(rng.uniform(0.0, 0.6))
    heavy = bool(rng.random() < 0.3)
    trend = float(rng.uniform(-0.05, 0.05))  # relative change per day
    days = (t - t[0]) / 86_400_000.0
    amp, weekend = float(rng.uniform(0.0, 0.4)), float(rng.uniform(0, 0.3))
    base = level * (1.0 + trend * days) * _seasonal(t, amp, weekend, float(rng.uniform(0, 24)))
    scale = np.ones(n)
    add = np.zeros(n)
    labels: list[Label] = []
    if not clean:
        kinds = [k for k in types for _ in range(per_type)]
        rng.shuffle(kinds)
        starts = _place(rng, n, len(kinds), min_gap=max(n // (len(kinds) + 2), 200), margin=max(n // 10, 300))
        for i, kind in zip(starts, kinds):
            if kind in ("spike", "drop"):
                dur = int(rng.integers(1, 4))
                mag = float(rng.uniform(6, 15)) * sigma * (1 if kind == "spike" else -1)
                add[i:i + dur] += mag
                end = i + dur - 1
            elif kind == "level_shift":
                mag = float(rng.uniform(4, 10)) * sigma * (1 if rng.random() < 0.5 else -1)
                add[i:] += mag
                end = i + 9  # the change point plus the next 10 points is "the anomaly"
            elif kind == "distribution_shift":
                dur = int(rng.integers(60, 180))
                scale[i:i + dur] *= float(rng.uniform(3, 6))
                end = i + dur - 1
            else:
                continue
            labels.append(Label(int(t[i]), int(t[min(end, n - 1)]), kind))
    noise = _ar1(rng, n, phi, heavy) * sigma * scale
    values = base + noise + add
    keep = rng.random(n) >= missing_rate
    # occasional longer gaps (collector restarts)
    for g in range(int(rng.integers(0, 3))):
        gs = int(rng.integers(0, n - 30))
        keep[gs:gs + int(rng.integers(5, 30))] = False
    params = {"level": level, "noise_rel": noise_rel, "phi": phi, "heavy": heavy, "trend": trend,
              "daily_amp": amp, "weekend_drop": weekend}
    return LabelledSeries(SeriesKey(name, f"s{seed}"), t[keep], values[keep], labels, step_ms, params)


def _hist(samples: np.ndarray) -> dict[int, int]:
    idx = np.ceil(np.log(np.maximum(samples, 1e-9)) / LOG_GAMMA).astype(np.int64)
    keys, counts = np.unique(idx, return_counts=True)
    return {int(k): int(c) for k, c in zip(keys, counts)}


def window_series(
    seed: int,
    n: int = 4 * 1440,
    *,
    per_type: int = 2,
    clean: bool = False,
    types: tuple[str, ...] = ("spike", "drop", "level_shift", "distribution_shift", "frequency_change"),
) -> Service:
    """Per-minute windows of one service's latency and request count, with labels."""
    rng = np.random.default_rng(seed)
    step = MINUTE_MS
    t = START_MS + np.arange(n, dtype=np.int64) * step
    model = f"model-{seed}"
    base_rate = float(rng.uniform(20, 300))
    season = _seasonal(t, float(rng.uniform(0.2, 0.6)), float(rng.uniform(0.0, 0.4)), float(rng.uniform(0, 24)))
    rate = base_rate * season * rng.gamma(25.0, 1 / 25.0, size=n)  # cv 0.2 overdispersion
    mu0 = math.log(float(rng.uniform(100, 2000)))
    s_shape = float(rng.uniform(0.3, 0.7))
    log_level = mu0 + 0.03 * _ar1(rng, n, float(rng.uniform(0.3, 0.9)), False) \
        + 0.1 * np.sin(2 * np.pi * ((t % 86_400_000) / 3_600_000.0) / 24.0)
    shape = np.full(n, s_shape)
    labels_lat: list[Label] = []
    labels_req: list[Label] = []
    if not clean:
        kinds = [k for k in types for _ in range(per_type)]
        rng.shuffle(kinds)
        starts = _place(rng, n, len(kinds), min_gap=max(n // (len(kinds) + 2), 150), margin=max(n // 10, 300))
        for i, kind in zip(starts, kinds):
            if kind == "spike":
                dur = int(rng.integers(1, 4))
                log_level[i:i + dur] += math.log(1 + float(rng.uniform(0.5, 3.0)))
                end = i + dur - 1
            elif kind == "drop":
                dur = int(rng.integers(1, 4))
                log_level[i:i + dur] += math.log(float(rng.uniform(0.2, 0.6)))
                end = i + dur - 1
            elif kind == "level_shift":
                log_level[i:] += math.log(float(rng.uniform(1.3, 2.0))) * (1 if rng.random() < 0.6 else -1)
                end = i + 9
            elif kind == "distribution_shift":
                dur = int(rng.integers(20, 60))
                k = float(rng.uniform(1.8, 2.5))
                # wider lognormal with the same mean: mu' = mu + s^2/2 - (k s)^2/2
                log_level[i:i + dur] += (s_shape ** 2 - (k * s_shape) ** 2) / 2.0
                shape[i:i + dur] = k * s_shape
                end = i + dur - 1
            elif kind == "frequency_change":
                dur = int(rng.integers(5, 30))
                f = float(rng.uniform(3, 8)) if rng.random() < 0.5 else float(rng.uniform(0.0, 0.3))
                rate[i:i + dur] *= f
                end = i + dur - 1
            else:
                continue
            lab = Label(int(t[i]), int(t[min(end, n - 1)]), kind)
            (labels_req if kind == "frequency_change" else labels_lat).append(lab)
    counts = rng.poisson(rate)
    lat_key = SeriesKey("latency_ms", model, "chat", "team-a")
    req_key = SeriesKey("requests", model, "chat", "team-a")
    lat: list[WindowMetric] = []
    req: list[WindowMetric] = []
    total = int(counts.sum())
    owner = np.repeat(np.arange(n), counts)
    samples = np.exp(log_level[owner] + shape[owner] * rng.standard_normal(total))
    bounds = np.concatenate(([0], np.cumsum(counts)))
    for i in range(n):
        c = int(counts[i])
        if c == 0:
            continue
        x = samples[bounds[i]:bounds[i + 1]]
        ws = int(t[i])
        lat.append(WindowMetric(series=lat_key, window_start_ms=ws, window_ms=step, count=c, sum=float(x.sum()),
                                min=float(x.min()), max=float(x.max()), sumsq=float((x * x).sum()), hist=_hist(x)))
        req.append(WindowMetric(series=req_key, window_start_ms=ws, window_ms=step, count=c, sum=float(c),
                                min=1.0, max=1.0, sumsq=float(c), hist={0: c}))
    return Service(LabelledWindows(lat_key, lat, labels_lat), LabelledWindows(req_key, req, labels_req),
                   labels_lat + labels_req)


def stationary_noise(seed: int, n: int, *, mean: float = 100.0, sd: float = 5.0, step_ms: int = MINUTE_MS,
                     name: str = "noise") -> LabelledSeries:
    """Plain iid Gaussian noise, no seasonality, no trend, no anomalies: the false-positive yardstick."""
    rng = np.random.default_rng(seed)
    t = START_MS + np.arange(n, dtype=np.int64) * step_ms
    return LabelledSeries(SeriesKey(name, f"n{seed}"), t, mean + sd * rng.standard_normal(n), [], step_ms)
