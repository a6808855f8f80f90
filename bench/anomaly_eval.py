"""Labelled evaluation of the default anomaly detector bank, scored as NAB scores: quality and speed.

    .venv/bin/python bench/anomaly_eval.py --nab ../shared/anomaly-bench/nab-train   # the table
    .venv/bin/python bench/anomaly_eval.py                 # generated series only
    .venv/bin/python bench/anomaly_eval.py --csv a.csv ... # labelled CSVs: timestamp,value,label
    .venv/bin/python bench/anomaly_eval.py --json          # machine-readable

One scoring for every labelled input, NAB's (bench/nab_score.py, same numbers as NAB's scorer):
each labelled anomaly gets a NAB-style window (as NAB: 10% of the series' points shared among its
anomalies, centred on the anomaly's start; a longer labelled range is covered to its end),
overlapping windows merge, and the first min(15%, 750) points of a series are probationary (not
scored). Then, for the alerts (`update_value`, or `update` for window metrics; a detection is a
point with at least one alert, any type):
  recall    = windows with a detection / windows
  precision = detected windows / (detected windows + detections outside every window); further
              detections inside a detected window count neither way, as in NAB
  F1, and NAB's standard score of the alerts as they are (threshold fixed: an alert is 1);
and for the calibrated score (`score_value`, raw inputs): NAB's standard score at the best
threshold over the input (NAB's own optimizer) and, for NAB, leave-one-category-out (threshold
chosen on the other categories). Clean inputs (no labels) report alerts per 10,000 points.

Inputs (generated ones deterministic for --seed):
  synthetic raw      update_value on tests/labelled_series.value_series: level x trend x daily and
                     weekly seasonality + AR(1) noise (30% Student-t(3)), missing points, 2 each
                     of spike, drop, level_shift, distribution_shift (variance x3-6) per series
  synthetic windows  update on per-minute WindowMetric of services (the flow's path): latency
                     (spike, drop, level_shift, distribution_shift) and requests (frequency_change)
  NAB                the labelled series of a NAB tree (--nab): 31 real and artificial series
  clean inputs       Gaussian noise; daily cycle + Gaussian noise (1-minute and 5-minute points);
                     Student-t(3) noise alone and on a daily cycle; clean generated raw series and
                     service windows; NAB's artificialNoAnomaly (with --nab)
Throughput: points per CPU-second (per core) of update_value and score_value (one call per point,
series interleaved as a stream would be), median of --runs runs; pickled bytes per series on NAB
(a one-series bank after the whole series: median, max).

CSV format: a header row, then timestamp,value,label per row (extra columns ignored). The timestamp
may be epoch seconds, epoch ms, ISO-8601, or a plain row index (spaced --index-step-ms apart, so
the hour-of-day profile sees real hours); label is 0/1 (also true/false); consecutive 1s form one
labelled range. Several files are scored together.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import pickle
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench import nab_score  # noqa: E402
from config.detection import AnomalySettings  # noqa: E402
from operators.detect import AnomalyDetectorBank  # noqa: E402
from schemas.metrics import SeriesKey  # noqa: E402
from tests.labelled_series import (  # noqa: E402
    MINUTE_MS,
    START_MS,
    LabelledSeries,
    stationary_noise,
    value_series,
    window_series,
)

NAB_KEY = SeriesKey("nab")


# -- NAB-style windows and scoring ----------------------------------------------------------

def nab_file(name: str, times: list[int], values: list[float], ranges: list[tuple[int, int]]) -> nab_score.NabFile:
    """A NabFile with NAB-style windows around labelled ranges (start_ms, end_ms): width 10% of the
    points / number of anomalies, centred on each start, at least to the range's end; merged."""
    n = len(times)
    idx = np.searchsorted(np.asarray(times), [a for a, _ in ranges]).tolist()
    end = np.searchsorted(np.asarray(times), [b for _, b in ranges], side="right").tolist()
    half = int(0.1 * n / max(len(ranges), 1)) // 2
    spans = sorted((max(0, i - half), min(n - 1, max(i + half, e - 1))) for i, e in zip(idx, end) if i < n)
    merged: list[list[int]] = []
    for a, b in spans:
        if merged and a <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return nab_score.NabFile(name, times, values, [(times[a], times[b]) for a, b in merged])


