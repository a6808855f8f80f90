"""The chdb-served ClickHouse HTTP server acts like a real server, including an outage.

The hub's `http://` DSN path and its ClickHouse-outage handling are tested against this
server (scripts/clickhouse_server.py), so it must speak the real protocol to
clickhouse-connect, refuse connections while stopped and keep its data across restarts.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import clickhouse_connect
import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import OperationalError

import clickhouse_server as chserver  # scripts/, put on sys.path by conftest

ROOT = Path(__file__).resolve().parents[1]
DDL = """
CREATE TABLE events (
    event_id String,
    model LowCardinality(String),
    ts DateTime64(3, 'UTC'),
    tokens UInt32
) ENGINE = ReplacingMergeTree ORDER BY (model, event_id)
"""
COLUMNS = ["event_id", "model", "ts", "tokens"]
ROWS = [
    ["e1", "gpt-4o", 1_700_000_000_000, 10],
    ["e2", "gpt-4o", 1_700_000_001_000, 20],
    ["e3", "claude", 1_700_000_002_000, 30],
]


def _totals(client: Client) -> list[tuple[str, int, int]]:
    return [tuple(r) for r in client.query(
        "SELECT model, count(), sum(tokens) FROM events FINAL GROUP BY model ORDER BY model").result_rows]


def test_serves_http_refuses_while_stopped_and_keeps_data_across_restart(clickhouse_server, tmp_path: Path) -> None:
    server = clickhouse_server.start(tmp_path / "data")
    client = clickhouse_connect.get_client(host="127.0.0.1", port=server.port)
    assert client.server_version.split(".")[0].isdigit()
    client.command(DDL)
    client.insert("events", ROWS, column_names=COLUMNS)
    client.insert("events", ROWS[:2], column_names=COLUMNS)  # a replay: FINAL must hide it
    expected = [("claude", 1, 30), ("gpt-4o", 2, 30)]
    assert _totals(client) == expected
    assert client.command("SELECT count() FROM events") == 5  # both inserts are stored

    clickhouse_server.stop(server)
    assert not chserver.is_running(server)
    with pytest.raises(OperationalError):
        clickhouse_connect.get_client(host="127.0.0.1", port=server.port, connect_timeout=2)
    with pytest.raises(OperationalError):
        client.query("SELECT 1")

    restarted = clickhouse_server.restart(server)
    assert (restarted.port, restarted.data_dir) == (server.port, server.data_dir)
    assert _totals(clickhouse_connect.get_client(host="127.0.0.1", port=restarted.port)) == expected
    assert _totals(client) == expected  # the client from before the outage works again


def test_refuses_a_data_dir_another_server_holds(clickhouse_server, tmp_path: Path) -> None:
    clickhouse_server.start(tmp_path / "data")
    with pytest.raises(chserver.ServerError, match="Cannot lock file"):
        clickhouse_server.start(tmp_path / "data")


def test_refuses_a_port_in_use(clickhouse_server, tmp_path: Path) -> None:
    first = clickhouse_server.start(tmp_path / "a")
    with pytest.raises(chserver.ServerError, match="already in use"):
        clickhouse_server.start(tmp_path / "b", port=first.port)


def test_cli_start_prints_url_last_and_stop_ends_server(tmp_path: Path) -> None:
    script = ROOT / "scripts" / "clickhouse_server.py"
    run_dir = tmp_path / "run"
    res = subprocess.run([sys.executable, str(script), "start", "--data", str(tmp_path / "data"),
                          "--run-dir", str(run_dir)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    server = chserver.server_in(run_dir)
    try:
        url = res.stdout.strip().splitlines()[-1]
        assert url == f"http://127.0.0.1:{server.port}"
        assert chserver.ping(server.port)
    finally:
        stop = subprocess.run([sys.executable, str(script), "stop", str(run_dir)],
                              capture_output=True, text=True, timeout=60)
    assert stop.returncode == 0, stop.stderr
    assert not chserver.is_running(server)
    assert not chserver.ping(server.port)


def test_cli_reports_a_locked_data_dir_in_one_line(clickhouse_server, tmp_path: Path) -> None:
    clickhouse_server.start(tmp_path / "data")
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "clickhouse_server.py"), "start",
                          "--data", str(tmp_path / "data")], capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Cannot lock file" in lines[0], res.stderr


def test_chdb_dsn_is_a_fresh_embedded_store(chdb_dsn: str) -> None:
    assert chdb_dsn.startswith("chdb:///") and chdb_dsn.endswith("/store")
    client = clickhouse_connect.get_client(dsn=chdb_dsn)
    try:
        assert client.command("SELECT count() FROM system.tables WHERE database = 'default'") == 0
        client.command("CREATE TABLE t (k UInt8) ENGINE = MergeTree ORDER BY k")
        client.insert("t", [[1], [2]], column_names=["k"])
        assert client.command("SELECT sum(k) FROM t") == 3
    finally:
        client.close()
    assert Path(chdb_dsn.removeprefix("chdb://")).is_dir()
