"""End-to-end pipeline benchmark on the local Kafka broker and the embedded ClickHouse engine.

Phases, all in one run so the ratios compare like with like on this noisy machine:
1. produce N synthetic events into a fresh 1-partition topic;
2. throughput: the hub flow (Bytewax, one worker) reads the backlog to the end and writes
   events, dead letters and windowed metrics to a fresh chdb store -> messages/s (wall clock,
   including the final flush);
3. baseline: a plain serial confluent-kafka loop over the same topic: consume -> the same
   decode/normalize -> the same raw event rows inserted into a fresh chdb store -> messages/s
   (an OTLP message holds several spans: the synthetic mix has ~1.08 events per message);
4. latency: a producer process sends events at a fixed rate while the flow tails the topic;
   latency = time the insert holding a message returned (queryable) - the message's broker
   timestamp, sampled 1 in 64 -> p50/p99;
5. with --ceiling, also the flow with a sink that discards everything (no ClickHouse, no
   writer thread): what one process can do before any storage cost.

Usage: python bench/pipeline.py [--events 2000000] [--runs 3] [--ceiling] [--bootstrap HOST:PORT]
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import closing
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

import numpy as np  # noqa: E402
from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from bytewax.outputs import DynamicSink, StatelessSinkPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from config.settings import load_config  # noqa: E402
from connectors import worker_metrics  # noqa: E402
from connectors.clickhouse import connect  # noqa: E402
from connectors.kafka_source import KafkaBatchSource, _PartitionReader  # noqa: E402
from connectors.migrations import migrate  # noqa: E402
from flows.pipeline import build_flow, epoch  # noqa: E402
from operators.shard import to_columns  # noqa: E402
from schemas.rows import EVENT_COLUMNS  # noqa: E402
from operators.normalize import Normalizer  # noqa: E402
from connectors.synthetic import generate  # noqa: E402

CHUNK = 50_000


def produce(bootstrap: str, topic: str, n: int, seed: int, rate: float | None = None) -> float:
    """Produce n synthetic events; at `rate` events/s if given. Returns events/s achieved."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": "20", "compression.type": "lz4",
                  "queue.buffering.max.messages": "1000000", "batch.num.messages": "10000"})
    start = time.perf_counter()
    sent = 0
    step = CHUNK if rate is None else max(int(rate / 20), 1)
    while sent < n:
        k = min(step, n - sent)
        for value in generate(k, seed=seed + sent, start_ms=int(time.time() * 1000), rate_per_s=rate or 5000.0):
            while True:
                try:
                    p.produce(topic, value)
                    break
                except BufferError:
                    p.poll(0.05)
        p.poll(0)
        sent += k
        if rate is not None:
            ahead = sent / rate - (time.perf_counter() - start)
            if ahead > 0:
                time.sleep(ahead)
    p.flush(60)
    return n / (time.perf_counter() - start)


def new_topic(bootstrap: str, partitions: int = 1) -> str:
    name = f"bench.{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(30)
    return name


class _CountedReader(_PartitionReader):
    """Tails until `limit` messages were read (the latency phase has no end offset up front)."""

    limit = 0

    def next_batch(self):
        if self.next_offset is not None and self.next_offset >= self.limit:
            if not self.finished:
                self.finished = True
                return [self._final()]
            raise StopIteration
        return super().next_batch()

    def _final(self):
        from schemas.items import RawBatch

        return RawBatch(self.shard, [], final=True)


class _CountedSource(KafkaBatchSource):
    def build_part(self, step_id, for_part, resume_state):
        topic, _, partition = for_part.rpartition("#")
        return _CountedReader(self.conf, topic, int(partition), resume_state, self.batch_size,
                              self.starting_offset, False)


BATCH_SIZE = 2000


def hub_config(bootstrap: str, topic: str, store: str):
    env = {
        "HUB_KAFKA__BATCH_SIZE": str(BATCH_SIZE),
        "HUB_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "HUB_KAFKA__TOPICS__TELEMETRY": topic,
        "HUB_CLICKHOUSE__DSN": f"chdb://{store}",
        "HUB_KAFKA__GROUP_ID": f"bench-{uuid.uuid4().hex[:6]}",
    }
    return load_config(environ=env)


class _Discard(DynamicSink):
    def build(self, step_id: str, worker_index: int, worker_count: int) -> StatelessSinkPartition:
        class Partition(StatelessSinkPartition):
            def write_batch(self, items: list) -> None:
                pass

        return Partition()


def run_flow(cfg, source, sink=None) -> float:
    from bytewax.run import cli_main

    if sink is None:
        with closing(connect(cfg.clickhouse)) as client:
            migrate(client, cfg.retention)
    flow = build_flow(cfg, source, sink)
    start = time.perf_counter()
    cli_main(flow, workers_per_process=1, process_id=None, addresses=None, epoch_interval=epoch(cfg),
             recovery_config=None)
    return time.perf_counter() - start


def store_count(cfg) -> int:
    with closing(connect(cfg.clickhouse)) as client:
        return client.query("SELECT count() FROM events FINAL").result_rows[0][0]


def flow_throughput(bootstrap: str, topic: str, n: int, work: Path, store_rows: bool = True) -> tuple[float, int]:
    store = work / f"flow-{uuid.uuid4().hex[:6]}"
    cfg = hub_config(bootstrap, topic, str(store))
    conf = {"bootstrap.servers": bootstrap, "group.id": cfg.kafka.group_id}
    source = KafkaBatchSource(conf, [topic], cfg.kafka.batch_size, "earliest", True, 10)
    elapsed = run_flow(cfg, source, None if store_rows else _Discard())
    rows = store_count(cfg) if store_rows else 0
    shutil.rmtree(store, ignore_errors=True)
    return n / elapsed, rows


