"""Spans recorded from three real OpenAI instrumentations (OpenTelemetry's openai-v2, OpenLLMetry,
OpenInference) around the real `openai` client (tests/data/genai, made by
scripts/record_genai_spans.py): every call becomes exactly one request with the right outcome,
tokens and cost, in OTLP/JSON and protobuf, and through the whole flow into ClickHouse.

The truth is the fake server's own log (expected.json), not the spans. Where an instrumentation
does not record something, the expectation says so (see tests/data/genai/README.md).
"""
from __future__ import annotations

import json
import struct
from collections import Counter
from contextlib import closing
from pathlib import Path

import pytest

from config.cost import ModelSettings, load_prices
from config.settings import ClickHouseSettings, load_config
from connectors.clickhouse import connect
from flows.cli import main
from flows.pipeline import shard_steps
from operators.cost import PriceTable, call_cost
from operators.normalize.model_names import ModelNames
from operators.shard import ShardState, process
from schemas.items import RawBatch
from schemas.raw import RawMessage
from schemas.rows import COLUMN_NAMES

DATA = Path(__file__).parent / "data" / "genai"
EXPECTED = json.loads((DATA / "expected.json").read_text())["services"]
INSTRUMENTATIONS = {"otel_openai_v2": "svc-otel-v2", "openllmetry": "svc-openllmetry",
                    "openinference": "svc-openinference"}
# The recordings keep their timestamps: judge them against no age limit.
ENV = {"HUB_NORMALIZATION__MAX_EVENT_AGE_S": str(100 * 365 * 86_400)}


def messages(instrumentation: str, encoding: str) -> list[bytes]:
    if encoding == "json":
        return [line for line in (DATA / f"{instrumentation}.otlp.jsonl").read_bytes().splitlines() if line]
    data, pos, out = (DATA / f"{instrumentation}.otlp.pb.lp").read_bytes(), 0, []
    while pos < len(data):
        (n,) = struct.unpack_from(">I", data, pos)
        out.append(data[pos + 4:pos + 4 + n])
        pos += 4 + n
    return out


def truth(service: str) -> dict[str, int]:
    """What the server answered, as each instrumentation can know it."""
    log = EXPECTED[service]["calls_log"]
    ok = [c for c in log if c["outcome"] == "ok" and c["tokens"] is not None]
    out = {"requests": len(log), "errors": sum(c["outcome"] != "ok" for c in log),
           "input": sum(c["tokens"][0] for c in ok), "output": sum(c["tokens"][1] for c in ok),
           "cached": sum(c["tokens"][2] for c in ok), "reasoning": sum(c["tokens"][3] for c in ok),
           "priced": len(ok)}
    if service == "svc-otel-v2":  # records neither cache reads nor reasoning tokens
        out["cached"] = out["reasoning"] = 0
    if service == "svc-openllmetry":
        out["errors"] -= sum(c["outcome"] == "stream_drop" for c in log)  # a cut stream ends with status OK
        out["reasoning"] = sum(c["tokens"][3] for c in ok if not c["stream"])  # non-streamed calls only
    return out


@pytest.fixture(scope="module")
def steps():  # type: ignore[no-untyped-def]
    return shard_steps(load_config(environ=ENV))


@pytest.fixture(scope="module")
def prices() -> PriceTable:
    return PriceTable(load_prices([]), ModelNames(ModelSettings()))