class Tally:
    """Window precision/recall and the NAB standard score of alerts, plus score_value streams."""

    def __init__(self) -> None:
        self.files: list[nab_score.NabFile] = []
        self.alerts: list[list[float]] = []  # per file: 1.0 at points with an alert
        self.scores: list[list[float]] = []  # per file: score_value (may stay empty)
        self.types: list[list[str]] = []  # per file: label type of each window (by start)
        self.points = 0

    def add(self, f: nab_score.NabFile, alert_times: set[int], scores: list[float] | None = None,
            window_types: list[str] | None = None) -> None:
        self.files.append(f)
        self.alerts.append([1.0 if t in alert_times else 0.0 for t in f.times])
        if scores is not None:
            self.scores.append(scores)
        self.types.append(window_types or [])
        self.points += len(f.times)

    def report(self) -> dict:
        windows = detected = outside = 0
        by_type: dict[str, list[int]] = {}
        for f, al, types in zip(self.files, self.alerts, self.types):
            hit = [False] * f.n_windows
            for i in range(f.probation, len(al)):
                if al[i]:
                    w = f.win[i]
                    if w >= 0:
                        hit[w] = True
                    else:
                        outside += 1
            windows += f.n_windows
            detected += sum(hit)
            for w, typ in enumerate(types[:f.n_windows]):
                bt = by_type.setdefault(typ, [0, 0])
                bt[0] += 1
                bt[1] += hit[w]
        p = detected / (detected + outside) if detected + outside else 1.0
        r = detected / windows if windows else 1.0
        out = {"series": len(self.files), "points": self.points, "windows": windows, "detected": detected,
               "outside": outside, "precision": round(p, 4), "recall": round(r, 4),
               "f1": round(2 * p * r / (p + r), 4) if p + r else 0.0,
               "recall_by_type": {k: round(v[1] / v[0], 3) for k, v in sorted(by_type.items()) if v[0]}}
        if windows:
            raw = nab_score.at_threshold(self.files, self.alerts, "standard", 0.5)
            out["nab_standard_alerts"] = round(nab_score.normalized(self.files, raw, "standard"), 2)
        if self.scores and windows:
            thr, best = nab_score.best(self.files, self.scores, "standard")
            out["nab_standard_score_value"] = round(best, 2)
            out["score_threshold"] = round(thr, 4)
        return out


def _window_types(f: nab_score.NabFile, labels: list) -> list[str]:
    """Label type of each merged window (the first label that starts in it)."""
    types = ["?"] * f.n_windows
    index = {t: i for i, t in enumerate(f.times)}
    for lab in labels:
        i = index.get(lab.start_ms)
        if i is None:
            i = int(np.searchsorted(np.asarray(f.times), lab.start_ms))
        if i < len(f.times) and f.win[i] >= 0 and types[f.win[i]] == "?":
            types[f.win[i]] = lab.type
    return types


def run_raw(series: list[LabelledSeries], settings: AnomalySettings, with_scores: bool = True) -> Tally:
    """update_value alerts (and score_value on a second bank) on labelled raw series."""
    tally = Tally()
    for s in series:
        times, values = s.times_ms.tolist(), s.values.tolist()
        alerts = AnomalyDetectorBank(settings).update_values(s.series, times, values)
        scores = None
        if with_scores:
            bank = AnomalyDetectorBank(settings)
            scores = [bank.score_value(s.series, t, v) for t, v in zip(times, values)]
        ranges = [(lab.start_ms, lab.end_ms) for lab in s.labels]
        f = nab_file(f"{s.series.metric}/{s.series.model}", times, values, ranges)
        tally.add(f, {a.window_start_ms for a in alerts}, scores, _window_types(f, s.labels))
    return tally


