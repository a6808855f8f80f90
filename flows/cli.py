"""`hub`: run the pipeline, migrate and query the store, serve the HTTP API, export schemas, show config,
probe a running hub.

Every failure an operator can cause (bad flag, bad config, unreachable Kafka/ClickHouse, bad
SQL) ends as one line on stderr and a non-zero exit code, never a traceback.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import logging
import os
import sys
from contextlib import closing
from pathlib import Path
from collections.abc import Callable, Sequence
from typing import Any, NoReturn
from urllib.parse import urlparse

import orjson

from config.errors import HubError
from config.settings import HubConfig, load_config, masked, to_toml
from connectors.synthetic_incidents import FORMATS as PRODUCE_FORMATS
from flows.tables import print_rows

EXIT_USAGE = 2
EXIT_FAILURE = 1
DISTRIBUTION = "llm-analytics-hub"
REPORTS = {
    "latency": """
        SELECT window_start AS hour, model, sum(count) AS requests,
               round(hub_quantile(sumMap(hist), 0.5), 1) AS p50_ms,
               round(hub_quantile(sumMap(hist), 0.95), 1) AS p95_ms,
               round(hub_quantile(sumMap(hist), 0.99), 1) AS p99_ms
        FROM metrics_1h FINAL WHERE metric = 'latency_ms'
        GROUP BY hour, model ORDER BY hour, model""",
    "cost": """
        SELECT window_start AS day, model, requests, round(cost_usd, 4) AS cost_usd,
               round(cost_per_request, 6) AS cost_per_request, round(cost_per_1k_tokens, 6) AS cost_per_1k_tokens
        FROM composite_1d ORDER BY day, model""",
    "errors": """
        SELECT model, sum(requests) AS total_requests, sum(errors) AS total_errors,
               round(total_errors / nullIf(total_requests, 0), 4) AS error_rate
        FROM composite_1h GROUP BY model ORDER BY error_rate DESC, model""",
}


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class VersionAction(argparse.Action):
    """`--version` reads the installed package's metadata only when asked, so it always matches
    what is installed and costs nothing on other commands."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="print the installed version and exit", **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> NoReturn:
        try:
            version = importlib.metadata.version(DISTRIBUTION)
        except importlib.metadata.PackageNotFoundError:
            parser.exit(EXIT_FAILURE, f"{parser.prog}: error: package {DISTRIBUTION} is not installed, "
                                      f"so it has no version (make setup installs it)\n")
        print(f"{parser.prog} {version}")
        parser.exit()


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("global options")
    g.add_argument("--config", metavar="FILE", help="config file (TOML); default: $HUB_CONFIG or the packaged config/hub.toml")
    g.add_argument("--kafka", metavar="BOOTSTRAP", help="Kafka bootstrap servers (overrides kafka.bootstrap_servers)")
    g.add_argument("--clickhouse", metavar="DSN", help="chdb://DIR or http(s)://host:port (overrides clickhouse.dsn)")
    return common


