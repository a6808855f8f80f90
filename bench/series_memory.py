"""Memory with many distinct series: peak RSS of `hub run`, and where the state's memory goes.

The workload: `--series` distinct series (metric, model, endpoint, team) within one hour of event
time. Each of series/3 teams sends `--per-team` telemetry.request events (a latency, no tokens:
series latency_ms, requests and errors) a second apart, the teams one after another across the
hour, so each team's series are active for about a minute and then idle. That is the case which
grows state without bound unless idle series are forgotten.

Modes (each runs in a child process, so `--repo` can measure another checkout, e.g. the commit
before a change):
- default: `hub run --input FILE` into a fresh embedded store (`--http`: a ClickHouse server in its
  own process, so the peak is the hub's own memory, not the engine's): peak RSS and CPU of the
  process, then the store is checked exactly (every event stored, every team's requests and
  latency sums);
- `--operators`: the shard and detection steps in-process, no store: the size of each structure
  (dedup ids, window series table and open values, held windows, detector bank, correlator) at
  the end of input (deep size, objects shared with the config not counted), the largest count
  each reached, bytes per entry, and the peak RSS. `--tracemalloc` adds the top allocation sites.

Usage: python bench/series_memory.py [--series 1000000] [--http] [--operators] [--tracemalloc] [--repo PATH]
"""
from __future__ import annotations

import argparse
import gc
import math
import os
import pickle
import subprocess
import sys
import tempfile
import time
import types
from contextlib import closing
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parents[1]
if __name__ == "__main__":
    # the child measures the checkout it was asked to (HUB_BENCH_REPO); the parent this one
    sys.path[:0] = [os.environ.get("HUB_BENCH_REPO", str(ROOT)), str(ROOT)]

METRICS_PER_TEAM = 3  # latency_ms, requests, errors
HOUR_MS = 3_600_000


class Workload(msgspec.Struct, frozen=True):
    path: str
    teams: int
    per_team: int
    start_ms: int

    @property
    def events(self) -> int:
        return self.teams * self.per_team

    @property
    def series(self) -> int:
        return self.teams * METRICS_PER_TEAM

    def latency(self, team: int, j: int) -> float:
        return 100.0 + team % 50 + j


def write_workload(path: Path, series: int, per_team: int = 2, now_ms: int | None = None) -> Workload:
    """A JSON-lines file of hub envelopes; event times in the hour that ended an hour before `now_ms`."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    teams = math.ceil(series / METRICS_PER_TEAM)
    start = (now_ms - 2 * HOUR_MS) // 60_000 * 60_000
    work = Workload(str(path), teams, per_team, start)
    enc = msgspec.json.Encoder()
    with open(path, "wb") as f:
        lines: list[bytes] = []
        for i in range(teams):
            t0 = start + i * HOUR_MS // teams
            for j in range(per_team):
                lines.append(enc.encode({
                    "event_id": f"s{i}-{j}", "event_type": "telemetry.request", "event_time": t0 + j * 1000,
                    "source": "telemetry", "tags": {"team": f"team-{i:07d}"},
                    "payload": {"model": "gpt-4o", "latency_ms": work.latency(i, j)}}))
            if len(lines) >= 50_000:
                f.write(b"\n".join(lines) + b"\n")
                lines = []
        f.write(b"\n".join(lines) + b"\n")
    return work


def check_store(dsn: str, work: Workload) -> dict[str, int]:
    """What landed, and how many teams' windows differ from what was sent (must be 0)."""
    from config.settings import load_config
    from connectors.clickhouse import connect

    latency_total = sum(work.latency(i, j) for i in range(work.teams) for j in range(work.per_team))
    with closing(connect(load_config(environ={"HUB_CLICKHOUSE__DSN": dsn}).clickhouse)) as client:
        def one(sql: str) -> Any:
            return client.query(sql).result_rows[0][0]
        got = {
            "events": one("SELECT count() FROM events FINAL"),
            "dead_letters": one("SELECT count() FROM dead_letters FINAL"),
            "late": one("SELECT count() FROM late_events FINAL"),
            "series": one("SELECT count() FROM (SELECT DISTINCT metric, model, endpoint, team FROM metrics_1m)"),
            "teams": one("SELECT uniqExact(team) FROM metrics_1m"),
            # per team: requests counted, and the latency sum (values are small integers: exact in floats)
            "teams_wrong_requests": one(
                f"SELECT count() FROM (SELECT team, sum(count) AS c FROM metrics_1m FINAL WHERE metric = 'requests' "
                f"GROUP BY team) WHERE c != {work.per_team}"),
            "teams_wrong_latency": one(
                "SELECT count() FROM (SELECT team, sum(sum) AS s, sum(count) AS c FROM metrics_1m FINAL "
                f"WHERE metric = 'latency_ms' GROUP BY team) WHERE c != {work.per_team} OR "
                f"s != {work.per_team} * (100 + toUInt32(substring(team, 6)) % 50) + {sum(range(work.per_team))}"),
            "latency_sum_error": round(abs(one("SELECT sum(sum) FROM metrics_1m FINAL WHERE metric = 'latency_ms'")
                                           - latency_total), 6),
        }
    return got