def run_windows(seeds: list[int], n: int, settings: AnomalySettings, clean: bool = False) -> tuple[Tally, int, int]:
    """update() on per-minute windows of generated services: (tally, alerts, windows)."""
    tally = Tally()
    n_alerts = n_windows = 0
    for seed in seeds:
        svc = window_series(seed, n, clean=clean)
        bank = AnomalyDetectorBank(settings)
        for lw in (svc.latency, svc.requests):
            alerts = [a for w in lw.windows for a in bank.update(w)]
            n_alerts += len(alerts)
            n_windows += len(lw.windows)
            times = [w.window_start_ms for w in lw.windows]
            values = [w.sum / w.count if w.count else 0.0 for w in lw.windows]
            f = nab_file(f"{lw.series.metric}/{lw.series.model}", times, values,
                         [(lab.start_ms, lab.end_ms) for lab in lw.labels])
            tally.add(f, {a.window_start_ms for a in alerts}, None, _window_types(f, lw.labels))
    return tally, n_alerts, n_windows


def clean_inputs(seed: int, k: int, n: int) -> dict[str, list[tuple[SeriesKey, list[int], list[float]]]]:
    """Anomaly-free raw series (k series of n points each, generated ones 4 days of minutes)."""
    key = SeriesKey("latency_ms", "clean")
    minutes = [START_MS + i * MINUTE_MS for i in range(n)]
    five = [START_MS + i * 300_000 for i in range(n)]
    i = np.arange(n)

    def rng(j: int, off: int) -> np.random.Generator:
        return np.random.default_rng(seed * 10_000 + off + j)

    gen = [value_series(seed * 10_000 + 950 + j, 4 * 1440, clean=True) for j in range(2 * k)]
    return {
        "Gaussian noise": [(s.series, s.times_ms.tolist(), s.values.tolist())
                           for s in (stationary_noise(seed * 10_000 + 900 + j, n) for j in range(k))],
        "daily cycle + Gaussian, 1-min": [(key, minutes, (100 + 20 * np.sin(2 * np.pi * i / 1440)
                                                          + 2 * rng(j, 1100).standard_normal(n)).tolist())
                                          for j in range(k)],
        "daily cycle + Gaussian, 5-min": [(key, five, (50 + 30 * np.sin(2 * np.pi * i / 288)
                                                       + rng(j, 1200).standard_normal(n)).tolist()) for j in range(k)],
        "Student-t(3) noise": [(key, minutes, (100 + 5 * rng(j, 1300).standard_t(3, n)).tolist()) for j in range(k)],
        "daily cycle + Student-t(3), 1-min": [(key, minutes, (100 + 20 * np.sin(2 * np.pi * i / 1440)
                                                              + 2 * rng(j, 1400).standard_t(3, n)).tolist())
                                              for j in range(k)],
        "generated, clean (30% t(3))": [(s.series, s.times_ms.tolist(), s.values.tolist()) for s in gen],
    }


def alerts_per_10k(series: list[tuple[SeriesKey, list[int], list[float]]], settings: AnomalySettings) -> dict:
    alerts = points = 0
    for key, times, values in series:
        alerts += len(AnomalyDetectorBank(settings).update_values(key, times, values))
        points += len(times)
    return {"series": len(series), "points": points, "alerts": alerts, "per_10k": round(alerts / points * 1e4, 2)}


def run_nab(nab_dir: Path, settings: AnomalySettings) -> tuple[Tally, dict, dict]:
    """NAB's labelled series: alerts and score_value (tally), NAB profiles of score_value at the
    best threshold and leave-one-category-out, and the anomaly-free category's alerts."""
    files = nab_score.load(nab_dir)
    tally = Tally()
    sizes = []
    clean = []
    for f in files:
        alerts = AnomalyDetectorBank(settings).update_values(NAB_KEY, f.times, f.values)
        bank = AnomalyDetectorBank(settings)
        score = bank.score_value
        scores = [score(NAB_KEY, t, v) for t, v in zip(f.times, f.values)]
        sizes.append(len(pickle.dumps(bank)))
        if not f.n_windows:
            clean.append((NAB_KEY, f.times, f.values))
        tally.add(f, {a.window_start_ms for a in alerts}, scores, [f.category] * f.n_windows)
    profiles = {}
    for p in nab_score.PROFILES:
        thr, best = nab_score.best(files, tally.scores, p)
        loco, _ = nab_score.leave_one_category_out(files, tally.scores, p)
        profiles[p] = {"score": round(best, 2), "threshold": round(thr, 4), "leave_one_category_out": round(loco, 2)}
    extra = {"profiles": profiles, "pickled_bytes_median": int(statistics.median(sizes)),
             "pickled_bytes_max": max(sizes)}
    return tally, extra, alerts_per_10k(clean, settings)