@pytest.mark.parametrize("encoding", ["json", "proto"])
@pytest.mark.parametrize("instrumentation", sorted(INSTRUMENTATIONS))
def test_every_call_is_one_request_with_its_outcome_tokens_and_cost(steps, prices, instrumentation: str,
                                                                     encoding: str) -> None:
    service = INSTRUMENTATIONS[instrumentation]
    batch = [RawMessage(v, "llm.telemetry", 0, i) for i, v in enumerate(messages(instrumentation, encoding))]
    out = process(ShardState(300_000, 100_000, 60_000), RawBatch("llm.telemetry-0", batch, final=True), steps)
    assert out.dead_letters == []
    cols = dict(zip(COLUMN_NAMES, out.event_columns))
    rows = [dict(zip(cols, r)) for r in zip(*cols.values())]
    assert {r["tags"]["service.name"] for r in rows} == {service}
    expect = truth(service)
    got = {"requests": len(rows), "errors": sum(r["is_error"] for r in rows),
           "input": sum(r["input_tokens"] or 0 for r in rows), "output": sum(r["output_tokens"] or 0 for r in rows),
           "cached": sum(r["cached_tokens"] or 0 for r in rows),
           "reasoning": sum(r["reasoning_tokens"] or 0 for r in rows),
           "priced": sum(r["cost_source"] == "inferred" for r in rows)}
    assert got == expect
    # Every call counts against one canonical model (dated response models folded), none unknown.
    requested = Counter(EXPECTED[service]["request_models"])
    assert Counter(r["model"] for r in rows) == requested
    # Its cost is its own tokens at the table's price for the model that answered, at its time.
    for r in rows:
        if r["cost_source"] != "inferred":
            assert r["cost_usd"] is None and r["input_tokens"] is None
            continue
        rates = prices.rates(r["provider"], r["response_model"] or r["request_model"], r["event_time"])
        assert rates is not None, r["response_model"]
        assert r["cost_usd"] == pytest.approx(call_cost(rates, r["input_tokens"], r["output_tokens"],
                                                        r["cached_tokens"], None, r["reasoning_tokens"]))
        assert r["billed"] == 1
    # Everything else in the exports (HTTP client spans, the script's own spans) is accounted as skipped.
    spans = sum(len(ss.get("spans", ())) for v in messages(instrumentation, "json")
                for rs in json.loads(v)["resourceSpans"] for ss in rs["scopeSpans"])
    assert sum(s.count for s in out.skipped) == spans - len(rows)
    assert {s.reason for s in out.skipped} == {"not_llm_span"}


def test_the_whole_flow_stores_exact_per_service_totals(tmp_path: Path) -> None:
    src = tmp_path / "spans.jsonl"
    src.write_bytes(b"\n".join(v for inst in sorted(INSTRUMENTATIONS) for v in messages(inst, "json")) + b"\n")
    config = tmp_path / "hub.toml"
    config.write_text(f"[normalization]\nmax_event_age_s = {ENV['HUB_NORMALIZATION__MAX_EVENT_AGE_S']}\n")
    dsn = f"chdb://{tmp_path / 'store'}"
    assert main(["run", "--config", str(config), "--input", str(src), "--clickhouse", dsn]) == 0
    with closing(connect(ClickHouseSettings(dsn=dsn))) as client:
        rows = client.query(
            "SELECT tags['service.name'], count(), sum(is_error), ifNull(sum(input_tokens), 0), "
            "ifNull(sum(output_tokens), 0), ifNull(sum(cached_tokens), 0), ifNull(sum(reasoning_tokens), 0), "
            "countIf(cost_source = 'inferred') "
            "FROM events FINAL GROUP BY 1").result_rows
        assert client.query("SELECT count() FROM dead_letters").result_rows == [(0,)]
        skipped = client.query("SELECT sum(inputs) FROM skipped_inputs FINAL").result_rows[0][0]
        spend = client.query("SELECT sum(cost_usd) FROM events FINAL WHERE billed = 1").result_rows[0][0]
        rolled = client.query("SELECT sum(sum) FROM metrics_1h_stats WHERE metric = 'cost_usd'").result_rows[0][0]
        requests = client.query("SELECT sum(count) FROM metrics_1d_stats WHERE metric = 'requests'").result_rows
    keys = ("requests", "errors", "input", "output", "cached", "reasoning", "priced")
    assert {r[0]: dict(zip(keys, r[1:])) for r in rows} == {s: truth(s) for s in INSTRUMENTATIONS.values()}
    assert skipped == 3 * 50
    assert spend > 0 and rolled == pytest.approx(spend)  # the rollups hold what the raw events say
    assert requests == [(3 * 28,)]
