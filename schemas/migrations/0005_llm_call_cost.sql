-- LLM calls keep request and response model, cache-write and reasoning tokens, and say where
-- their cost came from. `model` holds the canonical model name ([models] folds); `billed` marks
-- the rows whose cost_usd counts in spend ([cost] count_from), so sum(cost_usd) over billed
-- rows never pays a call twice.

ALTER TABLE events
    ADD COLUMN IF NOT EXISTS request_model LowCardinality(String) AFTER model,
    ADD COLUMN IF NOT EXISTS response_model LowCardinality(String) AFTER request_model,
    ADD COLUMN IF NOT EXISTS cache_write_tokens Nullable(UInt64) AFTER cached_tokens,
    ADD COLUMN IF NOT EXISTS reasoning_tokens Nullable(UInt64) AFTER cache_write_tokens,
    ADD COLUMN IF NOT EXISTS cost_source LowCardinality(String) AFTER cost_usd,
    ADD COLUMN IF NOT EXISTS billed UInt8 AFTER cost_source;

-- Inputs that are not ours (OTLP spans that are not LLM calls), per message and reason, so
-- every input is accounted for: input = events + dead letters + skipped. Keyed by the message,
-- so a replay writes the same rows again.
CREATE TABLE IF NOT EXISTS skipped_inputs
(
    ingest_time DateTime64(3, 'UTC'),
    topic       LowCardinality(String),
    partition   Int32,
    offset      Int64,
    reason      LowCardinality(String),
    inputs      UInt32
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(ingest_time)
ORDER BY (topic, partition, offset, reason);

-- Price changes (cost.price events) kept without a TTL, so a restart prices calls as before: every
-- `hub run` loads them into its price table on top of the price files.
CREATE TABLE IF NOT EXISTS model_prices
(
    effective_from DateTime64(3, 'UTC'),
    provider       LowCardinality(String),
    model          String,
    input          Float64,
    output         Float64,
    cached_input   Nullable(Float64),
    cache_write    Nullable(Float64),
    reasoning      Nullable(Float64),
    event_id       String
)
ENGINE = ReplacingMergeTree
ORDER BY (provider, model, effective_from, event_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS model_prices_mv TO model_prices AS
SELECT event_time AS effective_from, provider, JSONExtractString(payload, 'model') AS model,
       JSONExtractFloat(payload, 'input') AS input, JSONExtractFloat(payload, 'output') AS output,
       JSONExtract(payload, 'cached_input', 'Nullable(Float64)') AS cached_input,
       JSONExtract(payload, 'cache_write', 'Nullable(Float64)') AS cache_write,
       JSONExtract(payload, 'reasoning', 'Nullable(Float64)') AS reasoning,
       event_id
FROM events
WHERE event_type = 'cost.price';
