"""Benchmark: `Correlator.add` (plus the per-batch `flush`) on a realistic signal stream.

The stream is shaped like what the detection step feeds the correlator: Zipf-weighted assets (a
few hot models, a long tail, some signals without asset), the source/kind/severity mix of the
synthetic traffic's security findings, policy/governance violations, registry changes, budget
alerts and error events, plus anomalies (at minute starts, reported up to 3 minutes late) and
anomaly bursts (alert storms on one asset); ~10% of events carry a correlation id (traces reused
by several events), some name a parent (seen before, after, or never), a few are re-delivered.
Signals are fed in batches, each followed by `flush(watermark)` as the flow does; the figure is
signals per second of wall time over the whole stream (median of the runs), one core.

    .venv/bin/python bench/correlation.py                  # 200k signals, 60 assets, 5 runs
    .venv/bin/python bench/correlation.py -n 50000 --rate 20 --profile
    git show cd90b07:operators/correlate/correlator.py > /tmp/old.py   # A/B against a one-file version
    .venv/bin/python bench/correlation.py --module /tmp/old.py           # (split versions: run in a checkout)
"""
from __future__ import annotations

import argparse
import gc
import os
import pickle
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from config.detection import CorrelationSettings  # noqa: E402
from operators.correlate import Correlator  # noqa: E402
from schemas.incidents import Signal  # noqa: E402

START_MS = 1_732_000_000_000
MIN = 60_000
KINDS = {
    "security": ("security.threat", "security.threat", "security.privacy", "security.vulnerability",
                 "security.compliance", "security.auth"),
    "policy": ("violation.detected", "violation.detected", "policy.evaluated", "policy.updated"),
    "governance": ("governance.violation", "governance.violation", "governance.compliance"),
    "registry": ("asset.updated", "version.published", "version.promoted", "version.retired", "asset.deprecated"),
    "telemetry": ("telemetry.error",),
    "cost": ("cost.budget",),
}
SOURCES = (("security", 0.33), ("policy", 0.14), ("governance", 0.07), ("registry", 0.14), ("telemetry", 0.08),
           ("cost", 0.05), ("anomaly", 0.19))
METRICS = ("latency_ms", "latency_ms", "ttft_ms", "errors", "requests", "input_tokens", "output_tokens",
           "total_tokens", "cost_usd", "cost_usd", "security_findings", "policy_violations")
ANOMALY_KINDS = ("spike", "spike", "drop", "level_shift", "frequency_change", "distribution_shift")
SEVERITIES = (("info", 0.25), ("low", 0.05), ("medium", 0.38), ("high", 0.16), ("critical", 0.16))


def signals(n: int, seed: int = 42, assets: int = 60, rate_per_s: float = 5.0, corr_fraction: float = 0.10,
            parent_fraction: float = 0.06, burst_rate: float = 0.004) -> list[Signal]:
    """`n` signals at ~`rate_per_s` of event time (deterministic for a seed)."""
    rng = random.Random(seed)
    names = [f"model-{i}" for i in range(assets)]
    aw = [1.0 / (i + 1) ** 1.1 for i in range(assets)]
    src_names, src_w = zip(*SOURCES)
    sev_names, sev_w = zip(*SEVERITIES)
    t = START_MS
    out: list[Signal] = []
    traces: list[str] = []
    burst: tuple[str, int, int] | None = None  # asset, signals left, start
    for i in range(n):
        t += int(rng.expovariate(rate_per_s) * 1000)
        sid = f"sig-{seed}-{i}"
        if burst is None and rng.random() < burst_rate:
            burst = (rng.choices(names, aw)[0], rng.randint(8, 60), t)
        if burst is not None and rng.random() < 0.6:
            asset, left, start = burst
            out.append(Signal(id=sid, time_ms=start + rng.randint(0, 6) * MIN, source="anomaly",
                              kind=rng.choice(ANOMALY_KINDS), asset=asset, metric=rng.choice(METRICS),
                              severity=rng.choice(("medium", "high", "high", "critical")),
                              score=round(rng.uniform(3, 12), 3), value=round(rng.uniform(0, 1000), 2)))
            burst = (asset, left - 1, start) if left > 1 else None
            continue
        if out and rng.random() < 0.01:
            out.append(out[rng.randrange(max(0, len(out) - 50), len(out))])  # re-delivered
            continue
        source = rng.choices(src_names, src_w)[0]
        asset = "" if rng.random() < 0.05 else rng.choices(names, aw)[0]
        sev = rng.choices(sev_names, sev_w)[0]
        if source == "anomaly":
            out.append(Signal(id=sid, time_ms=t - t % MIN - rng.randint(0, 3) * MIN, source="anomaly",
                              kind=rng.choice(ANOMALY_KINDS), asset=asset, metric=rng.choice(METRICS), severity=sev,
                              score=round(rng.uniform(3, 12), 3), value=round(rng.uniform(0, 1000), 2)))
            continue
        corr = parent = ""
        if rng.random() < corr_fraction:
            if traces and rng.random() < 0.6:
                corr = traces[rng.randrange(max(0, len(traces) - 30), len(traces))]
            else:
                corr = f"trace-{seed}-{i}"
                traces.append(corr)
        r = rng.random() / parent_fraction if parent_fraction > 0 else 1.0
        if r < 0.6 and i > 5:
            parent = f"sig-{seed}-{i - rng.randint(1, 40)}"  # an earlier signal
        elif r < 0.8:
            parent = f"sig-{seed}-{i + rng.randint(1, 15)}"  # arrives after its child
        elif r < 1.0:
            parent = f"ext-{rng.randrange(10**9)}"  # never seen (e.g. a request event)
        out.append(Signal(id=sid, time_ms=t - rng.randint(0, 2000), source=source, kind=rng.choice(KINDS[source]),
                          asset=asset, correlation_id=corr, parent_id=parent, severity=sev,
                          value=round(rng.uniform(0, 50), 2) if source == "cost" else 0.0,
                          tags={"team": f"team-{rng.randrange(5)}"}))
    return out


