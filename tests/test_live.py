"""Live reads: while `hub run` writes its embedded store, `hub query` reads it over the HTTP
interface the run serves (connectors/live_store.py), read-only, and only with the store's token."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from connectors.live_store import LIVE_FILE, find, read_live_file
from tests.helpers import HubProcess, wait_for


def hub(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ))


def count(dsn: str, sql: str = "SELECT count() FROM events") -> int:
    r = hub("query", "--clickhouse", dsn, "--format", "csv", sql)
    assert r.returncode == 0, r.stderr
    return int(r.stdout.splitlines()[1])


def one_line(text: str) -> bool:
    return len(text.strip().splitlines()) == 1


@pytest.fixture
def running(tmp_path: Path):
    """A tailing `hub run` (synthetic traffic until stopped) on an embedded store, served live."""
    store = tmp_path / "store"
    worker = HubProcess(["--rate", "400", "--clickhouse", f"chdb://{store}"], {}, tmp_path / "run.log").start()
    try:
        wait_for(lambda: find(store), 120, f"{store / LIVE_FILE} to name a live server")
        yield store, worker
    finally:
        worker.stop()


@pytest.mark.slow
def test_hub_query_reads_a_running_hub_run_and_sees_counts_grow(running, tmp_path: Path) -> None:
    store, worker = running
    dsn = f"chdb://{store}"
    first = wait_for(lambda: count(dsn), 60, "events in the live store")
    wait_for(lambda: count(dsn) > first, 60, f"the event count to grow past {first}")
    r = hub("query", "--clickhouse", dsn, "--format", "jsonl", "SELECT model, count() AS n FROM events GROUP BY model")
    assert r.returncode == 0 and len(r.stdout.splitlines()) > 1, r.stderr

    live = read_live_file(store)
    assert live is not None and live.url.startswith("http://127.0.0.1:")
    assert stat.S_IMODE((store / LIVE_FILE).stat().st_mode) == 0o600, "the token is for the store's owner only"
    log = (tmp_path / "run.log").read_text()
    assert f"live reads on {live.url}" in log


@pytest.mark.slow
def test_live_reads_cannot_write_and_need_the_token(running) -> None:
    store, _ = running
    dsn = f"chdb://{store}"
    for sql, needs in (("INSERT INTO events (event_id) VALUES ('x')", "INSERT"),
                       ("DROP TABLE events", "DROP"),
                       ("SELECT * FROM file('/etc/hostname', 'LineAsString', 'l String')", "READ ON FILE"),
                       ("SYSTEM STOP LISTEN HTTP", "SYSTEM LISTEN")):
        r = hub("query", "--clickhouse", dsn, sql)
        assert r.returncode == 1 and one_line(r.stderr) and "Not enough privileges" in r.stderr, (sql, r.stderr)
        assert needs in r.stderr
    live = read_live_file(store)
    assert live is not None
    # Without the token (any other local user: the file is 0600) nothing but /ping answers.
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(urllib.request.Request(f"{live.url}/", data=b"SELECT 1"), timeout=5)
    assert refused.value.code == 403
    with urllib.request.urlopen(f"{live.url}/ping", timeout=5) as resp:
        assert resp.read().strip() == b"Ok."
    # A writer is told who holds the store instead of getting the engine's lock error.
    r = hub("migrate", "--clickhouse", dsn)
    assert r.returncode == 1 and one_line(r.stderr), r.stderr
    assert "is being written by `hub run` (pid" in r.stderr and "serves live reads only" in r.stderr


@pytest.mark.slow
def test_a_clean_stop_removes_the_address_and_the_store_opens_directly(running) -> None:
    store, worker = running
    dsn = f"chdb://{store}"
    wait_for(lambda: count(dsn) > 0, 60, "events in the live store")
    worker.stop()
    assert worker.proc is not None and worker.proc.returncode == 0
    assert not (store / LIVE_FILE).exists()
    assert count(dsn, "SELECT count() FROM events FINAL") > 0  # opened in-process now: nobody holds it


@pytest.mark.slow
def test_a_killed_run_leaves_a_stale_address_that_readers_ignore(running) -> None:
    store, worker = running
    dsn = f"chdb://{store}"
    wait_for(lambda: count(dsn) > 0, 60, "events in the live store")
    worker.kill()
    stale = json.loads((store / LIVE_FILE).read_text())
    assert stale["pid"] == worker.proc.pid if worker.proc else False
    assert find(store) is None
    assert count(dsn) > 0


def test_live_reads_are_off_when_configured(tmp_path: Path) -> None:
    store = tmp_path / "store"
    r = subprocess.run([sys.executable, "-m", "flows.cli", "run", "--events", "50", "--clickhouse", f"chdb://{store}"],
                       capture_output=True, text=True, timeout=120, env={**os.environ, "HUB_CLICKHOUSE__LIVE": "false"})
    assert r.returncode == 0, r.stderr
    assert "live reads" not in r.stderr and not (store / LIVE_FILE).exists()
