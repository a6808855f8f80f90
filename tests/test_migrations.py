"""Versioned migrations on a fresh embedded store: applied once, tracked, edits refused."""
from __future__ import annotations

import shutil
from contextlib import closing

import pytest

from config.settings import ClickHouseSettings, RetentionSettings
from connectors.clickhouse import connect
from connectors.migrations import MIGRATIONS_DIR, MigrationError, discover, migrate


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


def test_changed_migration_is_refused(chdb_dsn, tmp_path):
    mdir = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, mdir)
    with closing(connect(ClickHouseSettings(dsn=chdb_dsn))) as client:
        migrate(client, RetentionSettings(), mdir)
        first = sorted(mdir.glob("*.sql"))[0]
        first.write_text(first.read_text() + "\n-- edited\n")
        with pytest.raises(MigrationError, match="changed after it was applied"):
            migrate(client, RetentionSettings(), mdir)


def test_broken_migration_names_file_and_statement(chdb_dsn, tmp_path):
    mdir = tmp_path / "migrations"
    mdir.mkdir()
    (mdir / "0001_bad.sql").write_text("CREATE TABLE nope (x Int32) ENGINE = NoSuchEngine;\n")
    with closing(connect(ClickHouseSettings(dsn=chdb_dsn))) as client:
        with pytest.raises(MigrationError, match="0001_bad.sql failed at `CREATE TABLE nope"):
            migrate(client, RetentionSettings(), mdir)
