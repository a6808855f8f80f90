-- Raw events, dead letters, late events: every input ends in exactly one of these (duplicates
-- are dead letters with code 'duplicate'). ReplacingMergeTree on a deterministic key so a replay
-- after a crash changes no query result (use FINAL where exact counts matter).

CREATE TABLE IF NOT EXISTS events
(
    event_id        String,
    event_time      DateTime64(3, 'UTC'),
    ingest_time     DateTime64(3, 'UTC'),
    source          LowCardinality(String),
    event_type      LowCardinality(String),
    schema_version  LowCardinality(String),
    correlation_id  String,
    parent_event_id String,
    severity        LowCardinality(String),
    environment     LowCardinality(String),
    region          LowCardinality(String),
    model           LowCardinality(String),
    provider        LowCardinality(String),
    endpoint        LowCardinality(String),
    team            LowCardinality(String),
    asset_id        String,
    latency_ms      Nullable(Float64),
    ttft_ms         Nullable(Float64),
    input_tokens    Nullable(UInt64),
    output_tokens   Nullable(UInt64),
    cached_tokens   Nullable(UInt64),
    total_tokens    Nullable(UInt64),
    is_error        UInt8,
    error_type      LowCardinality(String),
    cost_usd        Nullable(Float64),
    category        LowCardinality(String),
    policy_id       String,
    outcome         LowCardinality(String),
    tags            Map(String, String),
    payload         String CODEC(ZSTD(3))
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(event_time)
ORDER BY (model, source, event_time, event_id)
TTL toDateTime(event_time) + INTERVAL 7 DAY;

CREATE TABLE IF NOT EXISTS dead_letters
(
    ingest_time DateTime64(3, 'UTC'),
    topic       LowCardinality(String),
    partition   Int32,
    offset      Int64,
    source      LowCardinality(String),
    code        LowCardinality(String),
    reason      String,
    field       String,
    event_id    String,
    raw         String CODEC(ZSTD(3))
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(ingest_time)
ORDER BY (topic, partition, offset, code, field, event_id)
TTL toDateTime(ingest_time) + INTERVAL 30 DAY;

CREATE TABLE IF NOT EXISTS late_events
(
    event_id     String,
    event_time   DateTime64(3, 'UTC'),
    window_start DateTime('UTC'),
    watermark    DateTime64(3, 'UTC'),
    lateness_ms  Int64,
    source       LowCardinality(String),
    model        LowCardinality(String),
    shard        LowCardinality(String),
    detected_at  DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(detected_at)
ORDER BY (shard, event_id)
TTL toDateTime(detected_at) + INTERVAL 30 DAY;

CREATE TABLE IF NOT EXISTS pipeline_runs
(
    run_id      String,
    started_at  DateTime64(3, 'UTC'),
    finished_at DateTime64(3, 'UTC'),
    input       String,
    events      UInt64,
    dead_letters UInt64,
    duplicates  UInt64,
    late_events UInt64,
    windows     UInt64
)
ENGINE = ReplacingMergeTree
ORDER BY run_id;
