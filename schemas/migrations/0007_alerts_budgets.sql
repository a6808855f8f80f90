-- Budgets, alerts and their notifications (operators/alerts, connectors/webhooks.py).
-- Every row is keyed by a deterministic id (schemas/alerts.py) and versioned by values a replay
-- reproduces (alert version, the event time of a budget update, a notification's state), so a
-- replay after a crash collapses onto the rows already written: query with FINAL (or argMax).
-- No TTLs here: `hub migrate` sets them from [retention] alerts_days (connectors/migrations.py).

-- One row per alert version (the history): 'firing', then 'renotify' while it holds, then
-- 'resolved'. The current state of each alert is its highest version: view alerts_current.
CREATE TABLE IF NOT EXISTS alerts
(
    id           String,
    version      UInt32,
    rule         LowCardinality(String),
    kind         LowCardinality(String),
    status       LowCardinality(String),
    event        LowCardinality(String),
    severity     LowCardinality(String),
    labels       Map(String, String),
    value        Float64,
    threshold    Float64,
    starts_at    DateTime64(3, 'UTC'),
    ends_at      Nullable(DateTime64(3, 'UTC')),
    updated_at   DateTime64(3, 'UTC'),
    summary      String,
    anomaly_ids  Array(String),
    incident_ids Array(String)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(starts_at)
ORDER BY (id, version);

CREATE VIEW IF NOT EXISTS alerts_current AS
SELECT * FROM alerts FINAL ORDER BY id, version DESC LIMIT 1 BY id;

-- Spend, forecast and % used per budget and period, as of updated_at (event time, minute ends).
CREATE TABLE IF NOT EXISTS budget_status
(
    budget       LowCardinality(String),
    scope        String,
    period       LowCardinality(String),
    period_start DateTime64(3, 'UTC'),
    period_end   DateTime64(3, 'UTC'),
    amount_usd   Float64,
    spend        Float64,
    forecast     Float64,
    pct_used     Float64,
    updated_at   DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated_at)
PARTITION BY toYYYYMM(period_start)
ORDER BY (budget, period_start);

-- The webhook outbox and sent-log: a notification is recorded 'pending' before it is sent and
-- 'sent' (or 'failed', the dead-letter record of a channel that kept failing) after; `rank` makes
-- the final state win. A key recorded here is never sent again, whatever a replay re-emits.
CREATE TABLE IF NOT EXISTS notifications
(
    key           String,
    alert_id      String,
    alert_version UInt32,
    channel       LowCardinality(String),
    event         LowCardinality(String),
    status        LowCardinality(String),
    rank          UInt8,
    attempts      UInt16,
    error         String,
    body          String,
    created_at    DateTime64(3, 'UTC'),
    updated_at    DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(rank)
PARTITION BY toYYYYMM(created_at)
ORDER BY key;