# -- throughput -----------------------------------------------------------------------------

def throughput(settings: AnomalySettings, runs: int, n_series: int = 50, n: int = 4000) -> dict:
    """Points per CPU-second of update_value and score_value, one call per point, series
    interleaved (as a stream would be)."""
    data = [value_series(1000 + i, n, per_type=1) for i in range(n_series)]
    stream = []
    for j in range(n):
        for s in data:
            if j < len(s.values):
                stream.append((s.series, int(s.times_ms[j]), float(s.values[j])))

    def rate(call: Callable[[AnomalyDetectorBank], Callable]) -> int:
        got = []
        for _ in range(runs):
            fn = call(AnomalyDetectorBank(settings))
            t0 = time.process_time()  # CPU time: points/s per core, whatever else shares the box
            for key, t, v in stream:
                fn(key, t, v)
            got.append(len(stream) / (time.process_time() - t0))
        return round(statistics.median(got))

    return {"points": len(stream), "runs": runs, "update_value_points_per_s": rate(lambda b: b.update_value),
            "score_value_points_per_s": rate(lambda b: b.score_value)}


# -- CSV ------------------------------------------------------------------------------------

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
    from tests.labelled_series import Label

    times: list[int] = []
    values: list[float] = []
    flags: list[bool] = []
    with path.open(newline="") as f:
        rows = csv.reader(f)
        header = next(rows, None)
        first = []
        if header is not None:
            try:
                float(header[1])
                first = [header]  # no header row after all
            except (ValueError, IndexError):
                pass
        for row in [*first, *rows]:
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
    order = sorted(range(len(times)), key=times.__getitem__)
    times = [times[i] for i in order]
    values = [values[i] for i in order]
    flags = [flags[i] for i in order]
    diffs = [b - a for a, b in zip(times, times[1:]) if b > a]
    step = int(statistics.median(diffs)) if diffs else 60_000
    labels = []
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
    return LabelledSeries(SeriesKey("value", path.stem), np.array(times, dtype=np.int64), np.array(values), labels,
                          step)


