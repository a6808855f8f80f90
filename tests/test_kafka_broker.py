"""The local Kafka broker really behaves like Kafka: committed offsets survive a consumer.

The hub's "nothing is lost" promise rests on committed consumer-group offsets, so this is
checked against the real broker (scripts/kafka_broker.py), not a mock.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import kafka_broker  # scripts/, put on sys.path by conftest

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[1]
Record = tuple[int, int, bytes]  # partition, offset, value
N_MESSAGES = 300
PARTITIONS = 2
# Offsets the first consumer commits midway, per partition (each has N_MESSAGES / 2).
COMMIT_AT = {0: 60, 1: 95}


def _create_topic(bootstrap: str, partitions: int) -> str:
    topic = f"test-offsets-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)],
                                  operation_timeout=30)
    futures[topic].result(timeout=30)
    return topic


def _produce(bootstrap: str, topic: str, n: int, partitions: int) -> None:
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            errors.append(err)

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(n):
        producer.produce(topic, value=f"m{i}".encode(), partition=i % partitions, on_delivery=on_delivery)
    assert producer.flush(30) == 0, "messages still undelivered after 30 s"
    assert not errors, f"delivery failed: {errors[0]}"


def _consumer(bootstrap: str, group: str) -> Consumer:
    return Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,  # only the explicit synchronous commit may move the group
        "auto.offset.reset": "earliest",
    })


def _take(consumer: Consumer, count: int, timeout_s: float = 30.0,
          done: Callable[[list[Record]], bool] | None = None) -> list[Record]:
    """(partition, offset, value) records until `count` arrived (or `done` says so), else fail."""
    got: list[Record] = []
    deadline = time.monotonic() + timeout_s
    while not (done(got) if done else len(got) >= count):
        if time.monotonic() > deadline:
            pytest.fail(f"consumed {len(got)} messages in {timeout_s:.0f}s, expected more")
        for msg in consumer.consume(num_messages=max(count - len(got), 1), timeout=0.5):
            if msg.error() is not None:
                pytest.fail(f"consumer error: {msg.error()}")
            got.append((msg.partition(), msg.offset(), msg.value()))
    return got


def test_new_consumer_in_group_resumes_exactly_at_committed_offsets(kafka_bootstrap: str) -> None:
    topic = _create_topic(kafka_bootstrap, PARTITIONS)
    _produce(kafka_bootstrap, topic, N_MESSAGES, PARTITIONS)
    group = f"g-{uuid.uuid4().hex[:10]}"

    first = _consumer(kafka_bootstrap, group)
    first.subscribe([topic])

    def past_commit_points(got: list[Record]) -> bool:
        return all(any(p == part and off >= at for p, off, _ in got) for part, at in COMMIT_AT.items())

    # Consume beyond the commit points, then commit only up to them (as the hub commits the
    # offsets of durable results, not the consumer's position): the rest must come again.
    first_seen = _take(first, N_MESSAGES, done=past_commit_points)
    offsets = [TopicPartition(topic, p, at) for p, at in COMMIT_AT.items()]
    result = first.commit(offsets=offsets, asynchronous=False)
    first.close()
    assert {tp.partition: tp.offset for tp in result} == COMMIT_AT
    assert all(tp.error is None for tp in result), result

    second = _consumer(kafka_bootstrap, group)
    stored = second.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
    assert {tp.partition: tp.offset for tp in stored} == COMMIT_AT, "the broker did not keep the commit"
    second.subscribe([topic])
    remaining = N_MESSAGES - sum(COMMIT_AT.values())
    after = _take(second, remaining)
    second.close()

    first_offset: dict[int, int] = {}
    for partition, offset, _ in after:
        first_offset.setdefault(partition, offset)
    assert first_offset == COMMIT_AT, "second consumer did not resume at the committed offsets"
    assert all(off >= COMMIT_AT[p] for p, off, _ in after), "a committed message was redelivered"
    assert len({(p, off) for p, off, _ in after}) == remaining, "a message was delivered twice"
    expected_after = {f"m{i}".encode() for i in range(N_MESSAGES) if i // PARTITIONS >= COMMIT_AT[i % PARTITIONS]}
    assert {v for *_, v in after} == expected_after
    redelivered = {(p, off) for p, off, _ in first_seen if off >= COMMIT_AT[p]}
    assert redelivered and redelivered <= {(p, off) for p, off, _ in after}


def test_cli_start_prints_bootstrap_last_and_stop_ends_broker(tmp_path: Path) -> None:
    script = ROOT / "scripts" / "kafka" / "kafka"
    res = subprocess.run([str(script), "start", str(tmp_path / "k")], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    bootstrap = res.stdout.strip().splitlines()[-1]
    try:
        assert bootstrap == (tmp_path / "k" / "bootstrap").read_text().strip()
        assert bootstrap.startswith("127.0.0.1:")
        md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
        assert md.brokers
    finally:
        stop = subprocess.run([str(script), "stop", str(tmp_path / "k")], capture_output=True, text=True,
                              timeout=60)
    assert stop.returncode == 0, stop.stderr
    assert not kafka_broker.is_running(kafka_broker.broker_in(tmp_path / "k"))


def test_cli_reports_missing_java_in_one_line(tmp_path: Path) -> None:
    script = ROOT / "scripts" / "kafka" / "kafka"
    env = {**os.environ, "JAVA": str(tmp_path / "no-such-java")}
    res = subprocess.run([str(script), "start", str(tmp_path / "k")], capture_output=True, text=True,
                         env=env, timeout=120)
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "JAVA=" in lines[0] and "Traceback" not in res.stderr, res.stderr


def test_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    """1 in 64 random ids does ("-..." base64url), and StorageTool then reads it as an option."""
    dash_first = uuid.UUID(bytes=b"\xf8" + bytes(15))
    drawn = iter([dash_first, uuid.UUID(int=7)])
    monkeypatch.setattr(kafka_broker.uuid, "uuid4", lambda: next(drawn))
    cid = kafka_broker.new_cluster_id()
    assert not cid.startswith("-") and cid == "AAAAAAAAAAAAAAAAAAAABw"
