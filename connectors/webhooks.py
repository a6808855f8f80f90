"""Webhook channels as one output of the flow: alert notifications POSTed with retries, through a
durable outbox, so a restart neither loses nor repeats one.

Exactly once, as far as HTTP allows: the ClickHouse `notifications` table is both outbox and
sent-log. `write_batch` (on the flow thread, before the epoch that produced the notifications
can be snapshotted) looks their keys up there, drops those already recorded (a replay after a
crash re-emits the same keys: schemas/alerts.py) and records the new ones as `pending`; a thread
per channel then sends them (tenacity: exponential backoff, a bounded number of attempts) and
records `sent`, or `failed` after the last attempt: the dead-letter record, body included. At
start, pending rows left by a crash are sent. So a notification recorded as sent is never sent
again, and one that was pending is sent after the restart. The one gap HTTP leaves: a crash
after the receiver answered 2xx and before `sent` is recorded sends that notification again,
with the same `Idempotency-Key` header (and `idempotency_key` in JSON bodies) for receivers that
deduplicate. Sending happens off the flow thread, so a slow or failing channel never stalls the
flow; `close()` delivers what is queued, except that after a stop request (SIGTERM, Ctrl-C) a
failing channel is not waited out: its notifications stay pending for the next start.
"""
from __future__ import annotations

import os
import queue
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import OperationalError
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, stop_when_event_set, wait_exponential

from config.alerts import Channel
from config.errors import HubError
from config.settings import ClickHouseSettings
from connectors import shutdown, worker_metrics
from connectors.clickhouse import connect, first_line
from schemas.alerts import NOTIFICATION_COLUMNS, Notification, NotificationStatus, notification_row

USER_AGENT = "llm-analytics-hub"


class ChannelError(HubError):
    """A channel's URL is missing or unusable; one line that never shows the URL (it holds a token)."""


class Retryable(Exception):
    """A failure worth another attempt: connection errors, timeouts, 408, 429 and 5xx."""


class Refused(Exception):
    """The receiver refused the request (any other 4xx): retrying would not help."""


class Interrupted(Exception):
    """A stop was requested while waiting to try again."""


def _pause(seconds: float) -> None:
    """Backoff that a stop request (SIGTERM, Ctrl-C) cuts short: no further attempt is made."""
    if shutdown.requested.wait(seconds):
        raise Interrupted("stopping")


