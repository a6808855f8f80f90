-- Registry state and enrichment, compliance reports (operators/registry, operators/compliance).
--
-- Enrichment is a join at write time, not a ClickHouse dictionary: the flow keeps every asset's
-- history (by event time) in its snapshotted state and stamps each metric row, anomaly and
-- incident with the asset's name, version, owner, category and tags as of the end of its window.
-- A row keeps what was true then: promoting version 1.3 at noon leaves the morning's rows on 1.2.
-- A dictionary over `assets` would answer every query with the current values (rewriting the
-- history of every row at each update), and would lag the table by its refresh interval.
-- `assets` holds the latest profile of each asset, `asset_events` every registry event with the
-- profile right after it (no TTL on either: they are the registry's history).
-- No TTLs here: `hub migrate` sets them from [retention] (connectors/migrations.py).

ALTER TABLE metrics_1m
    ADD COLUMN IF NOT EXISTS asset_id       String,
    ADD COLUMN IF NOT EXISTS asset_name     LowCardinality(String),
    ADD COLUMN IF NOT EXISTS asset_version  LowCardinality(String),
    ADD COLUMN IF NOT EXISTS asset_owner    LowCardinality(String),
    ADD COLUMN IF NOT EXISTS asset_category LowCardinality(String),
    ADD COLUMN IF NOT EXISTS asset_tags     Array(LowCardinality(String));

ALTER TABLE anomalies
    ADD COLUMN IF NOT EXISTS asset_id       String,
    ADD COLUMN IF NOT EXISTS asset_name     LowCardinality(String),
    ADD COLUMN IF NOT EXISTS asset_version  LowCardinality(String),
    ADD COLUMN IF NOT EXISTS asset_owner    LowCardinality(String),
    ADD COLUMN IF NOT EXISTS asset_category LowCardinality(String),
    ADD COLUMN IF NOT EXISTS asset_tags     Array(LowCardinality(String));

-- Parallel to `assets` (a model name or asset id per entry): the registry asset each resolves to.
ALTER TABLE incidents
    ADD COLUMN IF NOT EXISTS asset_ids        Array(String),
    ADD COLUMN IF NOT EXISTS asset_names      Array(String),
    ADD COLUMN IF NOT EXISTS asset_versions   Array(String),
    ADD COLUMN IF NOT EXISTS asset_owners     Array(String),
    ADD COLUMN IF NOT EXISTS asset_categories Array(String),
    ADD COLUMN IF NOT EXISTS asset_tags       Array(Array(String));

-- Latest wins: `events` counts the registry events folded into the profile, so the profile that
-- has seen more of them replaces the others whatever order rows are written in (FINAL).
CREATE TABLE IF NOT EXISTS assets
(
    asset_id             String,
    name                 String,
    asset_type           LowCardinality(String),
    version              String,
    owner                LowCardinality(String),
    category             LowCardinality(String),
    provider             LowCardinality(String),
    tags                 Array(String),
    description          String,
    status               LowCardinality(String),
    stage                LowCardinality(String),
    versions             Map(String, String),
    replacement_asset_id String,
    sunset_date          String,
    registered_at        DateTime64(3, 'UTC'),
    updated_at           DateTime64(3, 'UTC'),
    last_event_id        String,
    last_event_type      LowCardinality(String),
    events               UInt64
)
ENGINE = ReplacingMergeTree(events)
ORDER BY asset_id;

CREATE TABLE IF NOT EXISTS asset_events
(
    event_id   String,
    event_time DateTime64(3, 'UTC'),
    event_type LowCardinality(String),
    asset_id   String,
    name       String,
    version    String,
    owner      LowCardinality(String),
    category   LowCardinality(String),
    tags       Array(String),
    stage      LowCardinality(String),
    status     LowCardinality(String),
    payload    String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(event_time)
ORDER BY (asset_id, event_time, event_id);

-- One row per (granularity, window, scope), recomputed whole by the flow whenever an event of
-- the window (or of the window before, for the trend) arrives, late ones included. `version` is
-- (events counted in the window) * 2^32 + (events in the window before): a row that counted more
-- replaces one that counted less, so a replay, or a restart that re-reads, never makes a row
-- smaller than what was stored. Query with FINAL.
CREATE TABLE IF NOT EXISTS compliance_reports
(
    id                     String,
    version                UInt64,
    granularity            LowCardinality(String),
    window_start           DateTime64(3, 'UTC'),
    window_end             DateTime64(3, 'UTC'),
    scope_kind             LowCardinality(String),
    scope                  String,
    evaluations            UInt64,
    compliant              UInt64,
    non_compliant          UInt64,
    violations             UInt64,
    compliance_rate        Nullable(Float64),
    violation_rate         Nullable(Float64),
    violations_by_type     Map(String, UInt64),
    violations_by_severity Map(LowCardinality(String), UInt64),
    prev_evaluations       UInt64,
    prev_violations        UInt64,
    prev_compliance_rate   Nullable(Float64),
    compliance_rate_change Nullable(Float64),
    violation_rate_change  Nullable(Float64),
    violations_change      Int64,
    asset_name             String,
    asset_version          String,
    asset_owner            LowCardinality(String),
    asset_category         LowCardinality(String),
    asset_tags             Array(String)
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(window_start)
ORDER BY (granularity, scope_kind, scope, window_start);
