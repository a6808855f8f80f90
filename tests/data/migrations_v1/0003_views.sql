-- Query surface: hub_quantile(hist, q) turns a merged log-bucket histogram into a percentile
-- (operators/sketch.py holds the same constants), and metrics_<window>_stats views give
-- count/sum/min/max/mean/stddev/p50/p95/p99 per series for every window size.

CREATE FUNCTION IF NOT EXISTS hub_bucket_value AS (k) ->
    if(k = -2147483648, 0., 2. * pow((1. + 0.01) / (1. - 0.01), k) / ((1. + 0.01) / (1. - 0.01) + 1.));

CREATE FUNCTION IF NOT EXISTS hub_quantile AS (h, q) ->
    if(empty(h), nan,
       hub_bucket_value(arrayFirst((k, c) -> c > floor(q * (arraySum(mapValues(h)) - 1)),
                                   mapKeys(mapSort(h)), arrayCumSum(mapValues(mapSort(h))))));

CREATE VIEW IF NOT EXISTS metrics_1m_stats AS
SELECT metric, model, endpoint, team, window_start,
       sum(count) AS count, sum(sum) AS sum, min(min) AS min, max(max) AS max,
       sum / count AS mean, sqrt(greatest(sum(sumsq) / count - mean * mean, 0)) AS stddev,
       sumMap(hist) AS histogram,
       hub_quantile(histogram, 0.5) AS p50, hub_quantile(histogram, 0.95) AS p95, hub_quantile(histogram, 0.99) AS p99
FROM metrics_1m FINAL
GROUP BY metric, model, endpoint, team, window_start;

CREATE VIEW IF NOT EXISTS metrics_5m_stats AS
SELECT metric, model, endpoint, team, window_start,
       sum(count) AS count, sum(sum) AS sum, min(min) AS min, max(max) AS max,
       sum / count AS mean, sqrt(greatest(sum(sumsq) / count - mean * mean, 0)) AS stddev,
       sumMapMerge(hist) AS histogram,
       hub_quantile(histogram, 0.5) AS p50, hub_quantile(histogram, 0.95) AS p95, hub_quantile(histogram, 0.99) AS p99
FROM metrics_5m
GROUP BY metric, model, endpoint, team, window_start;

CREATE VIEW IF NOT EXISTS metrics_15m_stats AS
SELECT metric, model, endpoint, team, window_start,
       sum(count) AS count, sum(sum) AS sum, min(min) AS min, max(max) AS max,
       sum / count AS mean, sqrt(greatest(sum(sumsq) / count - mean * mean, 0)) AS stddev,
       sumMapMerge(hist) AS histogram,
       hub_quantile(histogram, 0.5) AS p50, hub_quantile(histogram, 0.95) AS p95, hub_quantile(histogram, 0.99) AS p99
FROM metrics_15m
GROUP BY metric, model, endpoint, team, window_start;

CREATE VIEW IF NOT EXISTS metrics_1h_stats AS
SELECT metric, model, endpoint, team, window_start,
       sum(count) AS count, sum(sum) AS sum, min(min) AS min, max(max) AS max,
       sum / count AS mean, sqrt(greatest(sum(sumsq) / count - mean * mean, 0)) AS stddev,
       sumMapMerge(hist) AS histogram,
       hub_quantile(histogram, 0.5) AS p50, hub_quantile(histogram, 0.95) AS p95, hub_quantile(histogram, 0.99) AS p99
FROM metrics_1h
GROUP BY metric, model, endpoint, team, window_start;

CREATE VIEW IF NOT EXISTS metrics_6h_stats AS
SELECT metric, model, endpoint, team, window_start,
       sum(count) AS count, sum(sum) AS sum, min(min) AS min, max(max) AS max,
       sum / count AS mean, sqrt(greatest(sum(sumsq) / count - mean * mean, 0)) AS stddev,
       sumMapMerge(hist) AS histogram,
       hub_quantile(histogram, 0.5) AS p50, hub_quantile(histogram, 0.95) AS p95, hub_quantile(histogram, 0.99) AS p99
FROM metrics_6h
GROUP BY metric, model, endpoint, team, window_start;

CREATE VIEW IF NOT EXISTS metrics_1d_stats AS
SELECT metric, model, endpoint, team, window_start,
       sum(count) AS count, sum(sum) AS sum, min(min) AS min, max(max) AS max,
       sum / count AS mean, sqrt(greatest(sum(sumsq) / count - mean * mean, 0)) AS stddev,
       sumMapMerge(hist) AS histogram,
       hub_quantile(histogram, 0.5) AS p50, hub_quantile(histogram, 0.95) AS p95, hub_quantile(histogram, 0.99) AS p99
FROM metrics_1d
GROUP BY metric, model, endpoint, team, window_start;

