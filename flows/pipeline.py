"""The main dataflow: input batches -> per-shard normalize/dedup/windows -> detection -> registry
(enrichment, compliance reports, feeds) -> outputs (ClickHouse; with Kafka configured also the
dead-letter, alerts and feed topics).

`hub run` builds and runs it in-process; for clusters use
`python -m bytewax.run flows.pipeline:get_flow -w N -i I -a ADDRS` (config from HUB_CONFIG and
HUB_* environment variables, Kafka input required).
"""
from __future__ import annotations

import pickle
import gc
import sys
from collections import Counter
from contextlib import closing
from datetime import timedelta
from typing import Any

import bytewax.operators as op
import msgspec
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource
from bytewax.outputs import Sink

from config.cost import load_prices
from config.settings import HubConfig, kafka_client_config, load_config
from connectors import worker_metrics as metrics
from connectors.clickhouse_sink import ClickHouseSink
from connectors.clickhouse import connect
from connectors.kafka_sink import KafkaTopicSink, Record
from connectors.kafka_source import KafkaBatchSource
from connectors.price_store import stored_price_changes
from connectors.webhooks import WebhookSink
from operators.alerts import Alerting, AlertState, Feeder
from operators.detect import DetectionState
from operators.normalize import Normalizer
from operators.cost import PriceTable, Pricer
from operators.normalize.model_names import ModelNames
from operators.registry import RegistryState, RegistrySteps, governance_batch
from operators.shard import BILLED, ColumnRules, ShardState, ShardSteps, process
from schemas.events import PriceChange
from schemas.alerts import alert_record_json
from schemas.incidents import Incident, alert_json
from schemas.feeds import feed_json
from schemas.items import AlertFeed, AlertOutput, DetectionOutput, GovernanceBatch, RawBatch, RegistryOutput, ShardOutput
from schemas.rows import COLUMN_NAMES, dead_letter_record

SOURCE_COLUMN = COLUMN_NAMES.index("source")


def kafka_source(cfg: HubConfig, stop_at_end: bool) -> KafkaBatchSource:
    conf = {**kafka_client_config(cfg), "group.id": cfg.kafka.group_id}
    return KafkaBatchSource(conf, list(cfg.kafka.topics.by_source().values()), cfg.kafka.batch_size,
                            cfg.kafka.starting_offset, stop_at_end, cfg.kafka.connect_timeout_s)


# The flow thread and the ClickHouse writer thread share the GIL. With CPython's default 5 ms
# switch interval they hand it back and forth mid-batch; 50 ms lets each finish its step.
# Measured with bench/pipeline.py (300k events, 2 runs each): 24k -> 39k events/s end to end.
GIL_SWITCH_INTERVAL_S = 0.05
# Each batch allocates many short-lived containers (columns, structs, dicts), nearly all freed by
# reference counting. At CPython's default gen-0 threshold (700) the cyclic collector ran
# thousands of times a second and promoted batch temporaries into the older generations, whose
# collections walk the long-lived state (dedup tables, window and detector state).
# Measured on the flow thread's shard step alone (base format, 200k events, 3 runs each, medians):
# ~42k -> ~49k events/s.
GC_THRESHOLDS = (50_000, 10, 10)


