"""Versioned SQL migrations from schemas/migrations, tracked in ClickHouse, plus retention TTLs."""
from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from pathlib import Path

from clickhouse_connect.driver.client import Client

from config.errors import HubError
from config.settings import RetentionSettings

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "schemas" / "migrations"
TRACKING_DDL = """
CREATE TABLE IF NOT EXISTS schema_migrations
(
    version    String,
    checksum   String,
    applied_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY version
"""
# table -> (time column expression, RetentionSettings field)
RETENTION = {
    "events": ("toDateTime(event_time)", "events_days"),
    "dead_letters": ("toDateTime(ingest_time)", "dead_letters_days"),
    "late_events": ("toDateTime(detected_at)", "late_events_days"),
    **{f"metrics_{g}": ("window_start", f"metrics_{g}_days") for g in ("1m", "5m", "15m", "1h", "6h", "1d", "1w", "1mo")},
    "anomalies": ("toDateTime(window_start)", "anomalies_days"),
    "incidents": ("toDateTime(opened_at)", "incidents_days"),
    "incident_edges": ("toDateTime(time)", "incidents_days"),
}


class MigrationError(HubError):
    pass


@dataclass(frozen=True)
class Migration:
    version: str
    path: Path
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    def statements(self) -> list[str]:
        """Statements end with `;` at a line end; `--` comment lines are dropped."""
        lines = [ln for ln in self.sql.splitlines() if not ln.lstrip().startswith("--")]
        parts = re.split(r";\s*$", "\n".join(lines), flags=re.M)
        return [p.strip() for p in parts if p.strip()]


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    files = sorted(directory.glob("[0-9][0-9][0-9][0-9]_*.sql"))
    return [Migration(f.stem, f, f.read_text(encoding="utf-8")) for f in files]


def applied(client: Client) -> dict[str, str]:
    client.command(TRACKING_DDL)
    rows = client.query("SELECT version, checksum FROM schema_migrations FINAL").result_rows
    return {v: c for v, c in rows}


def migrate(client: Client, retention: RetentionSettings, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations in order; refuse if an applied one was edited. Returns versions applied."""
    done = applied(client)
    migrations = discover(directory)
    for m in migrations:
        if m.version in done and done[m.version] != m.checksum:
            raise MigrationError(
                f"migration {m.path.name} changed after it was applied "
                f"(checksum {done[m.version][:12]} in the store, {m.checksum[:12]} on disk); "
                "add a new migration instead of editing an applied one"
            )
    new: list[str] = []
    for m in migrations:
        if m.version in done:
            continue
        for stmt in m.statements():
            try:
                client.command(stmt)
            except Exception as exc:
                head = stmt.splitlines()[0][:80]
                raise MigrationError(f"migration {m.path.name} failed at `{head}`: {str(exc).splitlines()[0][:300]}") from None
        client.insert("schema_migrations", [[m.version, m.checksum, int(time.time() * 1000)]],
                      column_names=["version", "checksum", "applied_at"])
        new.append(m.version)
    apply_retention(client, retention)
    return new


def apply_retention(client: Client, retention: RetentionSettings) -> None:
    """Retention lives in config, so TTLs are set on every migrate rather than baked into DDL."""
    for table, (column, field) in RETENTION.items():
        days = getattr(retention, field)
        client.command(
            f"ALTER TABLE {table} MODIFY TTL {column} + INTERVAL {days} DAY",
            settings={"materialize_ttl_after_modify": 0},
        )
