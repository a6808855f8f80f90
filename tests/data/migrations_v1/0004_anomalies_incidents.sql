-- Anomalies, incidents and their event graphs (operators/anomaly.py, operators/correlation.py).
-- Every row carries a deterministic id (schemas/incidents.py), and each table is a
-- ReplacingMergeTree whose sorting key contains that id, so a replay after a crash collapses onto
-- the rows already written. Incidents are re-emitted as they grow: `version` keeps the latest
-- (query with FINAL, or argMax(..., version)); absorbed incidents end with status 'merged'.
-- Partition keys only use values fixed by the id (a row never moves between partitions).
-- incident_edges rows carry the incident version they belong to; the current graph of an incident
-- is its edges at the incident's latest version (an inferred 'causes' edge can be dropped when a
-- later member changes the root cause):
--   SELECT e.* FROM incident_edges AS e FINAL
--   JOIN (SELECT id, max(version) AS version FROM incidents GROUP BY id) AS i
--     ON e.incident_id = i.id AND e.version = i.version

CREATE TABLE IF NOT EXISTS anomalies
(
    id           String,
    metric       LowCardinality(String),
    model        LowCardinality(String),
    endpoint     LowCardinality(String),
    team         LowCardinality(String),
    window_start DateTime64(3, 'UTC'),
    window_ms    UInt32,
    anomaly_type LowCardinality(String),
    score        Float32,
    expected     Float64,
    spread       Float64,
    observed     Float64,
    detector     LowCardinality(String),
    severity     LowCardinality(String),
    tags         Map(String, String)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(window_start)
ORDER BY (model, metric, window_start, id)
TTL toDateTime(window_start) + INTERVAL 365 DAY;

CREATE TABLE IF NOT EXISTS incidents
(
    id                 String,
    version            UInt64,
    status             LowCardinality(String),
    pattern            LowCardinality(String),
    confidence         Float32,
    severity           LowCardinality(String),
    opened_at          DateTime64(3, 'UTC'),
    start_time         DateTime64(3, 'UTC'),
    end_time           DateTime64(3, 'UTC'),
    assets             Array(String),
    root_cause_id      String,
    root_cause_reasons Array(String),
    pattern_reasons    Array(String),
    impact             Map(LowCardinality(String), Float64),
    member_ids         Array(String),
    member_roles       Array(LowCardinality(String)),
    member_sources     Array(LowCardinality(String)),
    member_kinds       Array(String),
    member_times       Array(DateTime64(3, 'UTC')),
    overflow           UInt32,
    merged_into        String,
    INDEX assets_idx assets TYPE bloom_filter GRANULARITY 4
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(opened_at)
ORDER BY (opened_at, id)
TTL toDateTime(opened_at) + INTERVAL 365 DAY;

CREATE TABLE IF NOT EXISTS incident_edges
(
    incident_id  String,
    from_id      String,
    to_id        String,
    relationship LowCardinality(String),
    weight       Float32,
    time         DateTime64(3, 'UTC'),
    version      UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(time)
ORDER BY (incident_id, from_id, to_id, relationship)
TTL toDateTime(time) + INTERVAL 365 DAY;
