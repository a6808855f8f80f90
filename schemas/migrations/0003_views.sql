-- @supersedes a0977bc212e42f86d579a647df4704663fc8bbb7568266220874114f509601e3  (first release: the same views written out per window)
-- Query surface: hub_quantile(hist, q) turns a merged log-bucket histogram into a percentile
-- (operators/sketch.py holds the same constants), and metrics_<window>_stats views give
-- count/sum/min/max/mean/stddev/p50/p95/p99 per series for every window size; composite_<window>
-- views the cross-source rates. The `@for window` block is repeated for every window of
-- schemas/rollups.py (1m..1mo).

CREATE FUNCTION IF NOT EXISTS hub_bucket_value AS (k) ->
    if(k = -2147483648, 0., 2. * pow((1. + 0.01) / (1. - 0.01), k) / ((1. + 0.01) / (1. - 0.01) + 1.));

CREATE FUNCTION IF NOT EXISTS hub_quantile AS (h, q) ->
    if(empty(h), nan,
       hub_bucket_value(arrayFirst((k, c) -> c > floor(q * (arraySum(mapValues(h)) - 1)),
                                   mapKeys(mapSort(h)), arrayCumSum(mapValues(mapSort(h))))));

-- @for window
CREATE VIEW IF NOT EXISTS ${table}_stats AS
SELECT metric, model, endpoint, team, window_start,
       sum(count) AS count, sum(sum) AS sum, min(min) AS min, max(max) AS max,
       sum / count AS mean, sqrt(greatest(sum(sumsq) / count - mean * mean, 0)) AS stddev,
       ${hist_merge}(hist) AS histogram,
       hub_quantile(histogram, 0.5) AS p50, hub_quantile(histogram, 0.95) AS p95, hub_quantile(histogram, 0.99) AS p99
FROM ${stats_from}
GROUP BY metric, model, endpoint, team, window_start;

CREATE VIEW IF NOT EXISTS composite_${window} AS
SELECT model, window_start,
       sumIf(count, metric = 'requests') AS requests,
       sumIf(sum, metric = 'errors') AS errors,
       errors / nullIf(requests, 0) AS error_rate,
       sumIf(sum, metric = 'cost_usd') AS cost_usd,
       sumIf(sum, metric = 'total_tokens') AS tokens,
       cost_usd / nullIf(requests, 0) AS cost_per_request,
       cost_usd * 1000 / nullIf(tokens, 0) AS cost_per_1k_tokens,
       requests / ${seconds} AS requests_per_s,
       tokens / ${seconds} AS tokens_per_s,
       (requests - errors) / ${seconds} AS error_adjusted_throughput,
       sumIf(count, metric = 'compliance_checks') AS compliance_checks,
       sumIf(sum, metric = 'compliance_checks') / nullIf(compliance_checks, 0) AS compliance_rate
FROM ${table}_stats
GROUP BY model, window_start;
-- @end

CREATE VIEW IF NOT EXISTS input_quality_hourly AS
SELECT toStartOfHour(ingest_time) AS hour, code AS reason, count() AS inputs
FROM dead_letters FINAL
GROUP BY hour, reason
UNION ALL
SELECT toStartOfHour(detected_at) AS hour, 'late' AS reason, count() AS inputs
FROM late_events FINAL
GROUP BY hour;
