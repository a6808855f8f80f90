"""Versioned migrations: applied once, tracked, edits refused, per-window DDL from one template,
TTLs only from [retention], and stores built by the first release migrate forward unchanged."""
from __future__ import annotations

import re
import shutil
import time
from contextlib import closing
from pathlib import Path

import numpy as np
from clickhouse_connect.driver.binding import quote_identifier
import pytest
from clickhouse_connect.driver.client import Client

from config.settings import ClickHouseSettings, RetentionSettings
from connectors import migrations, rollups
from connectors.clickhouse import METRICS_1M_COLUMNS, connect, insert_new_windows
from connectors.migrations import (MIGRATIONS_DIR, RETENTION, MigrationError, applied, discover, migrate, render,
                                   state)
from operators.windows import MetricValues, WindowAggregator
from schemas.metrics import window_rows
from schemas.rollups import ROLLUPS, WINDOWS

# The first release's migration files, byte for byte: what existing stores applied.
V1_DIR = Path(__file__).resolve().parent / "data" / "migrations_v1"
# Distinct days per key, so a TTL taken from the wrong key shows.
RETAIN = RetentionSettings(**{key: 1000 + i for i, key in enumerate(RetentionSettings.__struct_fields__)})


def test_migrate_creates_tables_once_and_applies_retention(chdb_dsn):
    with closing(connect(ClickHouseSettings(dsn=chdb_dsn))) as client:
        applied = migrate(client, RetentionSettings(events_days=3))
        assert applied == [m.version for m in discover()]
        tables = {r[0] for r in client.query("SHOW TABLES").result_rows}
        for t in ("events", "dead_letters", "late_events", "metrics_1m", "metrics_5m", "metrics_1mo",
                  "metrics_1h_stats", "composite_1d", "schema_migrations"):
            assert t in tables
        assert migrate(client, RetentionSettings(events_days=3)) == []
        ddl = client.query("SHOW CREATE TABLE events").result_rows[0][0]
        assert "toIntervalDay(3)" in ddl
        assert client.query("SELECT count() FROM events").result_rows == [(0,)]


def test_every_window_gets_its_table_views_and_retention(chdb_dsn):
    with closing(connect(ClickHouseSettings(dsn=chdb_dsn))) as client:
        migrate(client, RETAIN)
        objects = {r[0] for r in client.query("SHOW TABLES").result_rows}
        engines = dict(client.query("SELECT name, engine FROM system.tables WHERE database = currentDatabase()")
                       .result_rows)
    for w in WINDOWS:
        assert {w.table, f"{w.table}_stats", f"composite_{w.name}"} <= objects
        assert RETENTION[w.table] == ("window_start", w.retention_field)
    for w in ROLLUPS:
        # Recomputed by the writer (connectors/rollups.py), not fed by a view: exact after a crash.
        assert f"{w.table}_mv" not in objects
        assert engines[w.table] == "ReplacingMergeTree"


def test_ddl_carries_no_ttl():
    for m in discover():
        assert not [s for s in m.statements() if re.search(r"\bTTL\b", s)], m.path.name


def test_changing_retention_changes_every_ttl(chdb_dsn):
    with closing(connect(ClickHouseSettings(dsn=chdb_dsn))) as client:
        migrate(client, RetentionSettings())
        assert ttls(client) == expected_ttls(RetentionSettings())
        migrate(client, RETAIN)
        assert ttls(client) == expected_ttls(RETAIN)


def test_changed_migration_is_refused(chdb_dsn, tmp_path):
    mdir = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, mdir)
    with closing(connect(ClickHouseSettings(dsn=chdb_dsn))) as client:
        migrate(client, RetentionSettings(), mdir)
        first = sorted(mdir.glob("*.sql"))[0]
        first.write_text(first.read_text() + "\n-- edited\n")
        with pytest.raises(MigrationError, match="changed after it was applied"):
            migrate(client, RetentionSettings(), mdir)


def test_changed_window_list_is_an_edit_of_applied_migrations(chdb_dsn, monkeypatch):
    with closing(connect(ClickHouseSettings(dsn=chdb_dsn))) as client:
        migrate(client, RetentionSettings())
        monkeypatch.setitem(migrations.WINDOW_SETS, "rollup", ROLLUPS[:-1])
        with pytest.raises(MigrationError, match="0002_metrics.sql changed after it was applied"):
            migrate(client, RetentionSettings())