# -- in-process profile (child) ----------------------------------------------------------------

def _reachable(root: Any) -> set[int]:
    seen: set[int] = set()
    stack = [root]
    while stack:
        o = stack.pop()
        if id(o) not in seen and not isinstance(o, (type, types.ModuleType)):
            seen.add(id(o))
            stack.extend(gc.get_referents(o))
    return seen


def deep_size(root: Any, shared: set[int]) -> int:
    """Bytes of everything reachable from root, except `shared` objects, types and modules."""
    seen = set(shared)
    size = 0
    stack = [root]
    while stack:
        o = stack.pop()
        if id(o) in seen or isinstance(o, (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType)):
            continue
        seen.add(id(o))
        size += sys.getsizeof(o)
        stack.extend(gc.get_referents(o))
    return size


def _vm(key: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1])
    return 0


def profile_operators(path: str, trace: bool) -> dict[str, Any]:
    """Shard step + detection step over the file, as the flow runs them, minus Bytewax and the store."""
    from config.settings import load_config
    from flows.pipeline import shard_steps
    from operators.detect import DetectionState
    from operators.shard import ShardState, process
    from schemas.items import RawBatch
    from schemas.raw import RawMessage

    if trace:
        import tracemalloc
        tracemalloc.start()
    cfg = load_config()
    steps = shard_steps(cfg)
    shard = ShardState(cfg.normalization.dedup_window_s * 1000, cfg.normalization.dedup_max_entries,
                       cfg.windows.allowed_lateness_s * 1000)
    det = DetectionState(cfg.detection, cfg.windows.allowed_lateness_s * 1000)
    counts = {"dedup ids": lambda: len(shard.dedup), "window series ids": lambda: len(shard.windows.series),
              "open values": lambda: sum(len(c[1]) for c in shard.windows.chunks),
              "held windows": lambda: len(det.pending), "latest starts": lambda: len(det.latest_start),
              "bank series": lambda: len(det.bank)}
    peak = dict.fromkeys(counts, 0)
    now_ms = int(time.time() * 1000)
    started = time.process_time()
    with open(path, "rb") as f:
        batch: list[RawMessage] = []
        for n, line in enumerate(f):
            batch.append(RawMessage(line.rstrip(b"\n"), "bench", 0, n))
            if len(batch) == cfg.kafka.batch_size:
                out = process(shard, RawBatch("bench-0", batch), steps, now_ms=now_ms)
                det.step("bench-0", out.windows, out.signals, False, out.closed_ms, out.watermark_ms)
                batch = []
                for k, count in counts.items():
                    peak[k] = max(peak[k], count())
        out = process(shard, RawBatch("bench-0", batch), steps, now_ms=now_ms)
        det.step("bench-0", out.windows, out.signals, False, out.closed_ms, out.watermark_ms)
    cpu = time.process_time() - started
    rss_before_final = _vm("VmHWM")
    traced_peak = 0
    if trace:
        import tracemalloc
        traced_peak = tracemalloc.get_traced_memory()[1]
        top = [str(s) for s in tracemalloc.take_snapshot().statistics("lineno")[:15]]
    shared = _reachable(cfg) | _reachable(steps)
    structures = {
        "dedup ids": (shard.dedup, len(shard.dedup)),
        "window series ids": ((shard.windows.series, shard.windows.series_ids), len(shard.windows.series)),
        "open values": (shard.windows.chunks, counts["open values"]()),
        "held windows": ((det.pending, det.latest_start, getattr(det, "held_by_end", None)), len(det.pending)),
        "bank series": (det.bank, len(det.bank)),
        "correlator": (det.correlator, 0),
    }
    sizes = {name: (deep_size(obj, shared), n) for name, (obj, n) in structures.items()}
    report: dict[str, Any] = {
        "peak_rss_mb": round(rss_before_final / 1024, 1),
        "end": {name: {"mb": round(b / 2**20, 2), "entries": n, "bytes_each": round(b / n) if n else None}
                for name, (b, n) in sizes.items()},
        "largest_count": peak,
        "bank_pickled_bytes_each": round(len(pickle.dumps(det.bank)) / max(len(det.bank), 1)),
        "bank_idle_evicted": getattr(det.bank, "idle_evicted", None), "bank_lru_evicted": det.bank.evicted,
    }
    if trace:
        report["traced_peak_mb"] = round(traced_peak / 2**20, 1)
        report["top_allocations"] = top
    # The end of input: what was held until now is scored now (part of the run's cost).
    started = time.process_time()
    final = process(shard, RawBatch("bench-0", [], final=True), steps, now_ms=now_ms)
    det.step("bench-0", final.windows, final.signals, True)
    report["cpu_s"] = round(cpu + time.process_time() - started, 1)
    return report


