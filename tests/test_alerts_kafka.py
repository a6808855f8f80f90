"""Notifications across a crash, on the real broker and a ClickHouse server: the hub is SIGKILLed
right after a budget alert's webhook call was recorded as sent and before any snapshot, so the
restart replays the input and re-fires the alert; the webhook must still get it once, and the
resolution after the restart once."""
from __future__ import annotations

import time
import uuid

import orjson
import pytest
from confluent_kafka import Consumer

from tests.helpers import HubProcess, http_settings, produce, query, topic_env, wait_for
from tests.webhook_server import WebhookServer

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
MIN = 60_000
DAY = 86_400_000
DAY_A = (int(time.time() * 1000) // DAY - 2) * DAY
T0 = DAY_A + 10 * 3_600_000

CONFIG = """
[[budgets]]
name = "search-day"
scope = "team=search"
period = "day"
amount_usd = 7.0

[[alerts.rules]]
name = "search-budget"
kind = "budget"

[[alerts.channels]]
name = "slack"
format = "slack"
url_env = "TEST_SLACK_URL"
"""


def calls(first: int, start_ms: int, minutes: int, usd: float = 0.01) -> list[bytes]:
    """30 calls a minute; then one costless call 3 minutes later, which closes those minutes."""
    out = [orjson.dumps({"event_type": "telemetry.request", "event_id": f"k-{first + i}", "event_time": start_ms + i * 2000,
                         "source": "telemetry", "tags": {"team": "search"},
                         "payload": {"model": "gpt-4o", "latency_ms": 300.0, "cost_usd": usd}})
           for i in range(minutes * 30)]
    return out + [orjson.dumps({"event_type": "telemetry.request", "event_id": f"k-{first}-end",
                                "event_time": start_ms + (minutes + 3) * MIN, "source": "telemetry",
                                "tags": {"team": "search"}, "payload": {"model": "gpt-4o", "latency_ms": 300.0,
                                                                         "cost_usd": 0.0}})]


def test_a_crash_after_sending_neither_loses_nor_repeats_a_notification(kafka_bootstrap, tmp_path, clickhouse_server):
    env = topic_env(kafka_bootstrap)
    server = clickhouse_server.start()
    store = http_settings(server.port)
    (tmp_path / "hub.toml").write_text(CONFIG)
    topic = env["HUB_KAFKA__TOPICS__TELEMETRY"]
    produce(kafka_bootstrap, topic, calls(0, T0, 20))  # $6.00 of $7.00: 80% crossed in minute 18
    with WebhookServer() as hooks:
        args = ["--clickhouse", f"http://127.0.0.1:{server.port}", "--config", str(tmp_path / "hub.toml"),
                "--recovery-dir", str(tmp_path / "recovery")]
        # No snapshot during the test: a restart replays the topic from the start.
        run_env = {**env, "TEST_SLACK_URL": hooks.url("/slack"), "HUB_RECOVERY__SNAPSHOT_INTERVAL_S": "3600",
                   "HUB_WINDOWS__IDLE_CLOSE_S": "3600"}
        hub = HubProcess(args, run_env, tmp_path / "hub.log").start()
        try:
            wait_for(lambda: hooks.delivered("/slack"), 120, "the budget alert's webhook call")
            wait_for(lambda: query(store, "SELECT count() FROM notifications FINAL WHERE status = 'sent'") == [(1,)],
                     30, "the call recorded as sent")
            hub.kill()
            produce(kafka_bootstrap, topic, calls(10_000, DAY_A + DAY + 9 * 3_600_000, 2))  # the next day
            hub = HubProcess(args, run_env, tmp_path / "hub.log").start()
            wait_for(lambda: len(hooks.delivered("/slack")) >= 2, 120, "the resolution's webhook call")
            wait_for(lambda: query(store, "SELECT count() FROM notifications FINAL WHERE status = 'sent'") == [(2,)],
                     30, "both calls recorded as sent")
        finally:
            hub.stop()
        texts = [c.body["text"].split("]")[0] for c in hooks.requests("/slack")]
        keys = [c.headers["Idempotency-Key"] for c in hooks.requests("/slack")]
    log = (tmp_path / "hub.log").read_text()
    assert texts == ["[FIRING", "[RESOLVED"] and len(set(keys)) == 2, log[-3000:]
    assert "1 notification(s) re-emitted by a replay were already recorded" in log  # the replay did re-fire it
    [(alert, status, starts, ends)] = query(store, "SELECT id, status, toUnixTimestamp64Milli(starts_at), "
                                                   "toUnixTimestamp64Milli(ends_at) FROM alerts_current")
    assert (status, starts, ends) == ("resolved", T0 + 18 * MIN, DAY_A + DAY)
    # The alerts topic is at least once (the replay put the firing record there again): same id and version.
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": uuid.uuid4().hex,
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([env["HUB_KAFKA__TOPICS__ALERTS"]])
    seen: set[tuple[str, int, str]] = set()

    def both_versions() -> bool:
        m = consumer.poll(0.2)
        if m is not None and m.error() is None:
            record = orjson.loads(m.value())
            if record["kind"] == "alert":
                seen.add((record["alert"]["id"], record["alert"]["version"], record["alert"]["event"]))
        return len(seen) >= 2

    wait_for(both_versions, 30, "the alert's versions on the alerts topic")
    consumer.close()
    assert seen == {(alert, 1, "firing"), (alert, 2, "resolved")}
