"""Kafka input as batches: one Bytewax partition per topic-partition, one item per consume().

Bytewax's own KafkaSource emits one item per message, and each item costs ~50 µs per operator
hop here (DESIGN.md), so this source hands the flow lists of messages instead. Offsets live in
the recovery snapshot (resume state = next offset); they are also committed to the consumer
group one snapshot late, when the previous epoch's results are surely durable, so lag shows up
in the usual Kafka tools.
"""
from __future__ import annotations

import re
import time
from collections.abc import Iterable
from typing import Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from config.errors import HubError
from connectors import shutdown, worker_metrics
from connectors.kafka_health import client_config
from schemas.items import RawBatch
from schemas.raw import RawMessage

IDLE_TICK_S = 1.0
# Consumer lag is read from librdkafka's cached watermarks (no broker round trip), this often.
LAG_REFRESH_S = 2.0


class KafkaUnavailable(HubError):
    """The broker did not answer; one line for the operator."""


def check_broker(conf: dict[str, str], timeout_s: float) -> dict[str, int]:
    """Fail fast with a clear error instead of hanging on an unreachable broker. Returns topic -> partitions."""
    # log_level 0: the failure is reported once below, not as librdkafka's per-retry lines; the
    # client's own errors name the cause (refused, TLS, SASL) where list_topics says "transport failure".
    errors: list[KafkaError] = []
    admin = AdminClient({**{k: v for k, v in conf.items() if k != "group.id"}, "log_level": "0", "error_cb": errors.append})
    try:
        meta = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        admin.poll(0)  # serves the error callbacks
        raise KafkaUnavailable(f"Kafka at {conf.get('bootstrap.servers')} did not answer within {timeout_s:g}s: "
                               f"{_cause(errors) or (exc.args[0].str() if exc.args else exc)}") from None
    return {name: len(t.partitions) for name, t in meta.topics.items() if not t.error}


def _cause(errors: list[KafkaError]) -> str:
    """The most telling client error, without the broker-address prefix and the timing suffix."""
    generic = (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT)
    for err in sorted(errors, key=lambda e: e.code() in generic):
        if err.code() != KafkaError._ALL_BROKERS_DOWN:
            return re.sub(r"^\S+/(?:bootstrap|\d+): | \(after \d+ms in state \w+\)$", "", err.str())
    return ""


class _PartitionReader(StatefulSourcePartition[RawBatch, int]):
    def __init__(self, conf: dict[str, Any], topic: str, partition: int, resume: int | None,
                 batch_size: int, starting_offset: str, stop_at_end: bool) -> None:
        self.topic, self.partition = topic, partition
        self.shard = f"{topic}:{partition}"
        self.batch_size = batch_size
        self.starting_offset = starting_offset
        self.lag = worker_metrics.KAFKA_LAG.labels(topic=topic, partition=str(partition))
        self.next_lag = 0.0
        self.consumer = Consumer(conf)
        start = resume if resume is not None else (OFFSET_BEGINNING if starting_offset == "earliest" else OFFSET_END)
        self.consumer.assign([TopicPartition(topic, partition, start)])
        self.next_offset = resume
        self.end: int | None = None
        if stop_at_end:
            low, high = self.consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            self.end = high
            if self.next_offset is None:
                self.next_offset = low if starting_offset == "earliest" else high
        self.last_data = time.monotonic()
        self.last_tick = self.last_data
        self.to_commit: int | None = None
        self.finished = False

    def next_batch(self) -> Iterable[RawBatch]:
        if self.finished or shutdown.requested.is_set():
            # On a stop request open windows stay open: they live on in the recovery snapshot.
            raise StopIteration
        if self.end is not None and self.next_offset is not None and self.next_offset >= self.end:
            self.finished = True
            return [RawBatch(self.shard, [], final=True)]
        msgs = self.consumer.consume(self.batch_size, timeout=0.05)
        messages = []
        append = messages.append
        topic, partition, end = self.topic, self.partition, self.end
        if end is not None and msgs and msgs[-1].error() is None and msgs[-1].offset() < end:
            end = None  # the whole batch is before the end offset: skip the per-message check
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                if err.fatal():
                    raise KafkaException(err)
                worker_metrics.KAFKA_ERRORS.labels(topic=topic, code=err.name()).inc()
                continue
            offset = m.offset()
            if end is not None and offset >= end:
                break
            ts_type, ts = m.timestamp()
            append(RawMessage(m.value() or b"", topic, partition, offset, ts if ts_type else 0))
        now = time.monotonic()
        if now >= self.next_lag:
            self.next_lag = now + LAG_REFRESH_S
            self._refresh_lag()
        if messages:
            self.next_offset = messages[-1].offset + 1
            self.last_data = now
            final = self.end is not None and self.next_offset >= self.end
            self.finished = final
            return [RawBatch(self.shard, messages, final=final)]
        if self.end is None and now - self.last_tick >= IDLE_TICK_S:
            # Tailing only: lets the window step close windows by the wall clock when the topic
            # goes quiet. A bounded run closes them at its end instead, deterministically.
            self.last_tick = now
            return [RawBatch(self.shard, [], idle_ms=int((now - self.last_data) * 1000))]
        return []

    def _refresh_lag(self) -> None:
        """High watermark - position, from the watermarks librdkafka caches from fetch responses
        (microseconds, no request): cheap enough for every few seconds, not per message."""
        try:
            low, high = self.consumer.get_watermark_offsets(TopicPartition(self.topic, self.partition), cached=True)
        except KafkaException:
            return
        if high < 0:
            return  # no fetch response yet
        position = self.next_offset
        if position is None:  # nothing read yet: where the consumer starts
            position = low if self.starting_offset == "earliest" else high
        if position >= 0:
            self.lag.set(max(high - position, 0))

    def snapshot(self) -> int | None:
        if self.to_commit is not None:
            try:
                self.consumer.commit(offsets=[TopicPartition(self.topic, self.partition, self.to_commit)], asynchronous=True)
            except KafkaException:
                pass  # lag visibility only; the snapshot is the source of truth
        self.to_commit = self.next_offset
        return self.next_offset

    def close(self) -> None:
        self.consumer.close()


class KafkaBatchSource(FixedPartitionedSource[RawBatch, int]):
    def __init__(self, conf: dict[str, str], topics: list[str], batch_size: int, starting_offset: str,
                 stop_at_end: bool, connect_timeout_s: float) -> None:
        self.conf = {
            "enable.auto.commit": "false",
            "enable.partition.eof": "false",
            # Deep prefetch: librdkafka's queue decides the consume ceiling here (DESIGN.md).
            "queued.min.messages": "200000",
            "fetch.max.bytes": "52428800",
            **conf,
        }
        self.topics = topics
        self.batch_size = batch_size
        self.starting_offset = starting_offset
        self.stop_at_end = stop_at_end
        self.connect_timeout_s = connect_timeout_s

    def list_parts(self) -> list[str]:
        existing = check_broker(self.conf, self.connect_timeout_s)
        return [f"{t}#{p}" for t in self.topics if t in existing for p in range(existing[t])]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _PartitionReader:
        topic, _, partition = for_part.rpartition("#")
        return _PartitionReader(client_config(self.conf), topic, int(partition), resume_state, self.batch_size,
                                self.starting_offset, self.stop_at_end)
