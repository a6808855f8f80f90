"""100k poison messages mixed with valid ones, through the real broker and `hub run` (issue 14, 3d).

Random bytes, truncated JSON, 10 MB messages, deep nesting, wrong types, NaN/inf, out-of-range
numbers and timestamps in 1970 and 2200 are produced, shuffled among valid events, to a
2-partition topic that accepts 16 MB messages. `hub run --kafka --until-end` in its own process
must store every valid event (and count it in the metrics), dead-letter every bad message with
the code its kind calls for and its exact bytes, and stay within a memory bound. The store is a
ClickHouse server (chdb serving HTTP, in its own process), so the bound is the hub's own memory:
the embedded engine's grows with the tables it holds, which is ClickHouse's business, not the hub's.

What is right for a 10 MB message: Kafka's own limit comes first. A topic with the broker's
default limit (~1 MB) refuses it at the producer, so it never reaches the hub (tested below). A
topic configured for large messages delivers it, and the hub dead-letters it `oversized` (its limit
is `normalization.limits.max_message_bytes`, 4 MB): the row keeps all of its bytes, while the
dead-letter topic, at the default limit, refuses the 13 MB record; the hub counts that and goes on.
"""
from __future__ import annotations

import hashlib
import random
import time
from collections import Counter
from collections.abc import Callable

import msgspec
import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from tests.helpers import http_settings, query, topic_env
from tests.rss import run_hub

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

VALID = 50_000
POISON = 100_000
HUGE = 5  # 10 MB messages among the poison
PARTITIONS = 2
TOPIC_MAX_BYTES = 16 * 1024 * 1024
# Peak RSS of the hub process (README, "Memory"): ~0.15 GB before any input; a poison storm fills
# the consumer prefetch and the writer's queue (64 batches in flight) and levels off near 0.6 GB
# (measured: 0.59 GB here, 0.61 and 0.66 GB with 250k and 600k poison messages).
RSS_BOUND_MB = 800

NOW_MS = int(time.time() * 1000)
enc = msgspec.json.encode


def _hub(event_id: str, event_time: int | None = None, **payload: object) -> dict:
    return {"event_id": event_id, "event_type": "telemetry.request",
            "event_time": NOW_MS - 600_000 if event_time is None else event_time, "source": "telemetry",
            "tags": {"team": "search", "endpoint": "/v1/chat"},
            "payload": {"model": "gpt-4o", "latency_ms": 250.0, "input_tokens": 40, "output_tokens": 12, **payload}}


def _valid(i: int, rng: random.Random) -> bytes:
    """Event times in order over the last half hour (as a live producer sends them): none late."""
    return enc(_hub(f"ok-{i}", NOW_MS - 1_800_000 + i * 1_500_000 // (VALID + POISON),
                    model=rng.choice(["gpt-4o", "gpt-4o-mini"]), latency_ms=float(rng.randrange(50, 5000))))


def _random_bytes(i: int, rng: random.Random) -> bytes:
    # never starting like JSON ('{', whitespace) or OTLP protobuf (0x0A): plain garbage
    return bytes([rng.randrange(0x80, 0x100)]) + rng.randbytes(rng.randrange(0, 400))


def _truncated(i: int, rng: random.Random) -> bytes:
    whole = enc(_hub(f"cut-{i}"))
    return whole[:rng.randrange(1, len(whole))]


def _deep(i: int, rng: random.Random) -> bytes:
    depth = rng.randrange(1_200, 4_000)  # past the decoder's recursion limit
    nest = b"[" * depth + b"1" + b"]" * depth if i % 2 else b'{"a":' * depth + b"1" + b"}" * depth
    return enc(_hub(f"deep-{i}", nested=0)).replace(b'"nested":0', b'"nested":' + nest)


def _wrong_type(i: int, rng: random.Random) -> bytes:
    field, value = rng.choice([("latency_ms", "fast"), ("model", 123), ("input_tokens", "many"), ("output_tokens", [1])])
    return enc(_hub(f"type-{i}", **{field: value}))


