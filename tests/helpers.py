"""Test helpers: hub worker processes, topics, polling with deadlines, store snapshots."""
from __future__ import annotations

import math

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from config.settings import SOURCES, ClickHouseSettings
from connectors.clickhouse import connect

ROOT = Path(__file__).resolve().parents[1]
# Budgets and alert rules that fire on synthetic traffic: stores read by serve/dashboard tests.
ALERTING_CONFIG = ROOT / "tests/data/alerting.toml"


def wait_for(check: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.1) -> Any:
    """Poll until check() is truthy; fail naming what we waited for."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what} (last: {last!r})")


def topic_env(bootstrap: str, partitions: int = 1) -> dict[str, str]:
    """Fresh topics per test (telemetry with `partitions`), as HUB_* variables."""
    run = uuid.uuid4().hex[:8]
    env = {"HUB_KAFKA__BOOTSTRAP_SERVERS": bootstrap, "HUB_KAFKA__GROUP_ID": f"hub-{run}"}
    topics = {s: f"t{run}.{s}" for s in SOURCES}
    topics["dead_letter"] = f"t{run}.dead-letters"
    topics["alerts"] = f"t{run}.alerts"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(t, partitions if s == "telemetry" else 1, 1) for s, t in topics.items()])
    for f in futures.values():
        f.result(30)
    env.update({f"HUB_KAFKA__TOPICS__{s.upper()}": t for s, t in topics.items()})
    return env


def produce(bootstrap: str, topic: str, values: list[bytes], partitions: int = 1) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": "10"})
    for i, v in enumerate(values):
        while True:
            try:
                p.produce(topic, v, partition=i % partitions)
                break
            except BufferError:
                p.poll(0.05)
    assert p.flush(60) == 0


class HubProcess:
    """`hub run` in its own process (as deployed), killable and restartable. Any still running
    when its test ends is stopped (tests/conftest.py), so a failed test leaves no worker behind."""

    running: set["HubProcess"] = set()

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args, self.env, self.log = args, env, log
        self.proc: subprocess.Popen | None = None

    def start(self) -> "HubProcess":
        out = open(self.log, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "run", *self.args], cwd=ROOT,
                                     env={**os.environ, **self.env}, stdout=out, stderr=subprocess.STDOUT)
        HubProcess.running.add(self)
        return self

    @classmethod
    def stop_all(cls) -> None:
        for p in list(cls.running):
            p.stop()
        cls.running.clear()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def wait(self, timeout_s: float) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()  # not left behind to slow the tests after it
            raise AssertionError(f"hub run did not finish in {timeout_s}s; log:\n{self.log.read_text()[-3000:]}") from None


def http_settings(port: int, database: str = "default") -> ClickHouseSettings:
    return ClickHouseSettings(dsn=f"http://127.0.0.1:{port}", database=database)


def query(settings: ClickHouseSettings, sql: str) -> list[tuple]:
    with closing(connect(settings)) as client:
        return client.query(sql).result_rows


def store_digest(settings: ClickHouseSettings) -> dict[str, Any]:
    from schemas.rollups import ROLLUPS

    """Everything a user could query, reduced to comparable values (FINAL where replays dedupe);
    compare two with `same_store` (float sums depend on the order rows were merged in)."""
    queries = {
        "events": "SELECT count(), uniqExact(event_id), sum(ifNull(latency_ms, 0)), sum(ifNull(cost_usd, 0)) FROM events FINAL",
        "events_by_model": "SELECT model, source, count() FROM events FINAL GROUP BY model, source ORDER BY model, source",
        "dead_letters": "SELECT code, count() FROM dead_letters FINAL GROUP BY code ORDER BY code",
        "late": "SELECT count() FROM late_events FINAL",
        "metrics_1m": "SELECT metric, model, endpoint, team, window_start, sum(count), sum(sum), min(min), max(max), "
                      "toString(sumMap(hist)) FROM metrics_1m FINAL GROUP BY metric, model, endpoint, team, window_start "
                      "ORDER BY metric, model, endpoint, team, window_start",
        **{f"{w.table}_stats": f"SELECT metric, model, endpoint, team, window_start, count, sum, min, max, "
                               f"toString(histogram) FROM {w.table}_stats ORDER BY metric, model, endpoint, team, window_start"
           for w in ROLLUPS},
        "skipped": "SELECT reason, sum(inputs) FROM skipped_inputs FINAL GROUP BY reason ORDER BY reason",
        "anomalies": "SELECT * FROM anomalies FINAL ORDER BY ALL",
        # By what does not depend on where input batches were cut (an incident's id and the members
        # a full one keeps do) or on whether input ended (a bounded run closes its incidents and
        # re-emits them with the members that joined since: status, severity, version, members).
        "incidents": "SELECT pattern, assets, root_cause_id FROM incidents FINAL ORDER BY ALL",
        "composite_1d": "SELECT model, window_start, requests, errors, cost_usd FROM composite_1d ORDER BY model, window_start",
    }
    return {name: query(settings, sql) for name, sql in queries.items()}


def same_store(a: Any, b: Any, rel: float = 1e-9) -> bool:
    """Equal digests, floats within `rel`: a sum over rows merged in another order differs in its
    last bits, and rounding would only move the boundary where that shows."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=rel, abs_tol=1e-12) or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_store(a[k], b[k], rel) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_store(x, y, rel) for x, y in zip(a, b))
    return a == b


def digest_differences(got: dict[str, Any], want: dict[str, Any]) -> dict[str, list[str]]:
    """The tables whose digests differ, each with a few rows found on one side only, so a failure
    names the rows and not only the table."""
    return {name: sorted({repr(r) for r in got[name]} ^ {repr(r) for r in want[name]})[:6]
            for name in want if not same_store(got[name], want[name])}


def wait_for_store(settings: ClickHouseSettings, want: dict[str, Any], timeout_s: float, what: str,
                   log: Path | None = None) -> None:
    """Poll until the store's digest equals `want`; on timeout fail with the rows still differing
    (and the end of the worker's `log`)."""
    differ: dict[str, list[str]] = {}

    def same() -> bool:
        differ.clear()
        differ.update(digest_differences(store_digest(settings), want))
        return not differ

    try:
        wait_for(same, timeout_s, what, 2.0)
    except AssertionError as e:
        tail = f"; log:\n{log.read_text()[-3000:]}" if log else ""
        raise AssertionError(f"{e}; still differing: {differ}{tail}") from None