def run(sigs: list[Signal], batch: int, settings: CorrelationSettings,
        correlator: type = Correlator) -> tuple[float, float, int, int]:
    """One pass over the stream; returns (total s, add s, output records, pickled state bytes at the middle)."""
    c = correlator(settings)
    n_out = 0
    add_s = 0.0
    state_bytes = 0
    mid = len(sigs) // 2 // batch * batch
    perf = time.perf_counter
    t_start = perf()
    for start in range(0, len(sigs), batch):
        chunk = sigs[start:start + batch]
        t0 = perf()
        add = c.add
        for s in chunk:
            n_out += len(add(s))
        add_s += perf() - t0
        n_out += len(c.flush(max(s.time_ms for s in chunk) - MIN))
        if start == mid:
            t1 = perf()
            state_bytes = len(pickle.dumps(c))
            t_start += perf() - t1  # not part of the figure
    n_out += len(c.flush(2**62))
    return perf() - t_start, add_s, n_out, state_bytes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--signals", type=int, default=200_000)
    ap.add_argument("-r", "--runs", type=int, default=5)
    ap.add_argument("-a", "--assets", type=int, default=60)
    ap.add_argument("--rate", type=float, default=5.0, help="signals per second of event time")
    ap.add_argument("-b", "--batch", type=int, default=64, help="signals between two flush(watermark) calls")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--cpu", type=int, default=None, help="pin the process to this CPU (Linux)")
    ap.add_argument("--profile", action="store_true", help="one extra run under cProfile, top functions")
    ap.add_argument("--module", help="take Correlator from this file instead (a one-file version of operators/correlate/correlator.py)")
    args = ap.parse_args(argv)
    correlator = Correlator
    if args.module:
        import importlib.util
        spec = importlib.util.spec_from_file_location("correlation_under_test", args.module)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod  # picklable
        spec.loader.exec_module(mod)
        correlator = mod.Correlator
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    settings = CorrelationSettings()
    sigs = signals(args.signals, args.seed, args.assets, args.rate)
    print(f"python {sys.version.split()[0]}, {len(sigs):,} signals, {args.assets} assets, {args.rate:g}/s of event time "
          f"({(sigs[-1].time_ms - sigs[0].time_ms) / 3_600_000:.1f} h), flush every {args.batch}, {args.runs} runs"
          + (f", {args.module}" if args.module else ""))
    totals, adds = [], []
    n_out = state = 0
    for _ in range(args.runs):
        gc.collect()
        total, add_s, n_out, state = run(sigs, args.batch, settings, correlator)
        totals.append(total)
        adds.append(add_s)
    tm, am = statistics.median(totals), statistics.median(adds)
    print(f"  {len(sigs) / tm:>10,.0f} signals/s  (median {tm:.2f} s; runs {', '.join(f'{t:.2f}' for t in totals)})")
    print(f"  add only: {am / len(sigs) * 1e6:.1f} us/signal; flush: {(tm - am) / len(sigs) * 1e6:.1f} us/signal")
    print(f"  {n_out:,} output records; pickled state mid-stream {state / 1024:,.0f} KiB")
    if args.profile:
        import cProfile
        import pstats
        prof = cProfile.Profile()
        prof.enable()
        run(sigs, args.batch, settings, correlator)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
