"""Putting messages on the source topics (`hub produce`): topics checked or created up front,
every delivery accounted for.

A load generator that drops messages silently would make every count downstream a guess, so
each message ends as delivered or failed (by librdkafka's error name), and whatever is still
queued when the final flush gives up is reported as undelivered. The producer is idempotent:
librdkafka's retries can neither duplicate nor reorder a key's messages within a partition.
"""
from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from config.errors import HubError
from connectors.kafka_source import check_broker

# Throughput defaults (DESIGN.md measured ~384k msgs/s with lz4 and big batches here); any
# of them can be overridden through kafka.client_config.
PRODUCER_DEFAULTS = {
    "linger.ms": "20",
    "compression.type": "lz4",
    "batch.num.messages": "10000",
    "queue.buffering.max.messages": "500000",
    "enable.idempotence": "true",
    # A message that cannot be delivered in this long is counted as failed instead of waiting
    # librdkafka's default 5 minutes on a broker that went away.
    "message.timeout.ms": "60000",
    # Errors are counted and reported once by `hub produce`, not logged per retry.
    "log_level": "0",
}


class ProduceError(HubError):
    """Topics could not be prepared, or the producer failed for good."""


def prepare_topics(conf: dict[str, str], topics: list[str], timeout_s: float, partitions: int) -> list[str]:
    """Fail fast if the broker does not answer; create the topics that do not exist yet
    (`partitions` each, the broker's replication factor). Returns the topics created."""
    existing = check_broker(conf, timeout_s)
    missing = sorted({t for t in topics if t not in existing})
    if not missing:
        return []
    admin = AdminClient({**{k: v for k, v in conf.items() if k != "group.id"}, "log_level": "0"})
    futures = admin.create_topics([NewTopic(t, partitions, -1) for t in missing], request_timeout=timeout_s)
    for topic, future in futures.items():
        try:
            future.result(timeout_s)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue  # created meanwhile by someone else: fine
            raise ProduceError(f"topic {topic} does not exist and could not be created: "
                               f"{err.str() if isinstance(err, KafkaError) else exc}") from None
    return missing


class TopicProducer:
    """One librdkafka producer with delivery accounting; `send` never drops a message on a full
    local queue (it waits for deliveries to drain instead)."""

    def __init__(self, client_config: dict[str, str]) -> None:
        conf = {**PRODUCER_DEFAULTS, **{k: v for k, v in client_config.items() if k != "group.id"}}
        self.producer = Producer({**conf, "error_cb": self._error})
        self.sent = 0
        self.bytes = 0
        self.delivered = 0
        self.failed: dict[str, int] = {}
        self.first_failure = ""
        self.broker_error = ""  # the latest client-level error (all brokers down, ...), for progress lines
        self.per_topic: dict[str, int] = {}
        self.undelivered = 0

    def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        self.sent += 1
        self.bytes += len(value)
        self.per_topic[topic] = self.per_topic.get(topic, 0) + 1
        while True:
            try:
                self.producer.produce(topic, value, key, on_delivery=self._delivered)
                break
            except BufferError:  # local queue full: serve delivery reports, then retry
                self.producer.poll(0.05)
            except KafkaException as exc:  # refused before queueing (too large, ...): a failed delivery
                err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
                if err is None or err.fatal():
                    raise
                self._delivered(err, None)
                return

    def poll(self) -> None:
        """Serve delivery reports (call often: they are only counted here)."""
        self.producer.poll(0)

    def queued(self) -> int:
        return len(self.producer)

    def flush(self, timeout_s: float) -> None:
        """Wait for every queued message's fate; what is left after `timeout_s` is undelivered."""
        self.undelivered = self.producer.flush(timeout_s)

    def failures(self) -> int:
        return sum(self.failed.values()) + self.undelivered

    def _delivered(self, err: KafkaError | None, _msg: Message | None) -> None:
        if err is None:
            self.delivered += 1
            return
        self.failed[err.name()] = self.failed.get(err.name(), 0) + 1
        if not self.first_failure:
            self.first_failure = err.str()

    def _error(self, err: KafkaError) -> None:
        if err.fatal():
            raise ProduceError(f"the Kafka producer failed: {err.str()}")
        self.broker_error = err.name()
