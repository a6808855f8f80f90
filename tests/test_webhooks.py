"""The webhook output against a local HTTP server and a real (embedded) store: the outbox sends
what a crash left pending, never sends a recorded key again, retries what may pass and gives up at
once on what cannot."""
from __future__ import annotations

import time
from contextlib import closing

import pytest

from config.alerts import Channel
from config.settings import ClickHouseSettings, RetentionSettings
from connectors.clickhouse import connect
from connectors.migrations import migrate
from connectors.webhooks import ChannelError, WebhookSink, channel_urls
from schemas.alerts import NOTIFICATION_COLUMNS, Notification, notification_key, notification_row
from tests.helpers import wait_for
from tests.webhook_server import WebhookServer


NOW_MS = int(time.time() * 1000)  # rows older than [retention] alerts_days would be dropped by their TTL


def note(i: int, channel: str = "hook") -> Notification:
    return Notification(key=notification_key(f"alert-{i}", 1, channel), channel=channel, alert_id=f"alert-{i}",
                        alert_version=1, event="firing", created_at_ms=NOW_MS + i,
                        body=b'{"summary": "n%d"}' % i)


def test_channel_urls_come_from_the_environment_and_are_never_shown():
    channels = [Channel(name="ops", url_env="OPS_URL")]
    assert channel_urls(channels, {"OPS_URL": "https://example.test/hook/t0k3n"}) == {"ops": "https://example.test/hook/t0k3n"}
    with pytest.raises(ChannelError, match="OPS_URL is not set"):
        channel_urls(channels, {})
    with pytest.raises(ChannelError) as err:
        channel_urls(channels, {"OPS_URL": "ftp://example.test/t0k3n"})
    assert "t0k3n" not in str(err.value)


def test_outbox_sends_pending_once_and_skips_recorded_keys(tmp_path):
    store = ClickHouseSettings(dsn=f"chdb://{tmp_path}/store")
    with closing(connect(store)) as client:
        migrate(client, RetentionSettings())
        # A crash left one notification pending (recorded, not sent) and one already sent.
        client.insert("notifications", [notification_row(note(1), "pending", 0, "", 0),
                                        notification_row(note(2), "pending", 0, "", 0),
                                        notification_row(note(2), "sent", 1, "", 0)],
                      column_names=list(NOTIFICATION_COLUMNS))
    with WebhookServer(fail_first={"/hook": 1}, refuse={"/gone"}) as hooks:
        channels = [Channel(name="hook", url_env="X", backoff_s=0.01), Channel(name="gone", url_env="Y")]
        sink = WebhookSink(channels, store, urls={"hook": hooks.url("/hook"), "gone": hooks.url("/gone")})
        part = sink.build_part("webhooks", "webhooks", None)
        # The replay after the crash re-emits 1 and 2; 3 is new; 4 is refused for good (HTTP 404).
        part.write_batch([[note(1), note(2), note(3)], [note(3)]])
        part.write_batch([[note(4, channel="gone")]])
        wait_for(lambda: len(hooks.delivered("/hook")) >= 2, 30, "two deliveries")
        part.close()
    assert [c.body["summary"] for c in hooks.delivered("/hook")] == ["n1", "n3"]
    assert [c.status for c in hooks.requests("/gone")] == [404]
    with closing(connect(store)) as client:
        rows = client.query("SELECT alert_id, channel, status, attempts, error FROM notifications FINAL "
                            "ORDER BY alert_id").result_rows
    assert rows == [("alert-1", "hook", "sent", 2, ""), ("alert-2", "hook", "sent", 1, ""),
                    ("alert-3", "hook", "sent", 1, ""), ("alert-4", "gone", "failed", 1, "HTTP 404")]


def test_a_stop_request_does_not_wait_out_a_failing_channel(tmp_path):
    from connectors import shutdown

    store = ClickHouseSettings(dsn=f"chdb://{tmp_path}/store")
    with closing(connect(store)) as client:
        migrate(client, RetentionSettings())
    with WebhookServer(always_fail={"/down"}) as hooks:
        sink = WebhookSink([Channel(name="hook", url_env="X", backoff_s=30, max_attempts=5)], store,
                           urls={"hook": hooks.url("/down")})
        part = sink.build_part("webhooks", "webhooks", None)
        part.write_batch([[note(1), note(2)]])
        wait_for(lambda: hooks.requests("/down"), 30, "the first attempt")
        shutdown.requested.set()  # SIGTERM while it waits 30 s before the next attempt
        try:
            started = time.monotonic()
            part.close()
            assert time.monotonic() - started < 10
        finally:
            shutdown.requested.clear()
    assert len(hooks.requests("/down")) == 1
    with closing(connect(store)) as client:
        rows = client.query("SELECT alert_id, status FROM notifications FINAL ORDER BY alert_id").result_rows
    assert rows == [("alert-1", "pending"), ("alert-2", "pending")]  # sent at the next start
