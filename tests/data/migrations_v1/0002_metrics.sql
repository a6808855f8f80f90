-- Windowed metrics. The flow writes one row per (series, 1-minute window, input shard) into
-- metrics_1m, once per closed window; the writer skips (shard, window) pairs already stored, so
-- a replay neither duplicates rows nor double-counts the rollups. Materialized views roll 1m
-- rows up into AggregatingMergeTree tables; histograms merge with sumMap so percentiles stay
-- within 1% for any window.

CREATE TABLE IF NOT EXISTS metrics_1m
(
    metric       LowCardinality(String),
    model        LowCardinality(String),
    endpoint     LowCardinality(String),
    team         LowCardinality(String),
    window_start DateTime('UTC'),
    shard        LowCardinality(String),
    count        UInt64,
    sum          Float64,
    min          Float64,
    max          Float64,
    sumsq        Float64,
    hist         Map(Int32, UInt64)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(window_start)
ORDER BY (metric, model, endpoint, team, window_start, shard)
TTL window_start + INTERVAL 7 DAY;

CREATE TABLE IF NOT EXISTS metrics_5m
(
    metric       LowCardinality(String),
    model        LowCardinality(String),
    endpoint     LowCardinality(String),
    team         LowCardinality(String),
    window_start DateTime('UTC'),
    count        SimpleAggregateFunction(sum, UInt64),
    sum          SimpleAggregateFunction(sum, Float64),
    min          SimpleAggregateFunction(min, Float64),
    max          SimpleAggregateFunction(max, Float64),
    sumsq        SimpleAggregateFunction(sum, Float64),
    hist         AggregateFunction(sumMap, Map(Int32, UInt64))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(window_start)
ORDER BY (metric, model, endpoint, team, window_start)
TTL window_start + INTERVAL 30 DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS metrics_5m_mv TO metrics_5m AS
SELECT metric, model, endpoint, team, toStartOfInterval(window_start, INTERVAL 5 MINUTE) AS window_start,
       sum(count) AS count, sum(sum) AS sum, min(min) AS min, max(max) AS max,
       sum(sumsq) AS sumsq, sumMapState(hist) AS hist
FROM metrics_1m
GROUP BY metric, model, endpoint, team, window_start;

CREATE TABLE IF NOT EXISTS metrics_15m
(
    metric       LowCardinality(String),
    model        LowCardinality(String),
    endpoint     LowCardinality(String),
    team         LowCardinality(String),
    window_start DateTime('UTC'),
    count        SimpleAggregateFunction(sum, UInt64),
    sum          SimpleAggregateFunction(sum, Float64),
    min          SimpleAggregateFunction(min, Float64),
    max          SimpleAggregateFunction(max, Float64),
    sumsq        SimpleAggregateFunction(sum, Float64),
    hist         AggregateFunction(sumMap, Map(Int32, UInt64))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(window_start)
ORDER BY (metric, model, endpoint, team, window_start)
TTL window_start + INTERVAL 30 DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS metrics_15m_mv TO metrics_15m AS
SELECT metric, model, endpoint, team, toStartOfInterval(window_start, INTERVAL 15 MINUTE) AS window_start,
       sum(count) AS count, sum(sum) AS sum, min(min) AS min, max(max) AS max,
       sum(sumsq) AS sumsq, sumMapState(hist) AS hist
FROM metrics_1m
GROUP BY metric, model, endpoint, team, window_start;

CREATE TABLE IF NOT EXISTS metrics_1h
(
    metric       LowCardinality(String),
    model        LowCardinality(String),
    endpoint     LowCardinality(String),
    team         LowCardinality(String),
    window_start DateTime('UTC'),
    count        SimpleAggregateFunction(sum, UInt64),
    sum          SimpleAggregateFunction(sum, Float64),
    min          SimpleAggregateFunction(min, Float64),
    max          SimpleAggregateFunction(max, Float64),
    sumsq        SimpleAggregateFunction(sum, Float64),
    hist         AggregateFunction(sumMap, Map(Int32, UInt64))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(window_start)
ORDER BY (metric, model, endpoint, team, window_start)
TTL window_start + INTERVAL 90 DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS metrics_1h_mv TO metrics_1h AS
SELECT metric, model, endpoint, team, toStartOfHour(window_start) AS window_start,
       sum(count) AS count, sum(sum) AS sum, min(min) AS min, max(max) AS max,
       sum(sumsq) AS sumsq, sumMapState(hist) AS hist
FROM metrics_1m
GROUP BY metric, model, endpoint, team, window_start;

CREATE TABLE IF NOT EXISTS metrics_6h
(
    metric       LowCardinality(String),
    model        LowCardinality(String),
    endpoint     LowCardinality(String),
    team         LowCardinality(String),
    window_start DateTime('UTC'),
    count        SimpleAggregateFunction(sum, UInt64),
    sum          SimpleAggregateFunction(sum, Float64),
    min          SimpleAggregateFunction(min, Float64),
    max          SimpleAggregateFunction(max, Float64),
    sumsq        SimpleAggregateFunction(sum, Float64),
    hist         AggregateFunction(sumMap, Map(Int32, UInt64))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(window_start)
ORDER BY (metric, model, endpoint, team, window_start)
TTL window_start + INTERVAL 180 DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS metrics_6h_mv TO metrics_6h AS
SELECT metric, model, endpoint, team, toStartOfInterval(window_start, INTERVAL 6 HOUR) AS window_start,
       sum(count) AS count, sum(sum) AS sum, min(min) AS min, max(max) AS max,
       sum(sumsq) AS sumsq, sumMapState(hist) AS hist
FROM metrics_1m
GROUP BY metric, model, endpoint, team, window_start;

CREATE TABLE IF NOT EXISTS metrics_1d
(
    metric       LowCardinality(String),
    model        LowCardinality(String),
    endpoint     LowCardinality(String),
    team         LowCardinality(String),
    window_start DateTime('UTC'),
    count        SimpleAggregateFunction(sum, UInt64),
    sum          SimpleAggregateFunction(sum, Float64),
    min          SimpleAggregateFunction(min, Float64),
    max          SimpleAggregateFunction(max, Float64),
    sumsq        SimpleAggregateFunction(sum, Float64),
    hist         AggregateFunction(sumMap, Map(Int32, UInt64))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(window_start)
ORDER BY (metric, model, endpoint, team, window_start)
TTL window_start + INTERVAL 365 DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS metrics_1d_mv TO metrics_1d AS
SELECT metric, model, endpoint, team, toStartOfDay(window_start) AS window_start,
       sum(count) AS count, sum(sum) AS sum, min(min) AS min, max(max) AS max,
       sum(sumsq) AS sumsq, sumMapState(hist) AS hist
FROM metrics_1m
GROUP BY metric, model, endpoint, team, window_start;

CREATE TABLE IF NOT EXISTS metrics_1w
(
    metric       LowCardinality(String),
    model        LowCardinality(String),
    endpoint     LowCardinality(String),
    team         LowCardinality(String),
    window_start DateTime('UTC'),
    count        SimpleAggregateFunction(sum, UInt64),
    sum          SimpleAggregateFunction(sum, Float64),
    min          SimpleAggregateFunction(min, Float64),
    max          SimpleAggregateFunction(max, Float64),
    sumsq        SimpleAggregateFunction(sum, Float64),
    hist         AggregateFunction(sumMap, Map(Int32, UInt64))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(window_start)
ORDER BY (metric, model, endpoint, team, window_start)
TTL window_start + INTERVAL 730 DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS metrics_1w_mv TO metrics_1w AS
SELECT metric, model, endpoint, team, toStartOfWeek(window_start, 1) AS window_start,
       sum(count) AS count, sum(sum) AS sum, min(min) AS min, max(max) AS max,
       sum(sumsq) AS sumsq, sumMapState(hist) AS hist
FROM metrics_1m
GROUP BY metric, model, endpoint, team, window_start;

CREATE TABLE IF NOT EXISTS metrics_1mo
(
    metric       LowCardinality(String),
    model        LowCardinality(String),
    endpoint     LowCardinality(String),
    team         LowCardinality(String),
    window_start DateTime('UTC'),
    count        SimpleAggregateFunction(sum, UInt64),
    sum          SimpleAggregateFunction(sum, Float64),
    min          SimpleAggregateFunction(min, Float64),
    max          SimpleAggregateFunction(max, Float64),
    sumsq        SimpleAggregateFunction(sum, Float64),
    hist         AggregateFunction(sumMap, Map(Int32, UInt64))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(window_start)
ORDER BY (metric, model, endpoint, team, window_start)
TTL window_start + INTERVAL 1825 DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS metrics_1mo_mv TO metrics_1mo AS
SELECT metric, model, endpoint, team, toStartOfMonth(window_start) AS window_start,
       sum(count) AS count, sum(sum) AS sum, min(min) AS min, max(max) AS max,
       sum(sumsq) AS sumsq, sumMapState(hist) AS hist
FROM metrics_1m
GROUP BY metric, model, endpoint, team, window_start;