def build_flow(cfg: HubConfig, source: FixedPartitionedSource, store: Sink | None = None,
               prices: list[tuple[int, PriceChange]] | None = None) -> Dataflow:
    """`store` replaces the ClickHouse output and drops the topic outputs: bench/pipeline.py's
    --ceiling passes a discarding sink to measure the flow with nothing written anywhere.
    `prices`: price changes stored by earlier runs (connectors.price_store)."""
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    gc.collect()
    gc.freeze()  # what start-up built (modules, config, price tables) is never garbage
    gc.set_threshold(*GC_THRESHOLDS)
    steps = shard_steps(cfg, prices or [])
    lateness_ms = cfg.windows.allowed_lateness_s * 1000
    dedup_ms = cfg.normalization.dedup_window_s * 1000
    dedup_max = cfg.normalization.dedup_max_entries
    topic_sources = {topic: src for src, topic in cfg.kafka.topics.by_source().items()}

    def step(held: Snapshotted | ShardState | None, batch: RawBatch) -> tuple[Snapshotted, ShardOutput]:
        held = _held(held) or Snapshotted(ShardState(dedup_ms, dedup_max, lateness_ms))
        state = held.state
        out = process(state, batch, steps)
        _count(batch, out, state.windows.watermark_ms, topic_sources)
        return held, out

    alerting = Alerting(cfg.budgets, cfg.alerts) if cfg.budgets or cfg.alerts.rules else None
    feeder = Feeder(cfg.budgets, cfg.alerts.rules, ModelNames(cfg.models).canonical, topic_sources)
    # Checked before anything runs: a channel whose URL variable is unset stops the start with one line.
    webhooks = WebhookSink(cfg.alerts.channels, cfg.clickhouse) if alerting and cfg.alerts.channels and store is None \
        else None

    topics = cfg.kafka.topics
    feeds = bool(cfg.kafka.bootstrap_servers) and store is None
    registry_steps = RegistrySteps(ModelNames(cfg.models).canonical, usage=feeds and bool(topics.usage_feed))
    violations, audit = feeds and bool(topics.violation_feed), feeds and bool(topics.audit_feed)

    def for_detection(kv: tuple[str, ShardOutput]) -> tuple[str, Detecting]:
        out = kv[1]
        slim = ShardOutput(out.shard, windows=out.windows, signals=out.signals, final=out.final,
                           watermark_ms=out.watermark_ms, closed_ms=out.closed_ms)
        return "detection", (slim, feeder.feed(out) if alerting else None,
                             governance_batch(out.event_columns, violations, audit))

    def detect(held: Snapshotted | DetectionState | None, item: Detecting) -> tuple[Snapshotted, Detected]:
        out, feed, gov = item
        held = _held(held) or Snapshotted(DetectionState(cfg.detection, lateness_ms))
        found = held.state.step(out.shard, out.windows, out.signals, out.final, out.closed_ms, out.watermark_ms)
        _count_detection(found)
        return held, (out, found, feed, gov)

    def register(state: RegistryState | None, item: Detected
                 ) -> tuple[RegistryState, tuple[DetectionOutput, AlertFeed | None, RegistryOutput]]:
        out, found, feed, gov = item
        if state is None:
            state = RegistryState()
        return state, (found, feed, state.step(out, found, gov, registry_steps))

    def alert(state: AlertState | None, item: tuple[AlertFeed, DetectionOutput]) -> tuple[AlertState, AlertOutput]:
        feed, found = item
        if state is None:
            state = AlertState()
        out = state.step(feed, found, alerting)
        for a in out.alerts:
            metrics.RULE_ALERTS.labels(rule=a.rule, event=a.event).inc()
        return state, out

    flow = Dataflow("llm_analytics_hub")
    batches = op.input("input", flow, source)
    keyed = op.key_on("by_shard", batches, lambda b: b.shard)
    outputs = op.stateful_map("process", keyed, step)
    # One detection state sees every shard's windows and signals (incidents cross assets and
    # sources); only the small parts of a batch travel there, with what alerting takes from it.
    slim = op.map("for_detection", outputs, for_detection)
    detect_out = op.stateful_map("detect", slim, detect)
    # After detection, on the same key: registry state enriches the windows (written from here, not
    # from the shard step) and what was found in them, and builds compliance reports and feeds.
    enriched = op.stateful_map("registry", detect_out, register)
    detected = op.map("found", enriched, lambda kv: (kv[0], kv[1][0]))
    registered = op.map("registered", enriched, lambda kv: (kv[0], kv[1][2]))
    to_store = [op.map("without_windows", outputs, _without_windows), detected, registered]
    alerted = None
    if alerting is not None:
        # After detection, in one ordered stream: alert rules see each shard's windows and spend
        # together with the anomalies and incidents found in them.
        alerted = op.stateful_map("alerts", op.map("for_alerts", enriched, lambda kv: ("alerts", (kv[1][1], kv[1][0]))),
                                  alert)
        to_store.append(alerted)
    # One output per destination; a new destination is one connector and one line here.
    op.output("clickhouse", op.merge("to_store", *to_store), store or ClickHouseSink(cfg))
    if webhooks is not None and alerted is not None:
        op.output("webhooks", op.filter_map("notifications", alerted,
                                            lambda kv: ("webhooks", kv[1].notifications) if kv[1].notifications else None),
                  webhooks)
    if cfg.kafka.bootstrap_servers and store is None:
        producer = kafka_client_config(cfg)
        op.output("dead_letter_topic", op.filter_map("dead_letter_records", outputs, _dead_letter_records),
                  KafkaTopicSink(producer, cfg.kafka.topics.dead_letter))
        records = op.filter_map("alert_records", detected, _alert_records)
        if alerted is not None:
            records = op.merge("all_alert_records", records, op.filter_map("rule_alert_records", alerted, _rule_alert_records))
        op.output("alerts_topic", records, KafkaTopicSink(producer, cfg.kafka.topics.alerts))
        for name, (attr, key) in FEEDS.items():
            topic = getattr(topics, name)
            if topic:
                op.output(name, op.filter_map(f"{name}_records", registered, _feed_records(attr, key)),
                          KafkaTopicSink(producer, topic))
    return flow