def test_superseded_record_is_restamped_so_later_edits_are_refused(chdb_dsn, tmp_path):
    mdir = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, mdir)
    with closing(connect(ClickHouseSettings(dsn=chdb_dsn))) as client:
        migrate(client, RetentionSettings(), V1_DIR)
        done = applied(client)
        v1 = {m.version for m in discover(V1_DIR)}
        assert {state(m, done) for m in discover(mdir) if m.version in v1} == {"superseded"}
        assert migrate(client, RetentionSettings(), mdir) == [m.version for m in discover(mdir) if m.version not in v1]
        assert applied(client) == {m.version: m.checksum for m in discover(mdir)}
        metrics = mdir / "0002_metrics.sql"
        metrics.write_text(metrics.read_text().replace("sum(sumsq) AS sumsq", "max(sumsq) AS sumsq"))
        with pytest.raises(MigrationError, match="0002_metrics.sql changed after it was applied"):
            migrate(client, RetentionSettings(), mdir)


@pytest.mark.parametrize("text, error", [
    ("-- @for tiers\nSELECT 1;\n-- @end\n", "names no window set"),
    ("-- @for rollup\nSELECT 1;\n", "without its `-- @end`"),
    ("-- @for rollup\nSELECT ${nope};\n-- @end\n", "bad placeholder"),
])
def test_template_mistakes_name_the_file(text, error):
    with pytest.raises(MigrationError, match=f"0009_x.sql: .*{re.escape(error)}"):
        render(text, "0009_x.sql")


def test_broken_migration_names_file_and_statement(chdb_dsn, tmp_path):
    mdir = tmp_path / "migrations"
    mdir.mkdir()
    (mdir / "0001_bad.sql").write_text("CREATE TABLE nope (x Int32) ENGINE = NoSuchEngine;\n")
    with closing(connect(ClickHouseSettings(dsn=chdb_dsn))) as client:
        with pytest.raises(MigrationError, match="0001_bad.sql failed at `CREATE TABLE nope"):
            migrate(client, RetentionSettings(), mdir)


