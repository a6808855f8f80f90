"""NAB's scoring, re-implemented without pandas, for `bench/anomaly_eval.py --nab DIR`.

Same rules as NAB's `nab/sweeper.py` (numenta/NAB): a probationary first min(15%, 750) points
is ignored; inside a labelled window the earliest detection scores 2 sigmoid(-5 x) - 1 scaled to
1 at the window start (x = position relative to the window end); outside, each detection costs
the profile's fpWeight (less just after a window, by the same sigmoid); a window with no
detection costs fnWeight; one threshold per profile for the whole set (the best), normalized so
that never alerting is 0 and perfect is 100. Checked against NAB's own scorer (run.py) on the
31-series subset: same numbers to 0.01.
"""
from __future__ import annotations

import csv
import json
import math
from datetime import datetime, timezone
from pathlib import Path

PROFILES = {
    "standard": (1.0, 1.0, 0.11),  # tp, fn, fp weights
    "reward_low_FP_rate": (1.0, 1.0, 0.22),
    "reward_low_FN_rate": (1.0, 2.0, 0.11),
}


def _scaled_sigmoid(x: float) -> float:
    if x > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * x)) - 1.0


def _ms(stamp: str) -> int:
    return int(datetime.fromisoformat(stamp).replace(tzinfo=timezone.utc).timestamp() * 1000)


class NabFile:
    """One labelled series: times (ms), values, and per point (window index or -1, position weight)."""

    def __init__(self, name: str, times: list[int], values: list[float], windows: list[tuple[int, int]]) -> None:
        self.name = name
        self.category = name.split("/")[0]
        self.times = times
        self.values = values
        n = len(times)
        self.probation = int(min(math.floor(0.15 * n), 0.15 * 5000))
        self.n_windows = len(windows)
        win = [-1] * n
        tp = [0.0] * n  # unweighted in-window score
        fp = [-1.0] * n  # unweighted out-of-window score (x fpWeight)
        max_tp = _scaled_sigmoid(-1.0)
        index = {t: i for i, t in enumerate(times)}
        prev_right = prev_width = None
        bounds = sorted((index[a], index[b]) for a, b in windows)
        j = 0
        for i in range(n):
            if j < len(bounds) and bounds[j][0] <= i <= bounds[j][1]:
                a, b = bounds[j]
                width = float(b - a + 1)
                win[i] = j
                tp[i] = _scaled_sigmoid(-(b - i + 1) / width) / max_tp
                if i == b:
                    prev_right, prev_width = b, width
                    j += 1
            elif prev_right is not None:
                fp[i] = _scaled_sigmoid(abs(prev_right - i) / (prev_width - 1.0))
        self.win, self.tp, self.fp = win, tp, fp


def load(nab_dir: str | Path) -> list[NabFile]:
    root = Path(nab_dir)
    windows = json.loads((root / "labels" / "combined_windows.json").read_text())
    files = []
    for rel in sorted(windows):
        with open(root / "data" / rel, newline="") as f:
            rows = list(csv.reader(f))[1:]
        times = [_ms(r[0]) for r in rows]
        files.append(NabFile(rel, times, [float(r[1]) for r in rows],
                             [(_ms(a.split(".")[0]), _ms(b.split(".")[0])) for a, b in windows[rel]]))
    return files


def sweep(files: list[NabFile], scores: list[list[float]], profile: str) -> list[tuple[float, float]]:
    """(threshold, raw score) for every distinct threshold, detections = score >= threshold."""
    tpw, fnw, fpw = PROFILES[profile]
    pts = []
    n_windows = 0
    for k, (f, s) in enumerate(zip(files, scores)):
        for i in range(f.probation, len(s)):
            w = f.win[i]
            pts.append((s[i], (n_windows + w) if w >= 0 else -1, f.tp[i] * tpw if w >= 0 else f.fp[i] * fpw))
        n_windows += f.n_windows
    pts.sort(key=lambda p: -p[0])
    best = [-fnw] * n_windows
    total = -fnw * n_windows
    out = [(1.1, total)]
    cur = 1.1
    for s, w, v in pts:
        if s != cur:
            out.append((cur, total))
            cur = s
        if w < 0:
            total += v
        elif v > best[w]:
            total += v - best[w]
            best[w] = v
    out.append((cur, total))
    return out


def normalized(files: list[NabFile], raw: float, profile: str) -> float:
    tpw, fnw, _ = PROFILES[profile]
    nw = sum(f.n_windows for f in files)
    if not nw:
        return float("nan")
    base = -fnw * nw
    return 100.0 * (raw - base) / (tpw * nw - base)


def best(files: list[NabFile], scores: list[list[float]], profile: str) -> tuple[float, float]:
    """(best threshold, normalized score) over the given files."""
    thr, raw = max(sweep(files, scores, profile), key=lambda p: p[1])
    return thr, normalized(files, raw, profile)


def at_threshold(files: list[NabFile], scores: list[list[float]], profile: str, thr: float) -> float:
    """Raw score of the files at a fixed threshold."""
    raw = None
    for t, r in sweep(files, scores, profile):
        if t >= thr:
            raw = r
    return raw


def leave_one_category_out(files: list[NabFile], scores: list[list[float]], profile: str) -> tuple[float, dict]:
    """Threshold chosen on the other categories, applied to each held-out one; pooled normalized score."""
    cats = sorted({f.category for f in files})
    raw_total = 0.0
    per = {}
    for c in cats:
        tr = [(f, s) for f, s in zip(files, scores) if f.category != c]
        te = [(f, s) for f, s in zip(files, scores) if f.category == c]
        thr, _ = best([f for f, _ in tr], [s for _, s in tr], profile)
        raw = at_threshold([f for f, _ in te], [s for _, s in te], profile, thr)
        raw_total += raw
        per[c] = (thr, raw)
    return normalized(files, raw_total, profile), per