# -- driver ------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", type=int, default=1_000_000)
    ap.add_argument("--per-team", type=int, default=2)
    ap.add_argument("--operators", action="store_true", help="profile the operators in-process (no store)")
    ap.add_argument("--tracemalloc", action="store_true")
    ap.add_argument("--repo", type=Path, default=ROOT, help="checkout whose code runs (default: this one)")
    ap.add_argument("--workdir", type=Path, default=None, help="keep the input file and the store here")
    ap.add_argument("--http", action="store_true",
                    help="store in a ClickHouse server process (chdb serving HTTP): the peak is the hub's own")
    ap.add_argument("--profile-child", metavar="FILE", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.profile_child:
        print(msgspec.json.encode(profile_operators(args.profile_child, args.tracemalloc)).decode())
        return 0

    from tests.rss import run_hub

    with tempfile.TemporaryDirectory(prefix="series-memory-") as tmp:
        work_dir = args.workdir or Path(tmp)
        work_dir.mkdir(parents=True, exist_ok=True)
        work = write_workload(work_dir / "series.jsonl", args.series, args.per_team)
        print(f"workload: {work.series:,} series ({work.teams:,} teams x {METRICS_PER_TEAM} metrics), "
              f"{work.events:,} events over 1 hour of event time; code: {args.repo}", flush=True)
        if args.operators:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--profile-child", work.path,
                   *(["--tracemalloc"] if args.tracemalloc else [])]
            proc = subprocess.run(cmd, cwd=args.repo, env={**os.environ, "HUB_BENCH_REPO": str(args.repo)},
                                  stdout=subprocess.PIPE, check=True)
            report = msgspec.json.decode(proc.stdout.splitlines()[-1])
            print(msgspec.json.format(msgspec.json.encode(report), indent=2).decode())
            return 0
        server = None
        if args.http:
            sys.path.insert(0, str(ROOT / "scripts"))
            import clickhouse_server

            server = clickhouse_server.start(work_dir / "clickhouse")
            dsn = f"http://127.0.0.1:{server.port}"
        else:
            dsn = f"chdb://{work_dir / 'store'}"
        try:
            run = run_hub(["run", "--input", work.path, "--clickhouse", dsn], timeout_s=7200, repo=args.repo)
            got = check_store(dsn, work) if run.returncode == 0 else {}
        finally:
            if server is not None:
                clickhouse_server.stop(server)
        if run.returncode != 0:
            print(run.output[-3000:])
            return 1
        print(f"hub run: peak RSS {run.peak_rss_mb:,.0f} MB, CPU {run.cpu_s:,.0f} s, wall {run.wall_s:,.0f} s; "
              f"{work.events / run.wall_s:,.0f} events/s")
        print("store:", got)
        exact = (got["events"] == work.events and got["series"] == work.series and got["teams"] == work.teams
                 and not got["teams_wrong_requests"] and not got["teams_wrong_latency"])
        print("exact:", exact)
        return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