def test_first_release_store_migrates_forward_without_change(tmp_path):
    with closing(connect(ClickHouseSettings(dsn=f"chdb://{tmp_path / 'fresh'}"))) as client:
        migrate(client, RETAIN)
        fresh = schema(client)

    start_ms = (int(time.time()) // 3600 - 3) * 3_600_000
    with closing(connect(ClickHouseSettings(dsn=f"chdb://{tmp_path / 'v1'}"))) as client:
        assert migrate(client, RetentionSettings(), V1_DIR) == [m.version for m in discover(V1_DIR)]
        insert_events(client, start_ms)
        inserted = insert_windows(client, start_ms, "p0")
        before = snapshot(client)
        v1_columns = snapshot_columns(client)
        assert all(before[name] for name in ("events", "dead_letters", *(f"{w.table}_stats" for w in WINDOWS),
                                             *(f"composite_{w.name}" for w in WINDOWS)))

        # Only what came after the first release runs; the first release's migrations are re-stamped.
        v1 = {m.version for m in discover(V1_DIR)}
        assert migrate(client, RETAIN) == [m.version for m in discover() if m.version not in v1]

        assert snapshot(client, v1_columns) == before
        assert schema(client) == fresh
        assert ttls(client) == expected_ttls(RETAIN)
        assert applied(client) == {m.version: m.checksum for m in discover()}
        inserted += insert_windows(client, start_ms, "p1")
        for w in WINDOWS:
            counts = client.query(f"SELECT sum(count) FROM {w.table}_stats WHERE metric = 'latency_ms'").result_rows
            assert counts == [(inserted,)], w.name


def insert_events(client: Client, start_ms: int) -> None:
    rows = [[f"e{i}", start_ms + i * 60_000, start_ms + i * 60_000 + 5, "telemetry", "telemetry.request",
             "gpt-4o", 100.0 + i, {"k": str(i)}] for i in range(50)]
    client.insert("events", rows, column_names=["event_id", "event_time", "ingest_time", "source", "event_type",
                                                "model", "latency_ms", "tags"])
    client.insert("dead_letters", [[start_ms, "telemetry", 0, 7, "bad_json", "not JSON", b"{"]],
                  column_names=["ingest_time", "topic", "partition", "offset", "code", "reason", "raw"])


def insert_windows(client: Client, start_ms: int, shard: str) -> int:
    """Three hours of request metrics for two models through the sink's writer; returns requests."""
    rng = np.random.default_rng(len(shard) + ord(shard[-1]))
    n = 6_000
    times = np.sort(start_ms + rng.integers(0, 3 * 3_600_000, n))
    models = np.where(rng.random(n) < 0.6, "gpt-4o", "claude-3")
    errors = (rng.random(n) < 0.05).astype(float)
    agg = WindowAggregator(0)
    agg.add(times, [(m, "/v1/chat", "search") for m in models], [
        MetricValues("requests", np.ones(n)), MetricValues("errors", errors),
        MetricValues("latency_ms", rng.lognormal(6.0, 0.7, n)), MetricValues("cost_usd", rng.random(n) / 100),
        MetricValues("total_tokens", rng.integers(10, 4000, n).astype(float)),
        MetricValues("compliance_checks", (rng.random(n) < 0.9).astype(float)),
    ])
    windows = agg.close_all()
    for w in windows:
        w.shard = shard
    rows = window_rows(windows)
    if client.command("EXISTS TABLE metrics_5m_mv") == 1:  # the first release's writer: no asset columns (0008)
        client.insert("metrics_1m", [r[:12] for r in rows], column_names=METRICS_1M_COLUMNS[:12])
    else:
        assert insert_new_windows(client, rows) == len(rows)
    if client.command("EXISTS TABLE metrics_5m_mv") != 1:  # since 0006 the writer recomputes the rollups
        rollups.refresh(client, {r[4] for r in rows})
    return n


def snapshot(client: Client, columns: dict[str, list[str]] | None = None) -> dict[str, bytes]:
    """Every table and view as sorted TSV, but materialized views (no rows of their own) and the
    rollup tables, whose raw rows depend on merges (and, since 0006, on when they were
    recomputed): their `_stats` views hold them.
    `columns` (default: what each has now) lets a later snapshot read only what an earlier one
    saw, since later migrations may add columns."""
    names = client.query(
        "SELECT name FROM system.tables WHERE database = currentDatabase() AND name != 'schema_migrations' "
        "AND engine != 'MaterializedView' AND name NOT IN {rollups:Array(String)}",
        parameters={"rollups": [w.table for w in ROLLUPS]}).result_rows
    columns = columns or snapshot_columns(client)
    return {name: client.raw_query(f"SELECT {', '.join(map(quote_identifier, columns[name]))} FROM {name} "
                                   "ORDER BY ALL FORMAT TSV") for (name,) in names if name in columns}


def snapshot_columns(client: Client) -> dict[str, list[str]]:
    rows = client.query("SELECT table, name FROM system.columns WHERE database = currentDatabase() "
                        "ORDER BY table, position").result_rows
    out: dict[str, list[str]] = {}
    for table, name in rows:
        out.setdefault(table, []).append(name)
    return out


def schema(client: Client) -> dict[str, str]:
    """What ClickHouse holds for every table, view and SQL function, as it normalises the DDL."""
    tables = client.query("SELECT name, create_table_query FROM system.tables "
                          "WHERE database = currentDatabase() AND name != 'schema_migrations'").result_rows
    functions = client.query("SELECT name, create_query FROM system.functions WHERE origin = 'SQLUserDefined'")
    return dict(tables) | dict(functions.result_rows)


def ttls(client: Client) -> dict[str, str]:
    rows = client.query("SELECT name, extract(engine_full, 'TTL (.*?) SETTINGS') FROM system.tables "
                        "WHERE database = currentDatabase() AND engine_full LIKE '% TTL %'").result_rows
    return dict(rows)


def expected_ttls(retention: RetentionSettings) -> dict[str, str]:
    return {table: f"{column} + toIntervalDay({getattr(retention, key)})" for table, (column, key) in RETENTION.items()}