def _nan_inf(i: int, rng: random.Random) -> bytes:
    literal = rng.choice([b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999"])
    return enc(_hub(f"nan-{i}")).replace(b'"latency_ms":250.0', b'"latency_ms":' + literal)


def _nan_string(i: int, rng: random.Random) -> bytes:
    return enc(_hub(f"nans-{i}", latency_ms=rng.choice(["NaN", "Infinity", "-inf"])))


def _out_of_range(i: int, rng: random.Random) -> bytes:
    field, value = rng.choice([("input_tokens", 2**64), ("output_tokens", 10**30), ("latency_ms", 1e308),
                               ("latency_ms", 1e16)])
    return enc(_hub(f"range-{i}", **{field: value}))


def _negative(i: int, rng: random.Random) -> bytes:
    return enc(_hub(f"neg-{i}", output_tokens=-rng.randrange(1, 1000)))


def _long_name(i: int, rng: random.Random) -> bytes:
    return enc(_hub(f"name-{i}", model="m" * rng.randrange(300, 5_000)))


def _in_1970(i: int, rng: random.Random) -> bytes:
    return enc(_hub(f"old-{i}", rng.randrange(0, 86_400_000)))


def _in_2200(i: int, rng: random.Random) -> bytes:
    return enc(_hub(f"future-{i}", 7_258_118_400_000 + rng.randrange(0, 86_400_000)))


def _huge(i: int, rng: random.Random) -> bytes:
    return enc(_hub(f"huge-{i}", model="x" * 10_000_000))


# kind -> (the dead-letter code it must get, builder)
KINDS: dict[str, tuple[str, Callable[[int, random.Random], bytes]]] = {
    "random_bytes": ("malformed_json", _random_bytes),
    "truncated_json": ("malformed_json", _truncated),
    "deep_nesting": ("invalid_field", _deep),
    "wrong_type": ("invalid_field", _wrong_type),
    "nan_inf_literal": ("malformed_json", _nan_inf),
    "nan_inf_string": ("invalid_field", _nan_string),
    "out_of_range": ("invalid_field", _out_of_range),
    "negative": ("negative_value", _negative),
    "long_name": ("oversized", _long_name),
    "year_1970": ("impossible_timestamp", _in_1970),
    "year_2200": ("impossible_timestamp", _in_2200),
}


def _messages() -> tuple[list[bytes], dict[int, str]]:
    """Valid and poison messages shuffled; index -> kind for the poison ones."""
    rng = random.Random(14)
    kinds = [k for k in KINDS for _ in range((POISON - HUGE) // len(KINDS))]
    kinds += list(KINDS)[:POISON - HUGE - len(kinds)] + ["huge"] * HUGE
    plan = kinds + ["valid"] * VALID
    rng.shuffle(plan)
    values, kind_of = [], {}
    for i, kind in enumerate(plan):
        if kind == "valid":
            values.append(_valid(i, rng))
            continue
        kind_of[i] = kind
        values.append(_huge(i, rng) if kind == "huge" else KINDS[kind][1](i, rng))
    return values, kind_of


def _produce(bootstrap: str, topic: str, values: list[bytes]) -> dict[int, tuple[int, int]]:
    """Message i -> (partition, offset), round-robin over the partitions, in order per partition."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": "20", "compression.type": "lz4",
                  "message.max.bytes": str(TOPIC_MAX_BYTES)})
    where: dict[int, tuple[int, int]] = {}
    errors: list[KafkaError] = []

    def done(i: int) -> Callable:
        def report(err: KafkaError | None, msg) -> None:  # type: ignore[no-untyped-def]
            if err is not None:
                errors.append(err)
            else:
                where[i] = (msg.partition(), msg.offset())
        return report

    for i, v in enumerate(values):
        while True:
            try:
                p.produce(topic, v, partition=i % PARTITIONS, on_delivery=done(i))
                break
            except BufferError:
                p.poll(0.05)
    assert p.flush(120) == 0 and not errors, errors[:3]
    return where


def _dead_letter_topic(bootstrap: str, topic: str, expected: int, timeout_s: float = 60) -> Counter:
    """Codes of every record on the dead-letter topic (read to its end offset)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"dlq-{topic}", "enable.auto.commit": "false"})
    low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    assert high - low == expected, (low, high, expected)
    c.assign([TopicPartition(topic, 0, low)])
    codes: Counter = Counter()
    deadline = time.monotonic() + timeout_s
    seen = 0
    while seen < high - low:
        assert time.monotonic() < deadline, f"read {seen} of {high - low} dead-letter records"
        for m in c.consume(10_000, timeout=1.0):
            if m.error() is None:
                codes[msgspec.json.decode(m.value())["code"]] += 1
                seen += 1
    c.close()
    return codes


def test_poison_storm_over_kafka_every_input_accounted_and_memory_bounded(kafka_bootstrap: str,  # type: ignore[no-untyped-def]
                                                                          clickhouse_server) -> None:
    env = topic_env(kafka_bootstrap, partitions=PARTITIONS)
    topic = env["HUB_KAFKA__TOPICS__TELEMETRY"]
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    big = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("max.message.bytes", str(TOPIC_MAX_BYTES), incremental_operation=AlterConfigOpType.SET)])
    for f in admin.incremental_alter_configs([big]).values():
        f.result(30)
    values, kind_of = _messages()
    where = _produce(kafka_bootstrap, topic, values)

    server = clickhouse_server()
    settings = http_settings(server.port)
    run = run_hub(["run", "--kafka", kafka_bootstrap, "--until-end", "--clickhouse", settings.dsn], env=env,
                  timeout_s=240)
    assert run.returncode == 0, run.output[-3000:]
    print(f"hub run: peak RSS {run.peak_rss_mb:.0f} MB, CPU {run.cpu_s:.0f} s, wall {run.wall_s:.0f} s")

    assert query(settings, "SELECT count(), uniqExact(event_id) FROM events FINAL") == [(VALID, VALID)]
    assert query(settings, "SELECT sum(count) FROM metrics_1m FINAL WHERE metric = 'requests'") == [(VALID,)]
    assert query(settings, "SELECT count() FROM late_events FINAL") == [(0,)]
    assert query(settings, "SELECT ifNull(sum(inputs), 0) FROM skipped_inputs FINAL") == [(0,)]

    # every poison message, by where it was: its code, its exact bytes, a reason, its source topic
    rows = query(settings, "SELECT partition, offset, code, reason, topic, length(raw), lower(hex(MD5(raw))) "
                           "FROM dead_letters FINAL")
    got = {(p, o): (code, reason, t, n, md5) for p, o, code, reason, t, n, md5 in rows}
    assert len(rows) == len(got) == POISON
    expected_codes: Counter = Counter()
    wrong = []
    for i, kind in kind_of.items():
        code = "oversized" if kind == "huge" else KINDS[kind][0]
        expected_codes[code] += 1
        row = got.get(where[i])
        if (row is None or row[0] != code or not row[1] or row[2] != topic or row[3] != len(values[i])
                or row[4] != hashlib.md5(values[i]).hexdigest()):
            wrong.append((kind, where[i], row[:3] if row else None))
    assert not wrong, f"{len(wrong)} poison messages not dead-lettered as expected, e.g. {wrong[:5]}"
    assert Counter(code for code, *_ in got.values()) == expected_codes
    assert sum(1 for *_, n, _ in got.values() if n >= 10_000_000) == HUGE

    # the dead-letter topic: every record but the 10 MB ones, which its default size limit refuses
    on_topic = _dead_letter_topic(kafka_bootstrap, env["HUB_KAFKA__TOPICS__DEAD_LETTER"], POISON - HUGE)
    assert on_topic == expected_codes - Counter({"oversized": HUGE})
    assert "Kafka refused a record" in run.output and "Message size too large" in run.output

    assert run.peak_rss_mb < RSS_BOUND_MB, f"peak RSS {run.peak_rss_mb:.0f} MB"


def test_a_topic_at_the_default_size_limit_refuses_a_10mb_message(kafka_bootstrap: str) -> None:
    """The broker's limit comes first: the message never reaches the hub (nothing to dead-letter)."""
    env = topic_env(kafka_bootstrap)
    topic = env["HUB_KAFKA__TOPICS__TELEMETRY"]
    p = Producer({"bootstrap.servers": kafka_bootstrap, "message.max.bytes": str(TOPIC_MAX_BYTES)})
    errors: list[KafkaError] = []
    p.produce(topic, _huge(0, random.Random(0)), on_delivery=lambda err, _msg: errors.append(err))
    assert p.flush(60) == 0
    assert [e.code() for e in errors] == [KafkaError.MSG_SIZE_TOO_LARGE]
    c = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"check-{topic}"})
    assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (0, 0)
    c.close()