def build_parser() -> Parser:
    common = _common()
    parser = Parser(prog="hub", description="LLM Analytics Hub: Kafka -> Bytewax -> ClickHouse analytics for LLM platforms.")
    parser.add_argument("--version", action=VersionAction)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")

    run = sub.add_parser("run", parents=[common], help="run the pipeline",
                         description="Run the dataflow. Input: --input FILE (JSON lines, - for stdin); else Kafka if "
                                     "configured; else --ingest: what `hub serve` accepted (its spool); else "
                                     "the built-in synthetic generator.")
    run.add_argument("--input", metavar="FILE", help="JSON-lines file to read ('-' = stdin); the run ends at end of file")
    run.add_argument("--events", type=int, metavar="N",
                     help="synthetic input: stop after N stored events (default: until Ctrl-C)")
    run.add_argument("--seed", type=int, default=7, help="synthetic input: random seed (default 7)")
    run.add_argument("--rate", type=float, default=50.0, metavar="PER_S",
                     help="synthetic input: event-time rate of the generated traffic, events/s (default 50)")
    run.add_argument("--ingest", action="store_true",
                     help="read what `hub serve` accepted over HTTP without Kafka (the [spool] beside the "
                          "embedded store) instead of the synthetic generator; tails it until stopped")
    run.add_argument("--until-end", action="store_true",
                     help="Kafka or --ingest input: stop at the end (offsets, spool) seen at start")
    run.add_argument("--recovery-dir", metavar="DIR", help="Bytewax recovery snapshots here (overrides recovery.dir)")
    run.add_argument("--workers", type=int, default=1, metavar="N", help="worker threads in this process (default 1)")
    run.add_argument("-i", "--process-id", type=int, help="this process's index in a cluster (with --addresses)")
    run.add_argument("-a", "--addresses", help="semicolon-separated host:port of every cluster process")
    run.add_argument("--no-migrate", action="store_true", help="do not apply pending migrations first")
    run.set_defaults(func=cmd_run)

    prod = sub.add_parser("produce", parents=[common], help="put realistic traffic (or a file) on the Kafka topics",
                          description="Send realistic LLM platform traffic to the configured source topics (one per "
                                      "source, keyed by model, asset or service), or replay a JSON-lines file. Counts "
                                      "events as the hub stores them: an OTLP batch of 3 calls is 3 events. Stops "
                                      "after --events, after --duration, or at Ctrl-C; missing topics are created.")
    prod.add_argument("--format", choices=PRODUCE_FORMATS, help="wire format (default mix: hub envelopes, base "
                      "events and OTLP spans, JSON and protobuf, of every source). OTLP formats carry LLM calls only; "
                      "for otlp-metrics one event is one call the histograms summarize")
    prod.add_argument("--events", type=int, metavar="N", help="stop after N events (stored events, not messages)")
    prod.add_argument("--duration", metavar="TIME", help="stop after this long (60s, 5m, 1h); with --rate R: "
                                                         "exactly R x TIME events")
    prod.add_argument("--rate", type=float, metavar="PER_S", help="events per second, event times following the "
                                                                  "clock (default: as fast as possible)")
    prod.add_argument("--incident", action="append", metavar="KIND[:TARGET]",
                      help="inject an incident over 50-80%% of the run (or minutes 2-5 of an unbounded one): "
                           "latency-spike[:MODEL] (default gpt-4o, 8x slower), cost-surge[:TEAM] (marketing, 12x "
                           "tokens), security-burst[:MODEL] (gpt-4o-mini, 30%% of messages are attacks), "
                           "policy-violation-cascade[:TEAM] (support-bot); repeatable")
    prod.add_argument("--file", metavar="FILE", help="replay a JSON-lines file ('-' = stdin), each line to its "
                                                     "source's topic; lines that name no source are skipped and "
                                                     "reported (--rate is lines per second)")
    prod.add_argument("--topic", metavar="TOPIC", help="send everything to this one topic instead")
    prod.add_argument("--seed", type=int, help="random seed of the generated traffic (default 7)")
    prod.add_argument("--bad-fraction", type=float, default=0.0, metavar="F",
                      help="share of extra invalid messages, for the dead-letter path (default 0)")
    prod.add_argument("--duplicate-fraction", type=float, default=0.0, metavar="F",
                      help="share of extra byte-exact re-sends, for dedup (default 0; none in otlp-metrics)")
    prod.add_argument("--partitions", type=int, default=1, metavar="N",
                      help="partitions of topics this command creates (default 1)")
    prod.set_defaults(func=cmd_produce)

    mig = sub.add_parser("migrate", parents=[common], help="apply pending ClickHouse migrations",
                         description="Apply versioned SQL migrations from schemas/migrations and the configured retention TTLs.")
    mig.add_argument("--status", action="store_true", help="list migrations and whether they are applied; change nothing")
    mig.set_defaults(func=cmd_migrate)

    rep = sub.add_parser("reprice", parents=[common], help="recompute inferred call costs after a price change",
                         description="Price again every stored LLM call since --since whose cost was inferred or "
                                     "unknown, with the current price table (price files and stored price changes), "
                                     "and rebuild the cost rollups they feed. Reported costs are never changed; "
                                     "running it again changes nothing.")
    rep.add_argument("--since", required=True, metavar="DATE", help="first event time to reprice (YYYY-MM-DD, UTC)")
    rep.add_argument("--until", metavar="DATE", help="event times before this only (default: all after --since)")
    rep.add_argument("--dry-run", action="store_true", help="count what would change, write nothing")
    rep.set_defaults(func=cmd_reprice)

    q = sub.add_parser("query", parents=[common], help="run SQL or a canned report against the store",
                       description="Run a SQL query (or --report) against the configured ClickHouse store.")
    q.add_argument("sql", nargs="?", help="SQL to run")
    q.add_argument("--report", choices=sorted(REPORTS), help="canned report: latency (p50/p95/p99 per model per hour), "
                                                             "cost (per model per day), errors (error rate per model)")
    q.add_argument("--format", choices=["table", "jsonl", "csv"], default="table", help="output format (default table)")
    q.add_argument("--write", action="store_true", help="allow statements that change the store (INSERT, ALTER, DROP, ...); "
                                                        "without it the query runs with ClickHouse's readonly setting")
    q.set_defaults(func=cmd_query)

    srv = sub.add_parser("serve", parents=[common], help="HTTP API over the store (OpenAPI at /docs)",
                         description="Serve the HTTP API: metrics with percentiles, events, anomalies, incidents "
                                     "with their graph; read-only. On an embedded store that a running `hub run` "
                                     "serves live, reads go to that run. A host other than loopback needs API keys "
                                     "(HUB_SERVE__API_KEYS). Settings: [serve] in the config.")
    srv.add_argument("--host", help="address to listen on (overrides serve.host; default 127.0.0.1)")
    srv.add_argument("--port", type=int, help="port (overrides serve.port; default 8080)")
    srv.set_defaults(func=cmd_serve)

    report = sub.add_parser("report", parents=[common], help="write a self-contained HTML report with plots",
                            description="Write one HTML file (plotly.js inline, opens offline) with interactive plots: "
                                        "latency p50/p95/p99 per model, error rate, tokens, cost per day per model "
                                        "and team, anomalies marked on their series, incidents with their graph.")
    report.add_argument("--html", required=True, metavar="FILE", help="where to write the report")
    report.set_defaults(func=cmd_report)

    schema = sub.add_parser("schema", parents=[common], help="JSON Schemas of the accepted wire formats",
                            description="Work with the published schemas of the accepted wire formats.")
    ssub = schema.add_subparsers(dest="schema_command", required=True, parser_class=Parser, metavar="ACTION")
    export = ssub.add_parser("export", parents=[common], help="write one JSON Schema file per wire format into DIR")
    export.add_argument("dir", metavar="DIR")
    export.set_defaults(func=cmd_schema_export)

    health = sub.add_parser("health", parents=[common], help="ask a running hub run whether it is ready (exit 0) or not (1)",
                            description="Ask the readiness path (/readyz) of a running `hub run` and print one line; "
                                        "exit 0 when it is ready (flow moving, store and Kafka answering), 1 when "
                                        "not or when nothing answers. For container probes. The endpoint is "
                                        "[metrics] host:port of the config (default 127.0.0.1:9108) or --url.")
    health.add_argument("--url", help="the hub's endpoint, e.g. http://worker:9108 (a bare host:port URL gets the probe path)")
    health.add_argument("--live", action="store_true",
                        help="ask the liveness path (/healthz) instead: the process answers and its flow is not stuck")
    health.add_argument("--timeout", type=float, default=5.0, metavar="S", help="seconds to wait for an answer (default 5)")
    health.set_defaults(func=cmd_health)

    config = sub.add_parser("config", parents=[common], help="show or check the effective configuration",
                            description="Show or check the effective configuration (file + HUB_* environment + flags).")
    csub = config.add_subparsers(dest="config_command", required=True, parser_class=Parser, metavar="ACTION")
    show = csub.add_parser("show", parents=[common], help="print the effective config with secrets masked")
    show.add_argument("--format", choices=["json", "toml"], default="toml")
    show.set_defaults(func=cmd_config_show)
    check = csub.add_parser("check", parents=[common], help="validate the config and exit 0 if it is usable")
    check.set_defaults(func=cmd_config_check)
    return parser


