"""`hub run`: pick the input, prepare the store, run the dataflow, report what landed."""
from __future__ import annotations

import argparse
import sys
import time
from contextlib import closing
from datetime import timedelta
from pathlib import Path

from bytewax.recovery import RecoveryConfig

from config.errors import HubError
from config.settings import HubConfig, kafka_client_config
from connectors import health, live_store, shutdown, worker_metrics
from connectors.clickhouse import connect, is_embedded, serve_live
from connectors.file_source import FileSource, SyntheticSource
from connectors.kafka_source import check_broker
from connectors.migrations import migrate
from connectors.spool import spool_dir
from connectors.spool_source import SpoolSource
from connectors.price_store import stored_price_changes
from flows.pipeline import build_flow, epoch, kafka_source
from flows.tables import print_rows

SUMMARY_SQL = """
SELECT (SELECT count() FROM events FINAL) AS events,
       (SELECT count() FROM dead_letters FINAL) AS dead_letters,
       (SELECT sum(inputs) FROM skipped_inputs FINAL) AS skipped,
       (SELECT count() FROM late_events FINAL) AS late_events,
       (SELECT count() FROM metrics_1m FINAL) AS metric_windows
"""


class RunError(HubError):
    """Bad `hub run` arguments or inputs."""


def ingest_spool(args: argparse.Namespace, cfg: HubConfig) -> Path | None:
    """The spool `hub run --ingest` reads; None without --ingest."""
    if not getattr(args, "ingest", False):
        return None
    if args.input or args.events is not None:
        raise RunError("--ingest reads what `hub serve` accepted: it takes no --input or --events")
    if cfg.kafka.bootstrap_servers:
        raise RunError("with Kafka configured `hub serve` puts what it accepts on the topics, which `hub run` "
                       "reads without --ingest")
    where = spool_dir(cfg.spool, cfg.clickhouse)
    if where is None:
        raise RunError("--ingest with a ClickHouse server store needs [spool] dir (HUB_SPOOL__DIR), "
                       "the same as `hub serve`'s")
    return where


def choose_source(args: argparse.Namespace, cfg: HubConfig):
    spool = ingest_spool(args, cfg)
    if spool is not None:
        return SpoolSource(spool, cfg.kafka.batch_size, args.until_end), f"HTTP ingest spool {spool}"
    if args.input:
        if args.input != "-" and not Path(args.input).is_file():
            raise RunError(f"input file {args.input} does not exist or is not a file")
        return FileSource(args.input, cfg.kafka.batch_size), f"file {args.input}"
    if cfg.kafka.bootstrap_servers:
        existing = check_broker(kafka_client_config(cfg), cfg.kafka.connect_timeout_s)
        topics = list(cfg.kafka.topics.by_source().values())
        missing = [t for t in topics if t not in existing]
        if len(missing) == len(topics):
            raise RunError(f"none of the input topics exist on {cfg.kafka.bootstrap_servers}: {', '.join(topics)}")
        for t in missing:
            print(f"hub run: note: topic {t} does not exist yet; not reading it", file=sys.stderr)
        return kafka_source(cfg, stop_at_end=args.until_end), f"Kafka {cfg.kafka.bootstrap_servers}"
    if args.rate <= 0:
        raise RunError("--rate must be > 0")
    span_s = (args.events or 0) / args.rate
    if span_s >= cfg.normalization.max_event_age_s:
        raise RunError(f"--events {args.events} at --rate {args.rate:g}/s spans {span_s / 86400:.1f} days of event time, "
                       f"more than normalization.max_event_age_s allows; raise --rate")
    start_ms = int(time.time() * 1000 - span_s * 1000)
    label = f"synthetic generator ({args.events:,} events)" if args.events else "synthetic generator (Ctrl-C to stop)"
    return SyntheticSource(args.events, cfg.kafka.batch_size, args.seed, start_ms, args.rate), label


def run(args: argparse.Namespace, cfg: HubConfig) -> int:
    if args.events is not None and args.events <= 0:
        raise RunError("--events must be > 0")
    ingest_spool(args, cfg)  # a wrong --ingest combination fails before anything starts
    # First: a port in use fails in a moment, before migrations or input are touched.
    endpoint = _endpoint(cfg)
    live = None
    try:
        live = _serve_live(args, cfg)
        return _run(args, cfg, endpoint.health if endpoint else None, live)
    finally:
        if live is not None:
            live_store.stop_serving(live)
        if endpoint is not None:
            endpoint.close()


