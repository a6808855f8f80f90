-- @supersedes 8a2dc28e7f32daac60d13b8abd7f56e4922ef95000af1316b1019f6f1d8659a0  (first release: the same objects written out per window, with TTL literals)
-- Windowed metrics. The flow writes one row per (series, 1-minute window, input shard) into
-- metrics_1m, once per closed window; the writer skips (shard, window) pairs already stored, so
-- a replay neither duplicates rows nor double-counts the rollups. Materialized views roll 1m
-- rows up into AggregatingMergeTree tables; histograms merge with sumMap so percentiles stay
-- within 1% for any window.
-- The `@for rollup` block is repeated for every rollup window of schemas/rollups.py (5m..1mo).
-- No TTLs here: `hub migrate` sets every table's TTL from [retention] (connectors/migrations.py).

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
ORDER BY (metric, model, endpoint, team, window_start, shard);

-- @for rollup
CREATE TABLE IF NOT EXISTS ${table}
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
ORDER BY (metric, model, endpoint, team, window_start);

CREATE MATERIALIZED VIEW IF NOT EXISTS ${table}_mv TO ${table} AS
SELECT metric, model, endpoint, team, ${start} AS window_start,
       sum(count) AS count, sum(sum) AS sum, min(min) AS min, max(max) AS max,
       sum(sumsq) AS sumsq, sumMapState(hist) AS hist
FROM metrics_1m
GROUP BY metric, model, endpoint, team, window_start;
-- @end