def config_from(args: argparse.Namespace) -> HubConfig:
    return load_config(args.config, overrides={"kafka.bootstrap_servers": args.kafka, "clickhouse.dsn": args.clickhouse})


# -- commands ----------------------------------------------------------------------------------

def cmd_config_show(args: argparse.Namespace) -> int:
    cfg = config_from(args)
    if args.format == "json":
        print(orjson.dumps(masked(cfg), option=orjson.OPT_INDENT_2).decode())
    else:
        print(to_toml(cfg), end="")
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    config_from(args)
    print("config ok")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from connectors.clickhouse import chdb_path, connect, is_embedded
    from connectors.migrations import applied, discover, migrate, state

    labels = {"pending": "pending", "applied": "applied", "changed": "CHANGED after apply",
              "superseded": "applied (as an earlier, equivalent text; re-recorded by the next migrate)"}
    cfg = config_from(args)
    if args.status and is_embedded(cfg.clickhouse.dsn) and not Path(chdb_path(cfg.clickhouse.dsn)).exists():
        for m in discover():  # looking must not create an empty store
            print(f"{m.version}  pending (no store at {chdb_path(cfg.clickhouse.dsn)} yet)")
        return 0
    with closing(connect(cfg.clickhouse)) as client:
        if args.status:
            done = applied(client)
            for m in discover():
                print(f"{m.version}  {labels[state(m, done)]}")
            return 0
        new = migrate(client, cfg.retention)
    print(f"applied {len(new)} migration(s){': ' + ', '.join(new) if new else ''}; store is up to date")
    return 0


