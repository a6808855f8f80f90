"""A Kafka topic as one output of the flow (the dead-letter topic, the alerts topic).

Items are lists of records, one list per flow batch (never one Bytewax item per record: a
poison storm can be millions of dead letters). `write_batch` returns only once every record is
acknowledged by the broker, so a Bytewax snapshot after it never claims input whose records
are still in a buffer; a replay after a crash re-sends them (at least once; consumers key on the
record's ids). A record the broker refuses (too large, topic missing) is counted and reported
once per cause rather than stopping the flow: the same rows are in ClickHouse.
"""
from __future__ import annotations

import sys
from typing import Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from connectors import worker_metrics
from connectors.kafka_health import client_config

# (key, value): the key keeps one series' or one source's records in order on one partition.
Record = tuple[bytes | None, bytes]


class _TopicWriter(StatelessSinkPartition[list[Record]]):
    def __init__(self, conf: dict[str, Any], topic: str) -> None:
        self.producer = Producer(client_config(conf))
        self.topic = topic
        self.reported: set[str] = set()

    def write_batch(self, items: list[list[Record]]) -> None:
        produced = 0
        for records in items:
            for key, value in records:
                self._produce(key, value)
                produced += 1
        if produced:
            self.producer.flush()

    def _produce(self, key: bytes | None, value: bytes) -> None:
        while True:
            try:
                self.producer.produce(self.topic, value, key, on_delivery=self._delivered)
                return
            except BufferError:  # local queue full: let deliveries drain, then retry
                self.producer.poll(0.1)
            except KafkaException as exc:  # refused before sending (e.g. larger than message.max.bytes)
                self._delivered(exc.args[0], None)
                return

    def _delivered(self, err: KafkaError | None, _msg: Message | None) -> None:
        if err is None:
            return
        worker_metrics.PRODUCE_ERRORS.labels(topic=self.topic, code=err.name()).inc()
        if err.name() not in self.reported:
            self.reported.add(err.name())
            print(f"hub: Kafka refused a record for {self.topic} ({err.str()}); counted in "
                  f"hub_kafka_produce_errors_total, the row is still in ClickHouse", file=sys.stderr, flush=True)

    def close(self) -> None:
        self.producer.flush()


class KafkaTopicSink(DynamicSink[list[Record]]):
    def __init__(self, client_config: dict[str, Any], topic: str) -> None:
        self.conf = {"linger.ms": "50", "compression.type": "lz4", **client_config}
        self.topic = topic

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _TopicWriter:
        return _TopicWriter(self.conf, self.topic)
