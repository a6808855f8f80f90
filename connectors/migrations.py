"""Versioned SQL migrations from schemas/migrations, tracked in ClickHouse, plus retention TTLs.

A migration file is SQL with two additions, both comment lines so the file stays plain SQL:

- `-- @for rollup` / `-- @for window` ... `-- @end`: the block is repeated for each window of
  schemas/rollups.py (`${table}`, `${start}`, ... name that window's fields), so the per-window
  tables and views have one template. The checksum covers the rendered text: editing the block
  or the window list is an edit of the migration.
- `-- @supersedes <sha256>`: a store that applied the text with that checksum already holds what
  this text creates. This is how the templated rewrite of the first release's files (the same
  objects, written out per window with literal TTLs) reaches existing stores. A superseded record
  is not re-run: it is re-stamped with the current checksum, so from then on any edit is refused
  as before. Alternatives were worse: keeping the old files keeps the near-copies forever;
  dropping and recreating the materialized views in a new migration loses the rollups of rows
  the flow inserts in between; a new baseline version made of `CREATE ... IF NOT EXISTS` would
  silently keep whatever an old store holds. The claim is tested: a store built from the first
  release's files (tests/data/migrations_v1) migrates to the same schema as a fresh store.

TTLs are never in the DDL: retention lives in config, so every migrate sets them from
`[retention]`, including on tables that once carried literals.
"""
from __future__ import annotations

import hashlib
import re
import string
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from clickhouse_connect.driver.client import Client

from config.errors import HubError
from config.settings import RetentionSettings
from schemas.rollups import ROLLUPS, WINDOWS, Window

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
    "skipped_inputs": ("toDateTime(ingest_time)", "dead_letters_days"),
    **{w.table: ("window_start", w.retention_field) for w in WINDOWS},
    "anomalies": ("toDateTime(window_start)", "anomalies_days"),
    "incidents": ("toDateTime(opened_at)", "incidents_days"),
    "incident_edges": ("toDateTime(time)", "incidents_days"),
    "alerts": ("toDateTime(starts_at)", "alerts_days"),
    "budget_status": ("toDateTime(period_start)", "alerts_days"),
    "notifications": ("toDateTime(created_at)", "alerts_days"),
    "compliance_reports": ("toDateTime(window_start)", "compliance_reports_days"),
}
WINDOW_SETS: dict[str, tuple[Window, ...]] = {"window": WINDOWS, "rollup": ROLLUPS}
_BLOCK = re.compile(r"^-- @for (\w+)[ \t]*\n(.*?)^-- @end[ \t]*(?:\n|\Z)", re.M | re.S)
_DIRECTIVE = re.compile(r"^-- @(for|end)\b", re.M)
_SUPERSEDES = re.compile(r"^-- @supersedes ([0-9a-f]{64})\b", re.M)

State = Literal["pending", "applied", "superseded", "changed"]


class MigrationError(HubError):
    pass


@dataclass(frozen=True)
class Migration:
    version: str
    path: Path
    sql: str  # rendered: per-window blocks expanded
    supersedes: frozenset[str] = field(default=frozenset())

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    def statements(self) -> list[str]:
        """Statements end with `;` at a line end; `--` comment lines are dropped."""
        lines = [ln for ln in self.sql.splitlines() if not ln.lstrip().startswith("--")]
        parts = re.split(r";\s*$", "\n".join(lines), flags=re.M)
        return [p.strip() for p in parts if p.strip()]


def render(text: str, name: str) -> str:
    """Expand each `-- @for <set>` ... `-- @end` block once per window of that set."""

    def expand(block: re.Match[str]) -> str:
        windows = WINDOW_SETS.get(block[1])
        if windows is None:
            raise MigrationError(f"migration {name}: `@for {block[1]}` names no window set "
                                 f"(known: {', '.join(WINDOW_SETS)})")
        body = string.Template(block[2])
        try:
            return "\n".join(body.substitute(w.fields()) for w in windows)
        except (KeyError, ValueError) as exc:
            raise MigrationError(f"migration {name}: bad placeholder in `@for {block[1]}` block: {exc}") from None

    rendered = _BLOCK.sub(expand, text)
    if _DIRECTIVE.search(rendered):
        raise MigrationError(f"migration {name}: `-- @for` without its `-- @end` (or the reverse)")
    return rendered


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    files = sorted(directory.glob("[0-9][0-9][0-9][0-9]_*.sql"))
    out = []
    for f in files:
        text = f.read_text(encoding="utf-8")
        out.append(Migration(f.stem, f, render(text, f.name), frozenset(_SUPERSEDES.findall(text))))
    return out


def applied(client: Client) -> dict[str, str]:
    """version -> checksum last recorded for it (a superseded record is re-stamped by a newer row)."""
    client.command(TRACKING_DDL)
    rows = client.query("SELECT version, argMax(checksum, applied_at) FROM schema_migrations GROUP BY version")
    return {v: c for v, c in rows.result_rows}


def state(m: Migration, done: Mapping[str, str]) -> State:
    """Where `m` stands in a store; `superseded`: the store recorded an earlier text `m` declares equivalent."""
    stored = done.get(m.version)
    if stored is None:
        return "pending"
    if stored == m.checksum:
        return "applied"
    return "superseded" if stored in m.supersedes else "changed"


def migrate(client: Client, retention: RetentionSettings, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations in order; refuse if an applied one was edited. Returns versions applied."""
    done = applied(client)
    migrations = discover(directory)
    states = {m.version: state(m, done) for m in migrations}
    for m in migrations:
        if states[m.version] == "changed":
            raise MigrationError(
                f"migration {m.path.name} changed after it was applied "
                f"(checksum {done[m.version][:12]} in the store, {m.checksum[:12]} on disk); "
                "add a new migration instead of editing an applied one"
            )
    for m in migrations:
        if states[m.version] == "superseded":
            _record(client, m)
    new: list[str] = []
    for m in migrations:
        if states[m.version] != "pending":
            continue
        for stmt in m.statements():
            try:
                client.command(stmt)
            except Exception as exc:
                head = stmt.splitlines()[0][:80]
                raise MigrationError(f"migration {m.path.name} failed at `{head}`: {str(exc).splitlines()[0][:300]}") from None
        _record(client, m)
        new.append(m.version)
    apply_retention(client, retention)
    return new


def _record(client: Client, m: Migration) -> None:
    client.insert("schema_migrations", [[m.version, m.checksum, int(time.time() * 1000)]],
                  column_names=["version", "checksum", "applied_at"])


def apply_retention(client: Client, retention: RetentionSettings) -> None:
    """Retention lives in config, so TTLs are set on every migrate rather than baked into DDL
    (on the tables the applied migrations created: an older migration set has fewer)."""
    present = {name for (name,) in client.query(
        "SELECT name FROM system.tables WHERE database = currentDatabase()").result_rows}
    for table, (column, key) in RETENTION.items():
        if table not in present:
            continue
        days = getattr(retention, key)
        client.command(
            f"ALTER TABLE {table} MODIFY TTL {column} + INTERVAL {days} DAY",
            settings={"materialize_ttl_after_modify": 0},
        )
