"""Poison through the whole flow: every numeric and string field of every event type, in every
wire format, set to hostile values, goes through the shard step (normalize, dedup, pricing,
columns, windows), the detection step and the real ClickHouse writer into the embedded store.
Nothing crashes, and every input is stored or dead-lettered, with its exact bytes."""
from __future__ import annotations

import time
from contextlib import closing
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.settings import load_config
from connectors.clickhouse import connect
from connectors.clickhouse_sink import _Writer
from connectors.migrations import migrate
from flows.pipeline import shard_steps
from operators.detect import DetectionState
from operators.normalize.otlp import GENAI_ATTRIBUTES
from operators.shard import ShardState, process
from schemas.items import RawBatch
from schemas.raw import RawMessage
from tests.fixtures_events import (
    CURRENT_ATTRIBUTES,
    PAYLOADS,
    base_message,
    camel,
    hub_message,
    otlp_json_message,
    otlp_proto_message,
    otlp_span,
)

FIELDS = sorted((t, f.name) for t, p in PAYLOADS.items() for f in msgspec.structs.fields(p) if f.name != "type")
ENVELOPE = ["event_id", "event_time", "source", "schema_version", "correlation_id", "severity", "environment",
            "region", "tags"]
HUGE = "x" * 300_000
NASTY = [2**64, 2**63, 2**53 + 1, -(2**63) - 1, 10**30, -1, 1e308, -1e308, 1e-320, -0.0, 1.5e15, HUGE, "",
         "\u0000\u001f\u2028", "🚀" * 1000, "1e999", "NaN", "-5ms", True, None, [], {}, [1, [2, [3]]],
         {"a": {"b": 1}}, "2026-13-45T99:99:99Z"]
POISON = st.one_of(
    st.sampled_from(NASTY),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
NOW = int(time.time() * 1000)
RECENT = NOW - 120_000


def poisoned(fmt: str, target: tuple[str, str] | str, value: Any, i: int) -> bytes:
    if fmt == "otlp_json" or fmt == "otlp_proto":
        attrs = dict(CURRENT_ATTRIBUTES, **{target: value})
        span = otlp_span({k: v for k, v in attrs.items() if v is not None and v != [] and v != {}},
                         span_id=f"{i:016x}", start_ns=RECENT * 1_000_000, end_ns=RECENT * 1_000_000 + 5_000_000)
        try:
            return (otlp_json_message if fmt == "otlp_json" else otlp_proto_message)([span])
        except Exception:  # noqa: BLE001 - a value protobuf itself cannot hold: send it as JSON
            return otlp_json_message([span])
    if isinstance(target, str):  # an envelope field
        event_type = "telemetry.request"
        overrides = {target: value}
    else:
        event_type, field = target
        overrides = {}
    if fmt == "hub":
        payload = msgspec.to_builtins(PAYLOADS[event_type])
        payload.pop("type", None)
        if not isinstance(target, str):
            payload[field] = value
        return hub_message(event_type, **{"event_id": f"p{i}", "event_time": RECENT, "payload": payload, **overrides})
    data = camel(msgspec.to_builtins(PAYLOADS[event_type]))
    data.pop("type", None)
    if not isinstance(target, str):
        data[camel({field: 0}).popitem()[0]] = value
    base_overrides = {{"event_id": "eventId", "event_time": "timestamp"}.get(k, k): v for k, v in overrides.items()}
    return base_message(event_type, data=data, **{"eventId": f"p{i}",
                                                   "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                              time.gmtime(RECENT / 1000)),
                                                   **base_overrides})


CASE = st.one_of(
    st.tuples(st.sampled_from(["hub", "base"]), st.sampled_from(FIELDS), POISON),
    st.tuples(st.sampled_from(["hub", "base"]), st.sampled_from(ENVELOPE), POISON),
    st.tuples(st.sampled_from(["otlp_json", "otlp_proto"]), st.sampled_from(sorted(GENAI_ATTRIBUTES)), POISON),
)


@pytest.fixture(scope="module")
def flow(tmp_path_factory):  # type: ignore[no-untyped-def]
    dsn = f"chdb://{tmp_path_factory.mktemp('poison') / 'store'}"
    cfg = load_config(environ={"HUB_CLICKHOUSE__DSN": dsn})
    with closing(connect(cfg.clickhouse)) as client:
        migrate(client, cfg.retention)
    writer = _Writer(cfg)
    yield shard_steps(cfg), writer, cfg
    writer.close()


RUN = iter(range(10**9))


def run_through(flow, cases: list[tuple[str, Any, Any]]) -> None:  # type: ignore[no-untyped-def]
    """The cases as one batch through shard step, detection and writer; then check the store."""
    steps, writer, cfg = flow
    run = next(RUN)
    topic = f"poison-{run}"
    values = [poisoned(fmt, target, value, run * 100_000 + i) for i, (fmt, target, value) in enumerate(cases)]
    messages = [RawMessage(v, topic, 0, i, NOW) for i, v in enumerate(values)]
    out = process(ShardState(300_000, 1_000_000, 60_000), RawBatch(topic, messages, final=True), steps, now_ms=NOW)
    detection = DetectionState(cfg.detection).step(topic, out.windows, out.signals, True)
    writer.write_batch([out, detection])
    writer.flush()

    # One span or one envelope per message: each ends as exactly one event, dead letter or skip.
    assert out.events + len(out.dead_letters) + sum(s.count for s in out.skipped) == len(messages)
    with closing(connect(cfg.clickhouse)) as client:
        letters = client.query("SELECT offset, event_id, raw FROM dead_letters FINAL WHERE topic = {t:String}",
                               parameters={"t": topic}, column_formats={"raw": "bytes"}).result_rows
        ids = out.event_columns[0] if out.event_columns else []
        stored = client.query("SELECT uniqExact(event_id) FROM events WHERE event_id IN {ids:Array(String)}",
                              parameters={"ids": ids}).result_rows
    assert stored == [(len(set(ids)),)]
    assert len(letters) == len(out.dead_letters)
    for offset, event_id, raw in letters:  # the input's bytes exactly; a rejected span: that span, by its id
        fmt = cases[offset][0]
        if fmt in ("hub", "base") or raw == values[offset]:
            assert raw == values[offset]
        else:
            assert raw and event_id == f"{run * 100_000 + offset:016x}"


@pytest.mark.parametrize("fmt", ["hub", "base", "otlp_json", "otlp_proto"])
def test_every_field_of_every_type_with_every_nasty_value(flow, fmt: str) -> None:  # type: ignore[no-untyped-def]
    """Exhaustive over (field, value) for each format: the values most likely to break a layer."""
    targets = sorted(GENAI_ATTRIBUTES) if fmt.startswith("otlp") else FIELDS + ENVELOPE
    run_through(flow, [(fmt, target, value) for target in targets for value in NASTY])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(cases=st.lists(CASE, min_size=1, max_size=25))
def test_random_poison_never_crashes_and_every_input_is_stored_or_dead_lettered(flow, cases) -> None:  # type: ignore[no-untyped-def]
    run_through(flow, cases)
