"""Peak resident memory of a `hub` command run in its own process, as deployed.

The child reports its own peak (VmHWM, the kernel's high-water mark of its resident memory) just
before it exits, so nothing is sampled and no peak between two samples is missed. Not getrusage's
ru_maxrss: Linux carries that across exec, so a child forked from a big test process would report
the parent's size.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import msgspec

ROOT = Path(__file__).resolve().parents[1]
PROBE = """\
import resource, sys
from flows.cli import main
rc = main(sys.argv[1:])
u = resource.getrusage(resource.RUSAGE_SELF)
hwm = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(f"hub-peak-rss-kb {hwm} cpu-s {u.ru_utime + u.ru_stime:.2f}", file=sys.stderr, flush=True)
sys.exit(rc)
"""
REPORT = re.compile(rb"hub-peak-rss-kb (\d+) cpu-s ([\d.]+)")


class HubRun(msgspec.Struct, frozen=True):
    returncode: int
    output: str  # stdout and stderr, interleaved
    peak_rss_mb: float
    cpu_s: float
    wall_s: float


def run_hub(args: list[str], env: dict[str, str] | None = None, timeout_s: float = 600.0,
            repo: Path = ROOT) -> HubRun:
    """`hub ARGS` in a child process of `repo`'s code (another checkout measures another commit);
    raises if it does not finish in time or does not report its peak."""
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=repo, env={**os.environ, **(env or {})},
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout_s, check=False)
    wall = time.monotonic() - started
    found = REPORT.search(proc.stdout)
    if found is None:
        raise AssertionError(f"hub {' '.join(args[:1])} exited {proc.returncode} without its memory report:\n"
                             f"{proc.stdout.decode(errors='replace')[-3000:]}")
    return HubRun(proc.returncode, proc.stdout.decode(errors="replace"), int(found[1]) / 1024, float(found[2]), wall)