CREATE VIEW IF NOT EXISTS metrics_1w_stats AS
SELECT metric, model, endpoint, team, window_start,
       sum(count) AS count, sum(sum) AS sum, min(min) AS min, max(max) AS max,
       sum / count AS mean, sqrt(greatest(sum(sumsq) / count - mean * mean, 0)) AS stddev,
       sumMapMerge(hist) AS histogram,
       hub_quantile(histogram, 0.5) AS p50, hub_quantile(histogram, 0.95) AS p95, hub_quantile(histogram, 0.99) AS p99
FROM metrics_1w
GROUP BY metric, model, endpoint, team, window_start;

CREATE VIEW IF NOT EXISTS metrics_1mo_stats AS
SELECT metric, model, endpoint, team, window_start,
       sum(count) AS count, sum(sum) AS sum, min(min) AS min, max(max) AS max,
       sum / count AS mean, sqrt(greatest(sum(sumsq) / count - mean * mean, 0)) AS stddev,
       sumMapMerge(hist) AS histogram,
       hub_quantile(histogram, 0.5) AS p50, hub_quantile(histogram, 0.95) AS p95, hub_quantile(histogram, 0.99) AS p99
FROM metrics_1mo
GROUP BY metric, model, endpoint, team, window_start;

CREATE VIEW IF NOT EXISTS composite_1m AS
SELECT model, window_start,
       sumIf(count, metric = 'requests') AS requests,
       sumIf(sum, metric = 'errors') AS errors,
       errors / nullIf(requests, 0) AS error_rate,
       sumIf(sum, metric = 'cost_usd') AS cost_usd,
       sumIf(sum, metric = 'total_tokens') AS tokens,
       cost_usd / nullIf(requests, 0) AS cost_per_request,
       cost_usd * 1000 / nullIf(tokens, 0) AS cost_per_1k_tokens,
       requests / 60 AS requests_per_s,
       tokens / 60 AS tokens_per_s,
       (requests - errors) / 60 AS error_adjusted_throughput,
       sumIf(count, metric = 'compliance_checks') AS compliance_checks,
       sumIf(sum, metric = 'compliance_checks') / nullIf(compliance_checks, 0) AS compliance_rate
FROM metrics_1m_stats
GROUP BY model, window_start;

CREATE VIEW IF NOT EXISTS composite_5m AS
SELECT model, window_start,
       sumIf(count, metric = 'requests') AS requests,
       sumIf(sum, metric = 'errors') AS errors,
       errors / nullIf(requests, 0) AS error_rate,
       sumIf(sum, metric = 'cost_usd') AS cost_usd,
       sumIf(sum, metric = 'total_tokens') AS tokens,
       cost_usd / nullIf(requests, 0) AS cost_per_request,
       cost_usd * 1000 / nullIf(tokens, 0) AS cost_per_1k_tokens,
       requests / 300 AS requests_per_s,
       tokens / 300 AS tokens_per_s,
       (requests - errors) / 300 AS error_adjusted_throughput,
       sumIf(count, metric = 'compliance_checks') AS compliance_checks,
       sumIf(sum, metric = 'compliance_checks') / nullIf(compliance_checks, 0) AS compliance_rate
FROM metrics_5m_stats
GROUP BY model, window_start;

CREATE VIEW IF NOT EXISTS composite_15m AS
SELECT model, window_start,
       sumIf(count, metric = 'requests') AS requests,
       sumIf(sum, metric = 'errors') AS errors,
       errors / nullIf(requests, 0) AS error_rate,
       sumIf(sum, metric = 'cost_usd') AS cost_usd,
       sumIf(sum, metric = 'total_tokens') AS tokens,
       cost_usd / nullIf(requests, 0) AS cost_per_request,
       cost_usd * 1000 / nullIf(tokens, 0) AS cost_per_1k_tokens,
       requests / 900 AS requests_per_s,
       tokens / 900 AS tokens_per_s,
       (requests - errors) / 900 AS error_adjusted_throughput,
       sumIf(count, metric = 'compliance_checks') AS compliance_checks,
       sumIf(sum, metric = 'compliance_checks') / nullIf(compliance_checks, 0) AS compliance_rate
FROM metrics_15m_stats
GROUP BY model, window_start;

CREATE VIEW IF NOT EXISTS composite_1h AS
SELECT model, window_start,
       sumIf(count, metric = 'requests') AS requests,
       sumIf(sum, metric = 'errors') AS errors,
       errors / nullIf(requests, 0) AS error_rate,
       sumIf(sum, metric = 'cost_usd') AS cost_usd,
       sumIf(sum, metric = 'total_tokens') AS tokens,
       cost_usd / nullIf(requests, 0) AS cost_per_request,
       cost_usd * 1000 / nullIf(tokens, 0) AS cost_per_1k_tokens,
       requests / 3600 AS requests_per_s,
       tokens / 3600 AS tokens_per_s,
       (requests - errors) / 3600 AS error_adjusted_throughput,
       sumIf(count, metric = 'compliance_checks') AS compliance_checks,
       sumIf(sum, metric = 'compliance_checks') / nullIf(compliance_checks, 0) AS compliance_rate