class Snapshotted:
    """Holds a big step state (shard, detection) so that Bytewax snapshots it as pickled bytes.

    Bytewax snapshots every stateful step at each epoch with `copy.deepcopy` (recovery or not) and
    pickles that copy for the recovery store. A deep copy of a 20k-series detector bank took 3.9 s
    of CPU and doubled its ~55 MB; pickling it takes 1.5 s and 27 MB, and is needed anyway. So the
    copy is the pickle: `_Pickled` unpickles as a `Snapshotted` of an exact copy of the state.
    """

    __slots__ = ("state",)

    def __init__(self, state: Any) -> None:
        self.state = state

    def __deepcopy__(self, memo: dict) -> _Pickled:
        return _Pickled(pickle.dumps(self.state, protocol=pickle.HIGHEST_PROTOCOL))


class _Pickled:
    __slots__ = ("blob",)

    def __init__(self, blob: bytes) -> None:
        self.blob = blob

    def __reduce__(self) -> tuple:
        return _restore, (self.blob,)


def _restore(blob: bytes) -> Snapshotted:
    return Snapshotted(pickle.loads(blob))


def _held(state: Any) -> Snapshotted | None:
    """A step's holder; None on first use; a bare state (from a snapshot taken before holders) wrapped."""
    return state if state is None or isinstance(state, Snapshotted) else Snapshotted(state)


# The feed topics of [kafka.topics]: RegistryOutput attribute, and the record field keying its messages.
FEEDS = {"usage_feed": ("usage", "id"), "compliance_feed": ("reports", "id"), "violation_feed": ("violations", "id"),
         "audit_feed": ("audit", "id"), "asset_feed": ("profiles", "asset_id")}
# (slim shard output, alert feed, governance rows) -> detection -> (the same, with what was found).
Detecting = tuple[ShardOutput, AlertFeed | None, GovernanceBatch | None]
Detected = tuple[ShardOutput, DetectionOutput, AlertFeed | None, GovernanceBatch | None]


def _without_windows(kv: tuple[str, ShardOutput]) -> tuple[str, ShardOutput]:
    """The shard's rows for the store; its windows are written enriched, from the registry step."""
    return kv[0], msgspec.structs.replace(kv[1], windows=[]) if kv[1].windows else kv[1]