def channel_urls(channels: list[Channel], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Channel name -> URL from the environment variable each names; checked at start."""
    env = os.environ if environ is None else environ
    urls = {}
    for c in channels:
        url = env.get(c.url_env, "")
        if not url:
            raise ChannelError(f"alerts channel {c.name!r}: environment variable {c.url_env} is not set "
                               "(it must hold the webhook URL)")
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ChannelError(f"alerts channel {c.name!r}: {c.url_env} does not hold an http(s) URL")
        urls[c.name] = url
    return urls


def post(url: str, body: bytes, key: str, timeout_s: float) -> None:
    """One POST; raises Retryable or Refused (never with the URL in the message)."""
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "Idempotency-Key": key, "User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        if exc.code in (408, 429) or exc.code >= 500:
            raise Retryable(f"HTTP {exc.code}") from None
        raise Refused(f"HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise Retryable(f"{type(reason).__name__}: {reason}") from None


def _store_retry(action) -> Any:
    """Store writes survive an outage (connection errors are retried until it is back)."""
    for attempt in Retrying(retry=retry_if_exception_type(OperationalError),
                            wait=wait_exponential(multiplier=0.2, max=10), reraise=True):
        with attempt:
            return action()
    return None


def _record(client: Client, n: Notification, status: NotificationStatus, attempts: int = 0, error: str = "") -> None:
    row = notification_row(n, status, attempts, error, int(time.time() * 1000))
    _store_retry(lambda: client.insert("notifications", [row], column_names=list(NOTIFICATION_COLUMNS)))


class _Sender:
    """One channel's delivery thread: attempts with backoff, then the outcome recorded."""

    def __init__(self, channel: Channel, url: str, store: ClickHouseSettings) -> None:
        self.channel, self.url = channel, url
        self.client = connect(store)
        self.queue: queue.Queue[Notification | None] = queue.Queue()
        self.failing = False
        self.thread = threading.Thread(target=self._run, name=f"webhook-{channel.name}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (n := self.queue.get()) is not None:
            if shutdown.requested.is_set() and self.failing:
                continue  # stopping: not waiting out a failing channel; it stays pending for the next start
            try:
                attempts, error = self.deliver(n)
                if error is not None and shutdown.requested.is_set():
                    continue
                status: NotificationStatus = "sent" if error is None else "failed"
                _record(self.client, n, status, attempts, error or "")
            except Exception as exc:  # the thread must go on with the next one; this one stays pending
                print(f"hub: webhook channel {self.channel.name}: {first_line(exc)}; the notification stays pending "
                      "and is sent at the next start", file=sys.stderr, flush=True)
                continue
            worker_metrics.NOTIFICATIONS.labels(channel=self.channel.name, status=status).inc()
            if error is not None:
                print(f"hub: webhook channel {self.channel.name} failed after {attempts} attempts ({error}); "
                      "recorded in notifications with status 'failed'", file=sys.stderr, flush=True)

    def deliver(self, n: Notification) -> tuple[int, str | None]:
        """Attempts with exponential backoff; a stop request (SIGTERM, Ctrl-C) cuts the waiting short."""
        c = self.channel
        retrying = Retrying(stop=stop_after_attempt(c.max_attempts) | stop_when_event_set(shutdown.requested),
                            retry=retry_if_exception_type(Retryable), sleep=_pause,
                            wait=wait_exponential(multiplier=c.backoff_s, max=c.backoff_max_s), reraise=True)
        try:
            for attempt in retrying:
                with attempt:
                    post(self.url, n.body, n.key, c.timeout_s)
        except (Retryable, Refused, Interrupted) as exc:
            self.failing = True
            return retrying.statistics.get("attempt_number", 1), str(exc)
        self.failing = False
        return retrying.statistics.get("attempt_number", 1), None

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        self.client.close()


class _Notifier(StatefulSinkPartition[list[Notification], None]):
    def __init__(self, channels: list[Channel], urls: dict[str, str], store: ClickHouseSettings) -> None:
        self.client = connect(store)
        self.senders = {c.name: _Sender(c, urls[c.name], store) for c in channels}
        for n in self._pending():
            self._dispatch(n)

    def write_batch(self, items: list[list[Notification]]) -> None:
        batch = list({n.key: n for notes in items for n in notes}.values())
        if not batch:
            return
        known = self._known([n.key for n in batch])
        new = [n for n in batch if n.key not in known]
        for n in batch:
            if n.key in known:
                worker_metrics.NOTIFICATIONS.labels(channel=n.channel, status="duplicate").inc()
        if known:
            print(f"hub: {len(known)} notification(s) re-emitted by a replay were already recorded; not sent again",
                  file=sys.stderr, flush=True)
        if new:
            rows = [notification_row(n, "pending", 0, "", int(time.time() * 1000)) for n in new]
            _store_retry(lambda: self.client.insert("notifications", rows, column_names=list(NOTIFICATION_COLUMNS)))
        for n in new:
            self._dispatch(n)

    def snapshot(self) -> None:
        """Nothing to keep: what was handed over is already durable in the outbox."""
        return None

    def _dispatch(self, n: Notification) -> None:
        sender = self.senders.get(n.channel)
        if sender is None:  # pending from before a restart whose config dropped the channel
            _record(self.client, n, "failed", 0, f"channel {n.channel} is no longer configured")
            return
        sender.queue.put(n)

    def _known(self, keys: list[str]) -> set[str]:
        rows = _store_retry(lambda: self.client.query(
            "SELECT DISTINCT key FROM notifications WHERE key IN {keys:Array(String)}", parameters={"keys": keys}))
        return {k for (k,) in rows.result_rows}

    def _pending(self) -> list[Notification]:
        """Recorded but never finished (a crash in between). Grouped rather than FINAL + WHERE:
        a status filter may be applied before FINAL collapses a key's rows."""
        rows = _store_retry(lambda: self.client.query(
            "SELECT key, any(channel), any(alert_id), any(alert_version), any(event), "
            "toUnixTimestamp64Milli(any(created_at)) AS t, any(body) AS body FROM notifications "
            "GROUP BY key HAVING max(rank) = 0 ORDER BY t, key", column_formats={"body": "bytes"}))
        return [Notification(key=k, channel=ch, alert_id=a, alert_version=v, event=e, created_at_ms=t, body=b)
                for k, ch, a, v, e, t, b in rows.result_rows]

    def close(self) -> None:
        for sender in self.senders.values():
            sender.close()
        self.client.close()


class WebhookSink(FixedPartitionedSink[list[Notification], None]):
    """One partition in the whole cluster, so exactly one outbox reader and one sender per
    channel exist. Items are (key, list of notifications), one per alerting step output."""

    def __init__(self, channels: list[Channel], store: ClickHouseSettings, urls: dict[str, str] | None = None) -> None:
        self.channels = channels
        self.store = store
        self.urls = channel_urls(channels) if urls is None else urls

    def list_parts(self) -> list[str]:
        return ["webhooks"]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _Notifier:
        try:
            return _Notifier(self.channels, self.urls, self.store)
        except OperationalError as exc:
            raise ChannelError(f"webhook outbox: ClickHouse unavailable ({first_line(exc)})") from None
