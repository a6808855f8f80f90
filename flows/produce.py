"""`hub produce`: realistic LLM platform traffic, or a JSON-lines file, onto the source topics.

The hub's in-process synthetic source skips Kafka; this command puts the same traffic where a
platform would, one topic per source, keyed by the model, asset or service a message is about
(so each one's messages stay in order on one partition), so partitions, keys, consumer lag and
broker trouble are exercised too. It counts events the way `hub run` stores them: `--events N`
means N stored events, however many messages carry them.
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import msgspec
import orjson

from config.errors import HubError
from config.settings import HubConfig, kafka_client_config
from connectors import shutdown
from connectors.kafka_producer import ProduceError, TopicProducer, prepare_topics
from connectors.synthetic import Traffic
from connectors.synthetic_incidents import FORMATS, INCIDENTS, TELEMETRY_ONLY
from operators.normalize import detect_format
from schemas.events import SOURCE_OF_TYPE

CHUNK_EVENTS = 2000  # events generated and queued per step when not rate-limited
STEPS_PER_S = 10  # a rate-limited run sends in this many steps per second
FAST_EVENT_RATE = 50_000.0  # event-time spread within a chunk when running as fast as possible
INCIDENT_WINDOW = (0.5, 0.8)  # incidents run over this share of a bounded run ...
INCIDENT_UNBOUNDED_S = (120.0, 300.0)  # ... or over these seconds of one stopped by Ctrl-C
FLUSH_TIMEOUT_S = 90.0
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*(ms|s|m|min|h)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, None: 1.0}
_KEY_FIELDS = ("model", "asset_id", "assetId", "resource_id", "resourceId", "budget_id", "budgetId")


class ProduceArgsError(HubError):
    """Flags that do not fit together."""


class Plan(msgspec.Struct, frozen=True):
    """What to send, checked once up front."""

    events: int | None  # stop after this many events (None: duration or Ctrl-C)
    duration_s: float | None
    rate: float | None  # events (or file lines) per second; None: as fast as possible
    fmt: str
    incidents: dict[str, str]


def parse_duration(text: str) -> float:
    """'90' / '90s' / '1.5m' / '500ms' / '2h' -> seconds."""
    m = _DURATION.match(text)
    if not m or float(m.group(1)) <= 0:
        raise ProduceArgsError(f"--duration {text!r}: expected a positive time like 60s, 5m, 1h or 500ms")
    return float(m.group(1)) * _UNIT_S[m.group(2)]


def parse_incidents(specs: list[str], fmt: str) -> dict[str, str]:
    """['latency-spike', 'cost-surge:search'] -> {kind: target}, each checked against the format."""
    out: dict[str, str] = {}
    for spec in specs:
        kind, _, target = spec.partition(":")
        if kind not in INCIDENTS:
            raise ProduceArgsError(f"--incident {spec}: unknown incident; one of {', '.join(INCIDENTS)} "
                                   "(optionally KIND:TARGET)")
        what, default, formats = INCIDENTS[kind]
        if fmt not in formats:
            raise ProduceArgsError(f"--incident {kind} needs security/policy events, which --format {fmt} does not "
                                   f"carry (use {', '.join(f for f in FORMATS if f in formats)})")
        out[kind] = target or default
    return out


def make_plan(args: argparse.Namespace) -> Plan:
    if args.events is not None and args.events <= 0:
        raise ProduceArgsError("--events must be > 0")
    if args.rate is not None and args.rate <= 0:
        raise ProduceArgsError("--rate must be > 0")
    if not 0 <= args.bad_fraction < 1 or not 0 <= args.duplicate_fraction < 1:
        raise ProduceArgsError("--bad-fraction and --duplicate-fraction must be in [0, 1)")
    duration = parse_duration(args.duration) if args.duration else None
    if args.file:
        given = [f for f, v in (("--events", args.events), ("--incident", args.incident), ("--seed", args.seed),
                                ("--format", args.format)) if v not in (None, [])]
        if given:
            raise ProduceArgsError(f"{', '.join(given)}: for generated traffic; --file replays the file as it is")
        if args.file != "-" and not Path(args.file).is_file():
            raise ProduceArgsError(f"file {args.file} does not exist or is not a file")
        return Plan(None, duration, args.rate, "file", {})
    fmt = args.format or "mix"
    events = args.events
    if events is None and duration is not None and args.rate is not None:
        events = max(1, round(args.rate * duration))  # --rate R --duration D sends R x D events over D
    return Plan(events, duration, args.rate, fmt, parse_incidents(args.incident or [], fmt))


class ProgressLine:
    """The live view: on a terminal one line rewritten every second; otherwise (a log, a pipe) a
    plain line every `log_interval_s`, so a long run is never silent. Driven by the send loop."""

    def __init__(self, stream: IO[str] | None = None, log_interval_s: float = 10.0) -> None:
        self.stream = stream = stream or sys.stderr  # looked up now: sys.stderr may have been replaced
        self.tty = stream.isatty()
        self.interval = 1.0 if self.tty else log_interval_s
        self.started = time.monotonic()
        self.last = self.started
        self.open = False  # a tty line is on screen without its newline

    def maybe(self, text: str) -> None:
        now = time.monotonic()
        if now - self.last < self.interval:
            return
        self.last = now
        if self.tty:
            self.stream.write("\r" + text + "   ")
            self.open = True
        else:
            self.stream.write(f"hub produce: {text}\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        """A line of its own (an incident starting), not overwritten by the next update."""
        self.end()
        self.stream.write(f"hub produce: {text}\n")
        self.stream.flush()

    def end(self) -> None:
        if self.open:
            self.stream.write("\n")
            self.open = False


class Sender:
    """Sends, paces and reports; shared by generated traffic and file replays."""

    def __init__(self, producer: TopicProducer, plan: Plan, unit: str) -> None:
        self.producer = producer
        self.plan = plan
        self.unit = unit
        self.count = 0  # events (generated) or lines (file)
        self.progress = ProgressLine()
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def should_stop(self) -> bool:
        if shutdown.requested.is_set():
            return True
        if self.plan.events is not None and self.count >= self.plan.events:
            return True
        return self.plan.duration_s is not None and self.elapsed() >= self.plan.duration_s

    def step_done(self, counted: int) -> None:
        """After a step: serve delivery reports, show progress, keep to the rate."""
        self.count += counted
        self.producer.poll()
        self.progress.maybe(self.status())
        if self.plan.rate is not None:
            ahead = self.count / self.plan.rate - self.elapsed()
            if self.plan.duration_s is not None:
                ahead = min(ahead, self.plan.duration_s - self.elapsed())
            if ahead > 0:
                shutdown.requested.wait(ahead)

    def status(self) -> str:
        p = self.producer
        rate = self.count / max(self.elapsed(), 1e-9)
        text = (f"{self.count:,} {self.unit} ({rate:,.0f}/s)  {p.sent:,} messages  {p.bytes / 1e6:,.1f} MB  "
                f"delivered {p.delivered:,}  failed {sum(p.failed.values()):,}  queued {p.queued():,}")
        return text + (f"  broker: {p.broker_error}" if p.broker_error else "")


def run(args: argparse.Namespace, cfg: HubConfig) -> int:
    plan = make_plan(args)
    if not cfg.kafka.bootstrap_servers:
        raise ProduceArgsError("no Kafka to produce to: pass --kafka HOST:PORT or set kafka.bootstrap_servers")
    if args.partitions <= 0:
        raise ProduceArgsError("--partitions must be > 0")
    conf = kafka_client_config(cfg)
    by_source = cfg.kafka.topics.by_source()
    if args.topic:
        by_source = {s: args.topic for s in by_source}
    needed = [by_source["telemetry"]] if plan.fmt in TELEMETRY_ONLY else list(by_source.values())
    for topic in prepare_topics(conf, needed, cfg.kafka.connect_timeout_s, args.partitions):
        print(f"hub produce: created topic {topic} ({args.partitions} partition{'s' * (args.partitions > 1)})",
              file=sys.stderr)
    producer = TopicProducer(conf)
    shutdown.install()  # Ctrl-C / SIGTERM: stop sending, deliver what is queued, report
    if args.file:
        sender = Sender(producer, plan, "lines")
        what = f"{args.file}"
        bad = _replay(sender, args.file, by_source, bool(args.topic))
    else:
        sender = Sender(producer, plan, "events")
        what = f"{plan.fmt} traffic"
        bad = {}
        _generate(sender, args, by_source)
    sender.progress.end()
    stopped = shutdown.requested.is_set()
    producer.flush(FLUSH_TIMEOUT_S)
    elapsed = sender.elapsed()
    topics = ", ".join(f"{t} {n:,}" for t, n in sorted(producer.per_topic.items()))
    print(f"hub produce: {'stopped' if stopped else 'done'} in {elapsed:.1f}s: {sender.count:,} {sender.unit} of "
          f"{what} in {producer.sent:,} messages ({sender.count / max(elapsed, 1e-9):,.0f} {sender.unit}/s, "
          f"{producer.bytes / 1e6:,.1f} MB){': ' + topics if topics else ''}", file=sys.stderr)
    if bad:
        skipped = sum(len(v) for v in bad.values())
        detail = "; ".join(f"{reason}: line{'s' * (len(lines) > 1)} {', '.join(map(str, lines[:5]))}"
                           f"{' ...' if len(lines) > 5 else ''}" for reason, lines in bad.items())
        print(f"hub produce: skipped {skipped:,} line{'s' * (skipped > 1)} that name no source ({detail})",
              file=sys.stderr)
    failures = producer.failures()
    if failures:
        causes = ", ".join(f"{name} {n:,}" for name, n in sorted(producer.failed.items()))
        if producer.undelivered:
            causes += f"{', ' if causes else ''}still queued at exit {producer.undelivered:,}"
        raise ProduceError(f"{failures:,} of {producer.sent:,} messages were not delivered ({causes})"
                           f"{'; first: ' + producer.first_failure if producer.first_failure else ''}")
    return 0


def _generate(sender: Sender, args: argparse.Namespace, by_source: dict[str, str]) -> None:
    plan = sender.plan
    traffic = Traffic(args.seed if args.seed is not None else 7, plan.fmt, bad_fraction=args.bad_fraction,
                      duplicate_fraction=args.duplicate_fraction, proto_share=0.5 if plan.fmt == "mix" else 0.0)
    step = CHUNK_EVENTS if plan.rate is None else max(1, min(CHUNK_EVENTS, int(plan.rate / STEPS_PER_S)))
    start_ms = int(time.time() * 1000)
    active = False
    send = sender.producer.send
    while not sender.should_stop():
        n = step if plan.events is None else min(step, plan.events - sender.count, *_to_boundary(plan, sender.count))
        on = bool(plan.incidents) and _incident_on(plan, sender.count, sender.elapsed())
        if on != active:
            active = on
            names = ", ".join(f"{k} ({v})" for k, v in plan.incidents.items())
            sender.progress.note(f"incident {'started' if on else 'ended'}: {names} at event {sender.count:,}")
        if plan.rate is not None:  # event times follow the wall clock the rate keeps to
            messages = traffic.next(n, start_ms + int(sender.count / plan.rate * 1000), plan.rate,
                                    plan.incidents if on else None)
        else:
            messages = traffic.next(n, int(time.time() * 1000), FAST_EVENT_RATE, plan.incidents if on else None)
        for m in messages:
            send(by_source[m.source], m.key, m.value)
        sender.step_done(n)


def _incident_bounds(events: int) -> tuple[int, int]:
    lo, hi = INCIDENT_WINDOW
    return int(lo * events), int(hi * events)


def _to_boundary(plan: Plan, done: int) -> list[int]:
    """Events left before an incident starts or ends, so no step straddles the change."""
    if not plan.incidents or plan.events is None:
        return []
    return [b - done for b in _incident_bounds(plan.events) if b > done]


def _incident_on(plan: Plan, events: int, elapsed_s: float) -> bool:
    lo, hi = INCIDENT_WINDOW
    if plan.events is not None:
        start, end = _incident_bounds(plan.events)
        return start <= events < end
    if plan.duration_s is not None:
        return lo * plan.duration_s <= elapsed_s < hi * plan.duration_s
    return INCIDENT_UNBOUNDED_S[0] <= elapsed_s < INCIDENT_UNBOUNDED_S[1]


def _replay(sender: Sender, path: str, by_source: dict[str, str], one_topic: bool) -> dict[str, list[int]]:
    """Send the file's lines as they are; lines that name no source are skipped and reported
    (reason -> line numbers), unless everything goes to one --topic anyway."""
    bad: dict[str, list[int]] = {}
    send = sender.producer.send
    step = CHUNK_EVENTS if sender.plan.rate is None else max(1, int(sender.plan.rate / STEPS_PER_S))
    lines = _lines(path)
    while not sender.should_stop():
        sent = 0
        for lineno, line in lines:
            source, key, reason = _route(line)
            if reason and not one_topic:
                bad.setdefault(reason, []).append(lineno)
                continue
            send(by_source[source or "telemetry"], key, line)
            sent += 1
            if sent >= step:
                break
        if not sent:
            break
        sender.step_done(sent)
    return bad


def _lines(path: str) -> Iterator[tuple[int, bytes]]:
    try:
        stream = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        raise ProduceArgsError(f"cannot read {path}: {exc.strerror or exc}") from None
    with stream:
        for lineno, raw in enumerate(stream, 1):
            line = raw.strip()
            if line:
                yield lineno, line


def _route(line: bytes) -> tuple[str | None, bytes | None, str]:
    """(source, key, why it cannot be routed) of one line: OTLP goes to telemetry, an envelope to
    the source of its event type."""
    fmt = detect_format(line)
    if fmt is None:
        return None, None, "not a JSON object"
    if fmt.startswith("otlp"):
        return "telemetry", None, ""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None, None, "not valid JSON"
    if not isinstance(obj, dict):
        return None, None, "not a JSON object"
    event_type = obj.get("event_type" if fmt == "hub" else "eventType")
    source = SOURCE_OF_TYPE.get(event_type) if isinstance(event_type, str) else None
    if source is None:
        return None, None, "unknown event type"
    fields = obj.get("payload" if fmt == "hub" else "data")
    key = next((fields[k] for k in _KEY_FIELDS if isinstance(fields, dict) and isinstance(fields.get(k), str)), None)
    return source, key.encode() if key else None, ""