def _serve_live(args: argparse.Namespace, cfg: HubConfig) -> live_store.LiveServer | None:
    """Serve the embedded store for live reads while this run writes it ([clickhouse] live).

    Only when this process is the `hub` program (args.own_process): the engine that serves can
    start once per process, before any other chdb use, and never again after it stops, so a
    library caller (the test suite runs many stores in one process) writes in-process instead.
    One process of a cluster needs a ClickHouse server anyway."""
    if not (cfg.clickhouse.live and is_embedded(cfg.clickhouse.dsn) and getattr(args, "own_process", False)
            and args.process_id is None and live_store.can_serve()):
        return None
    return serve_live(cfg.clickhouse)


def _endpoint(cfg: HubConfig) -> health.Endpoint | None:
    """/metrics, /healthz and /readyz on [metrics] host:port (port 0: none)."""
    if not cfg.metrics.port:
        return None
    status = health.Health(cfg.metrics.stall_after_s)
    status.add_check("store", health.store_check(cfg.clickhouse))
    return health.Endpoint(cfg.metrics.host, cfg.metrics.port, status).start()


def _run(args: argparse.Namespace, cfg: HubConfig, status: health.Health | None,
         live: live_store.LiveServer | None = None) -> int:
    from bytewax.run import cli_main
    from bytewax.recovery import init_db_dir

    worker_metrics.HEARTBEAT.reset()
    with closing(connect(cfg.clickhouse)) as client:
        if not args.no_migrate:
            migrate(client, cfg.retention)
        prices = stored_price_changes(client)
    source, label = choose_source(args, cfg)
    if status is not None and label.startswith("Kafka"):
        status.add_check("kafka", health.kafka_check(kafka_client_config(cfg)))
    spool = ingest_spool(args, cfg)
    # The spool's read position lives in the recovery snapshot, and segments are deleted once one
    # covers them: without a recovery dir a restart would re-read (or, once deleted, miss) data.
    recovery_dir = args.recovery_dir or cfg.recovery.dir or (str(spool / "recovery") if spool else "")
    if not recovery_dir and label.startswith("Kafka") and not args.until_end:
        print("hub run: note: no recovery dir (--recovery-dir / HUB_RECOVERY__DIR): offsets and window state are "
              f"not kept across restarts; a restart re-reads from {cfg.kafka.starting_offset}", file=sys.stderr)
    recovery = None
    if recovery_dir:
        path = Path(recovery_dir)
        if not path.exists() or not any(path.iterdir()):
            path.mkdir(parents=True, exist_ok=True)
            init_db_dir(path, cfg.recovery.partitions)
        backup = cfg.recovery.backup_interval_s
        recovery = RecoveryConfig(str(path), backup_interval=timedelta(seconds=backup) if backup else None)
    flow = build_flow(cfg, source, prices=prices)
    served = f"; metrics and health on {health.local_url(cfg.metrics.host, cfg.metrics.port)}" if status else ""
    if live is not None:
        served += f"; live reads on {live.url} (hub query / hub serve find it)"
    print(f"hub run: reading {label}; writing to {cfg.clickhouse.dsn}{served}", file=sys.stderr, flush=True)
    started = time.monotonic()
    addresses = args.addresses.split(";") if args.addresses else None
    shutdown.install()
    with worker_metrics.Progress():
        try:
            cli_main(flow, workers_per_process=args.workers, process_id=args.process_id, addresses=addresses,
                     epoch_interval=epoch(cfg), recovery_config=recovery)
        except Exception as exc:  # Bytewax wraps what a step or sink raised: report that one line
            error = _operator_error(exc)
            if error is None:
                raise
            raise error from None
    elapsed = time.monotonic() - started
    events = worker_metrics.total(worker_metrics.EVENTS)
    print(f"hub run: done in {elapsed:.1f}s: {events:,.0f} events ({events / max(elapsed, 1e-9):,.0f}/s), "
          f"{worker_metrics.total(worker_metrics.DEAD_LETTERS):,.0f} dead letters, "
          f"{worker_metrics.total(worker_metrics.SKIPPED):,.0f} skipped, "
          f"{worker_metrics.total(worker_metrics.LATE):,.0f} late, "
          f"{worker_metrics.total(worker_metrics.WINDOWS):,.0f} windows closed", file=sys.stderr)
    if args.process_id in (None, 0):
        _summary(cfg)
    return 0


def _operator_error(exc: BaseException) -> HubError | None:
    """The HubError (e.g. the ClickHouse writer's) inside Bytewax's wrapping, if any."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, HubError):
            return seen
        seen = seen.__cause__
    return None


def _summary(cfg: HubConfig) -> None:
    with closing(connect(cfg.clickhouse)) as client:
        result = client.query(SUMMARY_SQL)
    print("rows in the store:")
    print_rows(list(result.column_names), result.result_rows, "table")
    target = f"--clickhouse {cfg.clickhouse.dsn} "
    print(f"\ntry:  hub query {target}--report latency\n      hub query {target}\"SELECT model, count() FROM events GROUP BY model\"")