def cmd_reprice(args: argparse.Namespace) -> int:
    from flows.reprice import cmd_reprice as reprice

    return reprice(config_from(args), args.since, args.until, args.dry_run)


def cmd_query(args: argparse.Namespace) -> int:
    from connectors.clickhouse import connect, read_only_settings

    if bool(args.sql) == bool(args.report):
        raise HubError("give either SQL or --report NAME")
    cfg = config_from(args)
    sql = REPORTS[args.report] if args.report else args.sql
    # Read-only unless --write: a query can't drop or change what the pipeline writes by accident.
    with closing(connect(cfg.clickhouse, read_only=not args.write)) as client:
        try:
            result = client.query(sql, settings=None if args.write else read_only_settings(client))
        except Exception as exc:
            hint = "" if args.write or "readonly" not in str(exc).lower() else " (it changes the store: add --write to allow that)"
            raise HubError(f"ClickHouse rejected the query: {_first_line(exc)}{hint}") from None
    print_rows(list(result.column_names), result.result_rows, args.format)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from flows.serve import serve

    cfg = load_config(args.config, overrides={"kafka.bootstrap_servers": args.kafka, "clickhouse.dsn": args.clickhouse,
                                              "serve.host": args.host, "serve.port": args.port})
    return serve(cfg)


def cmd_report(args: argparse.Namespace) -> int:
    from flows.report import write_report

    path = write_report(config_from(args), args.html)
    print(f"hub report: wrote {path} ({path.stat().st_size / 1e6:.1f} MB)", file=sys.stderr)
    return 0


def cmd_schema_export(args: argparse.Namespace) -> int:
    from schemas.jsonschema import export_json_schemas

    try:
        paths = export_json_schemas(args.dir)
    except OSError as exc:
        raise HubError(f"cannot write schemas to {args.dir}: {exc.strerror or exc}") from None
    for p in paths:
        print(p)
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    from connectors.health import local_url, probe

    if args.timeout <= 0:
        raise HubError("--timeout must be > 0")
    path = "/healthz" if args.live else "/readyz"
    if args.url:
        url = args.url.rstrip("/") + path if urlparse(args.url).path in ("", "/") else args.url
    else:
        cfg = config_from(args)
        if not cfg.metrics.port:
            raise HubError("the metrics endpoint is off ([metrics] port = 0 / HUB_METRICS__PORT=0): "
                           "nothing to ask; give --url")
        url = local_url(cfg.metrics.host, cfg.metrics.port) + path
    healthy, line = probe(url, args.timeout)
    print(f"hub health: {line}", file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else EXIT_FAILURE


def cmd_produce(args: argparse.Namespace) -> int:
    from flows.produce import run

    return run(args, config_from(args))


def cmd_run(args: argparse.Namespace) -> int:
    from flows.runner import run

    return run(args, config_from(args))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:400]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # The `hub` program itself (no argv given) owns its process: `hub run` may turn the embedded
    # engine into a live server, which can start once per process (flows/runner.py).
    args.own_process = argv is None
    # clickhouse-connect logs its own copy of errors we already report in one line.
    logging.getLogger("clickhouse_connect").setLevel(logging.CRITICAL)
    func: Callable[[argparse.Namespace], int] = args.func
    prog = f"hub {args.command}"
    try:
        return func(args)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except HubError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as exc:  # a bug, not an operator mistake: still one line, details on request
        if os.environ.get("HUB_DEBUG"):
            raise
        print(f"{prog}: internal error: {type(exc).__name__}: {_first_line(exc)} (HUB_DEBUG=1 shows the traceback)",
              file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
