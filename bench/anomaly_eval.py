"""Labelled evaluation of the default anomaly detector bank: quality and speed.

    .venv/bin/python bench/anomaly_eval.py                 # generated series (operators/series_generator.py)
    .venv/bin/python bench/anomaly_eval.py --csv a.csv ... # labelled CSVs: timestamp,value,label
    .venv/bin/python bench/anomaly_eval.py --json          # machine-readable

Scoring is event-level. A labelled range [start, end] counts as detected when at least one alert
(an emitted anomaly, any type) falls in [start, end + tolerance points]; the detection delay is the
distance, in points (series steps), from the range start to the first such alert. Every other
distinct alert time is a false positive. precision = detected ranges / (detected ranges + false
positives); recall = detected ranges / ranges; F1 their harmonic mean. Per-type recall is over the
ranges of each injected type, whatever type the alert had.

Three workloads from the generator (all deterministic for --seed):
  raw       update_value on raw series: spike, drop, level_shift, distribution_shift (variance)
  windows   update on per-minute WindowMetric of a service: latency (spike, drop, level_shift,
            distribution_shift via the histogram) and requests (frequency_change)
  clean_*   raw stationary Gaussian noise, and clean generated series: false positives per 1k points
Raw results are also split by the generator's noise class (Gaussian vs Student-t(3) innovations).
NAB (--nab DIR, e.g. ../shared/anomaly-bench/nab-train): score_value on every series, scored by
NAB's rules (bench/nab_score.py, same numbers as NAB's own scorer) with the best threshold per
profile, and leave-one-category-out (threshold chosen on the other categories).
Throughput: points/s of update_value (one call per point, interleaved series) for the default
bank, median of --runs runs; also the batch call and the per-window call.

CSV format: a header row, then timestamp,value,label per row (extra columns ignored). The timestamp
may be epoch seconds, epoch ms, ISO-8601, or a plain row index (spaced --index-step-ms apart, so
the hour-of-day profile sees real hours); label is 0/1 (also true/false); consecutive 1s form one
labelled range. Several files are scored together (summed counts).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from config.detection import AnomalySettings  # noqa: E402
from operators.detect import AnomalyDetectorBank  # noqa: E402
from tests.labelled_series import (  # noqa: E402
    Label,
    LabelledSeries,
    stationary_noise,
    value_series,
    window_series,
)
from schemas.metrics import SeriesKey  # noqa: E402


class Score:
    """Accumulates event-level counts over many series."""

    def __init__(self) -> None:
        self.ranges = 0
        self.detected = 0
        self.fp = 0
        self.points = 0
        self.delays: list[float] = []
        self.by_type: dict[str, list[int]] = {}  # type -> [ranges, detected]
        self.delay_by_type: dict[str, list[float]] = {}
        self.fp_by_detector: dict[str, int] = {}

    def add(self, labels: list[Label], alerts: list, step_ms: int, points: int, tolerance: int) -> None:
        """alerts: emitted Anomaly records (window_start_ms = the point's time)."""
        self.points += points
        by_time: dict[int, str] = {}
        for a in alerts:
            by_time.setdefault(a.window_start_ms, a.detector)
        times = sorted(by_time)
        tol = tolerance * step_ms
        covered = [False] * len(times)
        for lab in labels:
            self.ranges += 1
            bt = self.by_type.setdefault(lab.type, [0, 0])
            bt[0] += 1
            first = None
            for j, at in enumerate(times):
                if lab.start_ms <= at <= lab.end_ms + tol:
                    covered[j] = True
                    if first is None:
                        first = at
            if first is not None:
                self.detected += 1
                bt[1] += 1
                d = (first - lab.start_ms) / step_ms
                self.delays.append(d)
                self.delay_by_type.setdefault(lab.type, []).append(d)
        for j, c in enumerate(covered):
            if not c:
                self.fp += 1
                det = by_time[times[j]]
                self.fp_by_detector[det] = self.fp_by_detector.get(det, 0) + 1

    def report(self) -> dict:
        p = self.detected / (self.detected + self.fp) if self.detected + self.fp else 1.0
        r = self.detected / self.ranges if self.ranges else 1.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        out = {
            "ranges": self.ranges, "detected": self.detected, "false_positives": self.fp, "points": self.points,
            "precision": round(p, 4), "recall": round(r, 4), "f1": round(f1, 4),
            "fp_per_1k_points": round(1000 * self.fp / self.points, 4) if self.points else 0.0,
            "delay_mean": round(statistics.fmean(self.delays), 2) if self.delays else None,
            "delay_median": statistics.median(self.delays) if self.delays else None,
            "false_positives_by_detector": dict(sorted(self.fp_by_detector.items())),
            "per_type": {
                t: {"ranges": v[0], "recall": round(v[1] / v[0], 4) if v[0] else None,
                    "delay_median": statistics.median(self.delay_by_type[t]) if self.delay_by_type.get(t) else None}
                for t, v in sorted(self.by_type.items())
            },
        }
        return out


def run_raw(series: list[LabelledSeries], settings: AnomalySettings, tolerance: int,
            split: dict[str, Score] | None = None) -> Score:
    """Score raw series; `split` also scores them per noise class (light / heavy tails)."""
    score = Score()
    for s in series:
        bank = AnomalyDetectorBank(settings)
        alerts = bank.update_values(s.series, s.times_ms.tolist(), s.values.tolist())
        score.add(s.labels, alerts, s.step_ms, len(s.values), tolerance)
        if split is not None and "heavy" in s.params:
            cls = "heavy_tailed_noise" if s.params["heavy"] else "gaussian_noise"
            split.setdefault(cls, Score()).add(s.labels, alerts, s.step_ms, len(s.values), tolerance)
    return score


def run_windows(seeds: list[int], n: int, settings: AnomalySettings, tolerance: int) -> tuple[Score, float]:
    score = Score()
    n_windows = 0
    elapsed = 0.0
    for seed in seeds:
        svc = window_series(seed, n)
        bank = AnomalyDetectorBank(settings)
        for lw in (svc.latency, svc.requests):
            t0 = time.perf_counter()
            alerts = []
            for w in lw.windows:
                alerts.extend(bank.update(w))
            elapsed += time.perf_counter() - t0
            n_windows += len(lw.windows)
            score.add(lw.labels, alerts, lw.step_ms, n, tolerance)
    return score, n_windows / elapsed if elapsed else 0.0


def throughput(settings: AnomalySettings, runs: int, n_series: int = 50, n: int = 4000) -> dict:
    """Points/s of update_value, one call per point, series interleaved (as a stream would be)."""
    data = [value_series(1000 + i, n, per_type=1) for i in range(n_series)]
    stream = []
    for j in range(n):
        for s in data:
            if j < len(s.values):
                stream.append((s.series, int(s.times_ms[j]), float(s.values[j])))
    per_call, batch = [], []
    for _ in range(runs):
        bank = AnomalyDetectorBank(settings)
        upd = bank.update_value
        t0 = time.perf_counter()
        for key, t, v in stream:
            upd(key, t, v)
        per_call.append(len(stream) / (time.perf_counter() - t0))
        bank = AnomalyDetectorBank(settings)
        cols = [(s.series, s.times_ms.tolist(), s.values.tolist()) for s in data]
        t0 = time.perf_counter()
        for key, ts, vs in cols:
            bank.update_values(key, ts, vs)
        batch.append(len(stream) / (time.perf_counter() - t0))
    return {"points": len(stream), "runs": runs, "update_value_points_per_s": round(statistics.median(per_call)),
            "update_values_points_per_s": round(statistics.median(batch))}


def run_nab(nab_dir: Path, settings: AnomalySettings) -> dict:
    """NAB's scoring (bench/nab_score.py) of score_value on every series of a NAB tree: the score
    with the best corpus-wide threshold per profile, and leave-one-category-out (threshold chosen
    on the other categories, applied to the held-out one, pooled). Also the alerts of
    update_value per 10k points on the series without labelled windows."""
    from bench import nab_score

    files = nab_score.load(nab_dir)
    key = SeriesKey("nab")
    scores, busy, clean_alerts, clean_points = [], 0.0, 0, 0
    for f in files:
        bank = AnomalyDetectorBank(settings)
        score = bank.score_value
        t0 = time.perf_counter()
        scores.append([score(key, t, v) for t, v in zip(f.times, f.values)])
        busy += time.perf_counter() - t0
        if not f.n_windows:
            clean_alerts += len(AnomalyDetectorBank(settings).update_values(key, f.times, f.values))
            clean_points += len(f.times)
    points = sum(len(s) for s in scores)
    profiles = {}
    for p in nab_score.PROFILES:
        thr, best = nab_score.best(files, scores, p)
        loco, _ = nab_score.leave_one_category_out(files, scores, p)
        profiles[p] = {"score": round(best, 2), "threshold": round(thr, 4), "leave_one_category_out": round(loco, 2)}
    return {"series": len(files), "points": points, "points_per_s": round(points / busy), "profiles": profiles,
            "clean_alerts_per_10k": round(clean_alerts / clean_points * 1e4, 2) if clean_points else None}


def _parse_time(raw: str, index_step_ms: int = 60_000) -> int:
    raw = raw.strip()
    try:
        x = float(raw)
    except ValueError:
        dt = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        return int(dt.timestamp() * 1000)
    if x > 1e11:  # already ms
        return int(x)
    if x > 1e8:  # epoch seconds
        return int(x * 1000)
    return int(x * index_step_ms)  # a plain index: --index-step-ms apart (default one minute)


def read_csv(path: Path, index_step_ms: int = 60_000) -> LabelledSeries:
    times: list[int] = []
    values: list[float] = []
    flags: list[bool] = []
    with path.open(newline="") as f:
        rows = csv.reader(f)
        header = next(rows, None)
        if header is not None:
            try:
                float(header[1])
                rows_iter = [header]  # no header row after all
            except (ValueError, IndexError):
                rows_iter = []
        else:
            rows_iter = []
        for row in [*rows_iter, *rows]:
            if len(row) < 2 or not row[1].strip():
                continue
            try:
                v = float(row[1])
            except ValueError:
                continue
            if math.isnan(v):
                continue
            times.append(_parse_time(row[0], index_step_ms))
            values.append(v)
            lab = row[2].strip().lower() if len(row) > 2 else "0"
            flags.append(lab in ("1", "1.0", "true", "yes"))
    import numpy as np

    order = sorted(range(len(times)), key=times.__getitem__)
    times = [times[i] for i in order]
    values = [values[i] for i in order]
    flags = [flags[i] for i in order]
    diffs = [b - a for a, b in zip(times, times[1:]) if b > a]
    step = int(statistics.median(diffs)) if diffs else 60_000
    labels: list[Label] = []
    i = 0
    while i < len(flags):
        if flags[i]:
            j = i
            while j + 1 < len(flags) and flags[j + 1]:
                j += 1
            labels.append(Label(times[i], times[j], "labelled"))
            i = j + 1
        else:
            i += 1
    return LabelledSeries(SeriesKey("value", path.stem), np.array(times, dtype=np.int64), np.array(values), labels, step)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", type=int, default=40, help="generated raw series (default 40)")
    ap.add_argument("--services", type=int, default=12, help="generated window services (default 12)")
    ap.add_argument("--days", type=float, default=4.0, help="length of each generated series in days of minutes")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--runs", type=int, default=5, help="throughput runs (median reported)")
    ap.add_argument("--tolerance", type=int, default=5, help="points after a range that still count as a hit")
    ap.add_argument("--csv", type=Path, nargs="*", help="labelled CSV files (timestamp,value,label) instead")
    ap.add_argument("--index-step-ms", type=int, default=60_000,
                    help="spacing of CSV rows whose timestamp is a plain index (default 60000; hourly: 3600000)")
    ap.add_argument("--nab", type=Path, help="a NAB tree (data/, labels/): NAB-scored score_value, also per category")
    ap.add_argument("--hst", action="store_true", help="add river HalfSpaceTrees to the ensemble")
    ap.add_argument("--no-speed", action="store_true", help="skip the throughput measurement")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    settings = AnomalySettings(use_hst=args.hst)
    result: dict = {"settings": {"z_threshold": settings.z_threshold, "window": settings.window,
                                 "tolerance_points": args.tolerance, "hst": args.hst}}
    if args.csv:
        series = []
        for p in args.csv:
            try:
                series.append(read_csv(p, args.index_step_ms))
            except (OSError, StopIteration, IndexError, ValueError) as exc:
                print(f"error: cannot read {p}: {exc}", file=sys.stderr)
                return 2
        result["csv"] = run_raw(series, settings, args.tolerance).report()
    else:
        n = int(args.days * 1440)
        raw = [value_series(args.seed * 10_000 + i, n) for i in range(args.series)]
        split: dict[str, Score] = {}
        result["raw"] = run_raw(raw, settings, args.tolerance, split).report()
        result["raw"]["by_noise"] = {k: {m: v.report()[m] for m in ("ranges", "recall", "precision", "fp_per_1k_points")}
                                     for k, v in sorted(split.items())}
        wscore, wps = run_windows([args.seed * 10_000 + 500 + i for i in range(args.services)], n, settings,
                                  args.tolerance)
        result["windows"] = wscore.report()
        result["windows"]["windows_per_s"] = round(wps)
        noise = [stationary_noise(args.seed * 10_000 + 900 + i, n) for i in range(args.series // 2)]
        result["clean_noise"] = run_raw(noise, settings, args.tolerance).report()
        gen = [value_series(args.seed * 10_000 + 950 + i, n, clean=True) for i in range(args.series // 2)]
        split = {}
        result["clean_generated"] = run_raw(gen, settings, args.tolerance, split).report()
        result["clean_generated"]["by_noise"] = {k: {"fp_per_1k_points": v.report()["fp_per_1k_points"]}
                                                 for k, v in sorted(split.items())}
    if args.nab:
        result["nab"] = run_nab(args.nab, settings)
    if not args.no_speed:
        result["throughput"] = throughput(settings, args.runs)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        _print(result)
    return 0


def _print(result: dict) -> None:
    print(f"settings: {result['settings']}")
    for name in ("raw", "windows", "clean_noise", "clean_generated", "csv"):
        r = result.get(name)
        if not r:
            continue
        print(f"\n[{name}] ranges={r['ranges']} detected={r['detected']} fp={r['false_positives']} "
              f"points={r['points']} fp/1k={r['fp_per_1k_points']}")
        if r["ranges"]:
            print(f"  precision={r['precision']} recall={r['recall']} f1={r['f1']} "
                  f"delay mean={r['delay_mean']} median={r['delay_median']} (points)")
        for t, v in r["per_type"].items():
            print(f"  {t:<20} ranges={v['ranges']:<4} recall={v['recall']} delay_median={v['delay_median']}")
        if r["false_positives_by_detector"]:
            print(f"  false positives by detector: {r['false_positives_by_detector']}")
        for k, v in r.get("by_noise", {}).items():
            print(f"  {k}: {v}")
        if "windows_per_s" in r:
            print(f"  windows/s={r['windows_per_s']}")
    if "nab" in result:
        r = result["nab"]
        print(f"\n[nab] {r['series']} series, {r['points']} points, score_value {r['points_per_s']:,} points/s; "
              f"alerts (update_value) per 10k points of anomaly-free series: {r['clean_alerts_per_10k']}")
        for p, v in r["profiles"].items():
            print(f"  {p:<20} score={v['score']} threshold={v['threshold']} "
                  f"leave-one-category-out={v['leave_one_category_out']}")
    if "throughput" in result:
        t = result["throughput"]
        print(f"\n[throughput] {t['points']} points, median of {t['runs']} runs: "
              f"update_value {t['update_value_points_per_s']:,} points/s; "
              f"update_values (batch) {t['update_values_points_per_s']:,} points/s")


if __name__ == "__main__":
    sys.exit(main())