# -- main -----------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", type=int, default=40, help="generated raw series (default 40)")
    ap.add_argument("--services", type=int, default=12, help="generated window services (default 12)")
    ap.add_argument("--days", type=float, default=4.0, help="length of each generated series in days of minutes")
    ap.add_argument("--clean", type=int, default=10, help="series per clean input (default 10, 10k points each)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3, help="throughput runs (median reported)")
    ap.add_argument("--csv", type=Path, nargs="*", help="labelled CSV files (timestamp,value,label) instead")
    ap.add_argument("--index-step-ms", type=int, default=60_000,
                    help="spacing of CSV rows whose timestamp is a plain index (default 60000; hourly: 3600000)")
    ap.add_argument("--nab", type=Path, help="a NAB tree (data/, labels/), e.g. ../shared/anomaly-bench/nab-train")
    ap.add_argument("--hst", action="store_true", help="add river HalfSpaceTrees to the ensemble")
    ap.add_argument("--no-speed", action="store_true", help="skip the throughput measurement")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    settings = AnomalySettings(use_hst=args.hst)
    result: dict = {"settings": {"z_threshold": settings.z_threshold, "window": settings.window, "hst": args.hst},
                    "labelled": {}, "clean": {}}
    lab, clean = result["labelled"], result["clean"]
    if args.csv:
        series = []
        for p in args.csv:
            try:
                series.append(read_csv(p, args.index_step_ms))
            except (OSError, StopIteration, IndexError, ValueError) as exc:
                print(f"error: cannot read {p}: {exc}", file=sys.stderr)
                return 2
        lab["csv"] = run_raw(series, settings).report()
    else:
        n = int(args.days * 1440)
        raw = [value_series(args.seed * 10_000 + i, n) for i in range(args.series)]
        lab["synthetic raw"] = run_raw(raw, settings).report()
        for heavy in (False, True):
            part = [s for s in raw if s.params["heavy"] == heavy]
            name = "  of which t(3) noise" if heavy else "  of which Gaussian noise"
            lab[name] = run_raw(part, settings, with_scores=False).report()
        seeds = [args.seed * 10_000 + 500 + i for i in range(args.services)]
        lab["synthetic windows"] = run_windows(seeds, n, settings)[0].report()
        for name, s in clean_inputs(args.seed, args.clean, 10_000).items():
            clean[name] = alerts_per_10k(s, settings)
        _, a, w = run_windows([args.seed * 10_000 + 700 + i for i in range(max(1, args.services // 4))], n, settings,
                              clean=True)
        clean["generated windows, clean"] = {"series": 2 * max(1, args.services // 4), "points": w, "alerts": a,
                                             "per_10k": round(a / w * 1e4, 2)}
    if args.nab:
        tally, extra, nab_clean = run_nab(args.nab, settings)
        lab["NAB (31 series)"] = tally.report()
        lab["NAB (31 series)"].update(extra)
        clean["NAB artificialNoAnomaly"] = nab_clean
    if not args.no_speed:
        result["throughput"] = throughput(settings, args.runs)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        _print(result)
    return 0


def _print(result: dict) -> None:
    print(f"settings: {result['settings']}; windows NAB-style, first min(15%, 750) points not scored\n")
    head = (f"{'input':<36} {'series':>6} {'points':>8} {'windows':>7} {'recall':>6} {'prec.':>6} {'F1':>5} "
            f"{'NAB std':>7} {'NAB std':>7} {'alerts':>7}")
    print(head)
    print(f"{'':<36} {'':>6} {'':>8} {'':>7} {'':>6} {'':>6} {'':>5} {'alerts':>7} {'score*':>7} {'/10k':>7}")
    print("-" * len(head))
    for name, r in result["labelled"].items():
        sv = r.get("nab_standard_score_value")
        print(f"{name:<36} {r['series']:>6} {r['points']:>8} {r['windows']:>7} {r['recall']:>6.3f} "
              f"{r['precision']:>6.3f} {r['f1']:>5.3f} {r.get('nab_standard_alerts', float('nan')):>7.1f} "
              f"{'' if sv is None else f'{sv:.1f}':>7} {'':>7}")
    for name, r in result["clean"].items():
        print(f"{name:<36} {r['series']:>6} {r['points']:>8} {'':>7} {'':>6} {'':>6} {'':>5} {'':>7} {'':>7} "
              f"{r['per_10k']:>7.2f}")
    print("* score_value at the best threshold over the input (NAB's optimizer)")
    for name, r in result["labelled"].items():
        if r.get("recall_by_type") and not name.startswith("NAB"):
            print(f"recall by type, {name.strip()}: {r['recall_by_type']}")
    nab = next((r for n, r in result["labelled"].items() if n.startswith("NAB")), None)
    if nab:
        print("\nNAB score_value, NAB's three profiles (best threshold; leave-one-category-out):")
        for p, v in nab["profiles"].items():
            print(f"  {p:<20} {v['score']:>6.2f}  threshold {v['threshold']:.4f}  leave-one-category-out "
                  f"{v['leave_one_category_out']:.2f}")
        print(f"  pickled bytes per series: median {nab['pickled_bytes_median']}, max {nab['pickled_bytes_max']}")
    if "throughput" in result:
        t = result["throughput"]
        print(f"\nthroughput, {t['points']} points, median of {t['runs']} runs: update_value "
              f"{t['update_value_points_per_s']:,} points/s, score_value {t['score_value_points_per_s']:,} points/s")


if __name__ == "__main__":
    sys.exit(main())