FROM metrics_1h_stats
GROUP BY model, window_start;

CREATE VIEW IF NOT EXISTS composite_6h AS
SELECT model, window_start,
       sumIf(count, metric = 'requests') AS requests,
       sumIf(sum, metric = 'errors') AS errors,
       errors / nullIf(requests, 0) AS error_rate,
       sumIf(sum, metric = 'cost_usd') AS cost_usd,
       sumIf(sum, metric = 'total_tokens') AS tokens,
       cost_usd / nullIf(requests, 0) AS cost_per_request,
       cost_usd * 1000 / nullIf(tokens, 0) AS cost_per_1k_tokens,
       requests / 21600 AS requests_per_s,
       tokens / 21600 AS tokens_per_s,
       (requests - errors) / 21600 AS error_adjusted_throughput,
       sumIf(count, metric = 'compliance_checks') AS compliance_checks,
       sumIf(sum, metric = 'compliance_checks') / nullIf(compliance_checks, 0) AS compliance_rate
FROM metrics_6h_stats
GROUP BY model, window_start;

CREATE VIEW IF NOT EXISTS composite_1d AS
SELECT model, window_start,
       sumIf(count, metric = 'requests') AS requests,
       sumIf(sum, metric = 'errors') AS errors,
       errors / nullIf(requests, 0) AS error_rate,
       sumIf(sum, metric = 'cost_usd') AS cost_usd,
       sumIf(sum, metric = 'total_tokens') AS tokens,
       cost_usd / nullIf(requests, 0) AS cost_per_request,
       cost_usd * 1000 / nullIf(tokens, 0) AS cost_per_1k_tokens,
       requests / 86400 AS requests_per_s,
       tokens / 86400 AS tokens_per_s,
       (requests - errors) / 86400 AS error_adjusted_throughput,
       sumIf(count, metric = 'compliance_checks') AS compliance_checks,
       sumIf(sum, metric = 'compliance_checks') / nullIf(compliance_checks, 0) AS compliance_rate
FROM metrics_1d_stats
GROUP BY model, window_start;

CREATE VIEW IF NOT EXISTS composite_1w AS
SELECT model, window_start,
       sumIf(count, metric = 'requests') AS requests,
       sumIf(sum, metric = 'errors') AS errors,
       errors / nullIf(requests, 0) AS error_rate,
       sumIf(sum, metric = 'cost_usd') AS cost_usd,
       sumIf(sum, metric = 'total_tokens') AS tokens,
       cost_usd / nullIf(requests, 0) AS cost_per_request,
       cost_usd * 1000 / nullIf(tokens, 0) AS cost_per_1k_tokens,
       requests / dateDiff('second', window_start, window_start + INTERVAL 1 WEEK) AS requests_per_s,
       tokens / dateDiff('second', window_start, window_start + INTERVAL 1 WEEK) AS tokens_per_s,
       (requests - errors) / dateDiff('second', window_start, window_start + INTERVAL 1 WEEK) AS error_adjusted_throughput,
       sumIf(count, metric = 'compliance_checks') AS compliance_checks,
       sumIf(sum, metric = 'compliance_checks') / nullIf(compliance_checks, 0) AS compliance_rate
FROM metrics_1w_stats
GROUP BY model, window_start;

CREATE VIEW IF NOT EXISTS composite_1mo AS
SELECT model, window_start,
       sumIf(count, metric = 'requests') AS requests,
       sumIf(sum, metric = 'errors') AS errors,
       errors / nullIf(requests, 0) AS error_rate,
       sumIf(sum, metric = 'cost_usd') AS cost_usd,
       sumIf(sum, metric = 'total_tokens') AS tokens,
       cost_usd / nullIf(requests, 0) AS cost_per_request,
       cost_usd * 1000 / nullIf(tokens, 0) AS cost_per_1k_tokens,
       requests / dateDiff('second', window_start, window_start + INTERVAL 1 MONTH) AS requests_per_s,
       tokens / dateDiff('second', window_start, window_start + INTERVAL 1 MONTH) AS tokens_per_s,
       (requests - errors) / dateDiff('second', window_start, window_start + INTERVAL 1 MONTH) AS error_adjusted_throughput,
       sumIf(count, metric = 'compliance_checks') AS compliance_checks,
       sumIf(sum, metric = 'compliance_checks') / nullIf(compliance_checks, 0) AS compliance_rate
FROM metrics_1mo_stats
GROUP BY model, window_start;

CREATE VIEW IF NOT EXISTS input_quality_hourly AS
SELECT toStartOfHour(ingest_time) AS hour, code AS reason, count() AS inputs
FROM dead_letters FINAL
GROUP BY hour, reason
UNION ALL
SELECT toStartOfHour(detected_at) AS hour, 'late' AS reason, count() AS inputs
FROM late_events FINAL
GROUP BY hour;
