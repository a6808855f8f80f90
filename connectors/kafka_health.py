"""Kafka availability as the operator sees it: one line when the broker goes away, one when it is back.

librdkafka retries lost connections by itself (reconnect with backoff), so a broker outage needs
no retry code here: the source reads nothing while it lasts and the topic sinks' flush blocks
until their records are acknowledged, so the flow waits and nothing is skipped. What it needs
is quiet: left alone, every client (one consumer per partition, two producers) prints a line
per reconnect attempt, hundreds in a 20 s outage. `client_config` routes their errors and logs
through here instead.

A client's error events arrive only when that client is polled, so an idle producer can report
a connection failure minutes after the fact. Errors therefore only trigger a probe (a metadata
request on a thread of its own): the outage is announced when the probe fails too, and over
when a probe is answered. Other errors (authentication, TLS) are printed once per kind.
"""
from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from connectors import worker_metrics

# The broker cannot be reached; librdkafka keeps trying.
UNREACHABLE = frozenset({KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE})
# librdkafka log facilities whose lines restate an error the error callback reports.
QUIET_FACILITIES = frozenset({"FAIL", "ERROR"})
PROBE_TIMEOUT_S = 2.0
PROBE_INTERVAL_S = 1.0


class _Health:
    """What this process's Kafka clients reported: the probe running during an outage, and the
    kinds of other errors already printed (once each)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.conf: dict[str, Any] = {}
        self.prober: threading.Thread | None = None
        self.reported: set[str] = set()

    def error(self, err: KafkaError) -> None:
        """librdkafka's error callback (runs on the thread that polls the client)."""
        worker_metrics.KAFKA_CLIENT_ERRORS.labels(code=err.name()).inc()
        with self.lock:
            if err.code() in UNREACHABLE:
                if self.prober is None and self.conf:
                    self.prober = threading.Thread(target=self._probe, args=(err.str(),), name="kafka-probe",
                                                   daemon=True)
                    self.prober.start()
            elif err.name() not in self.reported:
                self.reported.add(err.name())
                _say(f"Kafka client error {err.name()}: {err.str()}")

    def _probe(self, cause: str) -> None:
        """Announce an outage only if the broker does not answer now, then wait until it does."""
        admin = AdminClient({**self.conf, "log_level": "0"})
        since: float | None = None
        try:
            while True:
                started = time.monotonic()
                if _answers(admin):
                    break
                if since is None:
                    since = started
                    worker_metrics.KAFKA_AVAILABLE.set(0)
                    _say(f"Kafka unavailable ({cause}); waiting for it to come back, nothing is skipped")
                time.sleep(max(0.0, PROBE_INTERVAL_S - (time.monotonic() - started)))
            if since is not None:
                worker_metrics.KAFKA_AVAILABLE.set(1)
                _say(f"Kafka is reachable again after {time.monotonic() - since:.1f}s; resumed")
        finally:
            with self.lock:
                self.prober = None


def _answers(admin: AdminClient) -> bool:
    """True when the broker answers a metadata request."""
    try:
        return bool(admin.list_topics(timeout=PROBE_TIMEOUT_S).brokers)
    except KafkaException:
        return False


class _LogFilter(logging.Handler):
    """librdkafka log lines: those restating an error are dropped (the error callback has it),
    the rest printed as they come (configuration warnings and the like)."""

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        if args and args[0] in QUIET_FACILITIES:
            return
        _say(f"kafka: {record.getMessage()}")


def _say(line: str) -> None:
    print(f"hub: {line}", file=sys.stderr, flush=True)


HEALTH = _Health()
_LOGGER = logging.getLogger("hub.kafka.client")
_LOGGER.addHandler(_LogFilter())
_LOGGER.setLevel(logging.WARNING)
_LOGGER.propagate = False


def client_config(conf: dict[str, Any]) -> dict[str, Any]:
    """`conf` with the error callback and logger that make an outage one line each way."""
    with HEALTH.lock:
        HEALTH.conf = dict(conf)  # what the probe connects with (it ignores consumer-only keys quietly)
    return {**conf, "error_cb": HEALTH.error, "logger": _LOGGER}