def _feed_records(attr: str, key: str):
    def records(kv: tuple[str, RegistryOutput]) -> list[Record] | None:
        return [(getattr(r, key).encode(), feed_json(r)) for r in getattr(kv[1], attr)] or None
    return records


def shard_steps(cfg: HubConfig, prices: list[tuple[int, PriceChange]] | None = None) -> ShardSteps:
    """Normalizer, pricer and column rules from config (price files are read here, once), the
    price table completed with stored price changes."""
    topic_sources = {topic: src for src, topic in cfg.kafka.topics.by_source().items()}
    names = ModelNames(cfg.models)
    pricer = Pricer(PriceTable(load_prices(cfg.cost.price_files), names), cfg.cost)
    pricer.learn(prices or [])
    return ShardSteps(Normalizer(cfg.normalization, topic_sources=topic_sources), cfg.windows.idle_close_s * 1000,
                      pricer, ColumnRules(names.canonical, BILLED[cfg.cost.count_from]))


def _dead_letter_records(kv: tuple[str, ShardOutput]) -> list[Record] | None:
    """Keyed by the source topic, so one input topic's rejects stay in order."""
    return [(d.topic.encode(), dead_letter_record(d)) for d in kv[1].dead_letters] or None


def _alert_records(kv: tuple[str, DetectionOutput]) -> list[Record] | None:
    return [(r.id.encode(), alert_json(r)) for r in kv[1].alerts] or None


def _rule_alert_records(kv: tuple[str, AlertOutput]) -> list[Record] | None:
    """Every version of a rule's alert (firing, renotify, resolved), keyed by the alert id."""
    return [(a.id.encode(), alert_record_json(a)) for a in kv[1].alerts] or None


def _count(batch: RawBatch, out: ShardOutput, watermark_ms: int, topic_sources: dict[str, str]) -> None:
    """Per batch, never per event: the worker metrics and the flow's heartbeat."""
    metrics.HEARTBEAT.beat()
    metrics.BATCHES.inc()
    if batch.messages:
        source = topic_sources.get(batch.messages[0].topic) or batch.shard.split(":")[0]  # file, synthetic
        metrics.INPUT.labels(source=source).inc(len(batch.messages))
    if out.events and out.event_columns is not None:
        for source, n in Counter(out.event_columns[SOURCE_COLUMN]).items():
            metrics.EVENTS.labels(source=source, shard=out.shard).inc(n)
    if out.dead_letters:
        for reason, n in Counter(d.code or "invalid" for d in out.dead_letters).items():
            metrics.DEAD_LETTERS.labels(reason=reason).inc(n)
        for source, n in Counter(d.source or "unknown" for d in out.dead_letters if d.code == "duplicate").items():
            metrics.DUPLICATES.labels(source=source).inc(n)
    for s in out.skipped:
        metrics.SKIPPED.labels(reason=s.reason).inc(s.count)
    if out.late_rows:
        metrics.LATE.inc(len(out.late_rows))
    if watermark_ms > 0:
        metrics.WATERMARKS.set(out.shard, watermark_ms)


def _count_detection(found: DetectionOutput) -> None:
    for kind, n in Counter(a.anomaly_type for a in found.anomalies).items():
        metrics.ANOMALIES.labels(type=kind).inc(n)
    opened = sum(1 for i in found.incidents if i.version == 1)
    if opened:
        metrics.INCIDENTS.inc(opened)
    for alert in found.alerts:
        metrics.ALERTS.labels(kind="incident" if isinstance(alert, Incident) else "anomaly").inc()


def get_flow() -> Dataflow:
    """Entry point for `python -m bytewax.run` cluster deployments (tails Kafka)."""
    cfg = load_config()
    with closing(connect(cfg.clickhouse)) as client:
        prices = stored_price_changes(client)
    return build_flow(cfg, kafka_source(cfg, stop_at_end=False), prices=prices)


def epoch(cfg: HubConfig) -> timedelta:
    return timedelta(seconds=cfg.recovery.snapshot_interval_s)
