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