def baseline(bootstrap: str, topic: str, n: int, work: Path) -> tuple[float, int]:
    """DESIGN.md's serial loop: consume -> decode -> columns -> insert, sync commit per batch."""
    store = work / f"base-{uuid.uuid4().hex[:6]}"
    cfg = hub_config(bootstrap, topic, str(store))
    names = [c for c, _ in EVENT_COLUMNS]
    types = [t for _, t in EVENT_COLUMNS]
    normalizer = Normalizer(cfg.normalization, topic_sources={topic: "telemetry"})
    from schemas.raw import RawMessage

    with closing(connect(cfg.clickhouse)) as client:
        migrate(client, cfg.retention)
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"baseline-{uuid.uuid4().hex[:6]}",
                      "enable.auto.commit": "false", "queued.min.messages": "200000"})
        c.assign([TopicPartition(topic, 0, 0)])
        start = time.perf_counter()
        seen = 0
        while seen < n:
            msgs = [m for m in c.consume(20_000, timeout=1.0) if m.error() is None]
            if not msgs:
                continue
            seen += len(msgs)
            batch = normalizer.normalize_batch([RawMessage(m.value(), topic, 0, m.offset()) for m in msgs])
            if batch.events:
                client.insert("events", to_columns(batch.events), column_names=names, column_type_names=types,
                              column_oriented=True)
            c.commit(message=msgs[-1], asynchronous=False)
        elapsed = time.perf_counter() - start
        c.close()
        rows = client.query("SELECT count() FROM events FINAL").result_rows[0][0]
    shutil.rmtree(store, ignore_errors=True)
    return n / elapsed, rows


def latency(bootstrap: str, n: int, rate: float, work: Path) -> tuple[float, float]:
    topic = new_topic(bootstrap)
    store = work / f"lat-{uuid.uuid4().hex[:6]}"
    cfg = hub_config(bootstrap, topic, str(store))
    conf = {"bootstrap.servers": bootstrap, "group.id": cfg.kafka.group_id}
    source = _CountedSource(conf, [topic], cfg.kafka.batch_size, "earliest", False, 10)
    _CountedReader.limit = n
    worker_metrics.LATENCY_SAMPLE.clear()
    producer = subprocess.Popen([sys.executable, __file__, "--produce-only", "--bootstrap", bootstrap, "--topic", topic,
                                 "--events", str(n), "--rate", str(rate)])
    run_flow(cfg, source)
    producer.wait(120)
    sample = worker_metrics.LATENCY_SAMPLE.all()
    shutil.rmtree(store, ignore_errors=True)
    return float(np.percentile(sample, 50)), float(np.percentile(sample, 99))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--bootstrap", help="use this broker instead of starting one")
    ap.add_argument("--latency-events", type=int, default=300_000)
    ap.add_argument("--latency-rate", type=float, default=15_000.0)
    ap.add_argument("--ceiling", action="store_true", help="also run the flow with a discarding sink")
    ap.add_argument("--batch-size", type=int, default=2000, help="messages per flow batch (kafka.batch_size)")
    ap.add_argument("--produce-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--topic", help=argparse.SUPPRESS)
    ap.add_argument("--rate", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args()
    global BATCH_SIZE
    BATCH_SIZE = args.batch_size
    if args.produce_only:
        produce(args.bootstrap, args.topic, args.events, seed=99, rate=args.rate)
        return 0

    import kafka_broker

    work = Path(tempfile.mkdtemp(prefix="hub-bench-"))
    broker = None
    bootstrap = args.bootstrap
    if not bootstrap:
        broker = kafka_broker.start(work / "kafka")
        bootstrap = broker.bootstrap
    try:
        topic = new_topic(bootstrap)
        rate = produce(bootstrap, topic, args.events, seed=1)
        print(f"produced {args.events:,} events at {rate:,.0f}/s into {topic}", flush=True)
        flows, bases, ceilings = [], [], []
        for i in range(args.runs):
            f, rows_f = flow_throughput(bootstrap, topic, args.events, work)
            b, rows_b = baseline(bootstrap, topic, args.events, work)
            flows.append(f)
            bases.append(b)
            line = (f"run {i + 1}: flow {f:,.0f} msgs/s ({rows_f:,} events stored), "
                    f"baseline {b:,.0f} msgs/s ({rows_b:,} stored), ratio {f / b:.2f}")
            if args.ceiling:
                ceilings.append(flow_throughput(bootstrap, topic, args.events, work, store_rows=False)[0])
                line += f", flow without storage {ceilings[-1]:,.0f} msgs/s"
            print(line, flush=True)
        p50, p99 = latency(bootstrap, args.latency_events, args.latency_rate, work)
        fm, bm = statistics.median(flows), statistics.median(bases)
        print(f"\nmedian of {args.runs}: flow {fm:,.0f} msgs/s end-to-end, baseline {bm:,.0f} msgs/s, "
              f"ratio {fm / bm:.2f}")
        if ceilings:
            print(f"flow with a discarding sink (no ClickHouse): {statistics.median(ceilings):,.0f} msgs/s")
        print(f"latency at {args.latency_rate:,.0f} msgs/s offered: p50 {p50:,.0f} ms, p99 {p99:,.0f} ms "
              "(broker timestamp -> insert returned)")
    finally:
        if broker is not None:
            kafka_broker.stop(broker)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
