"""`hub run --input FILE` end to end on the embedded store: what lands where, exactly."""
from __future__ import annotations

import json

import numpy as np
import pytest

from config.cost import ModelSettings, load_prices
from config.settings import ClickHouseSettings
from connectors.clickhouse import connect
from flows.cli import main
from operators.cost import PriceTable, call_cost
from operators.normalize.model_names import ModelNames

import time

# A recent whole hour: old enough to be all in the past, young enough for the age check.
T0 = (int(time.time() * 1000) // 3_600_000 - 3) * 3_600_000
MODELS = ("gpt-4o", "claude-3-5-sonnet", "llama-3-70b")
LINES: list[list[bytes]] = []  # the input file's lines, as the fixture wrote them


def request(i: int, t_ms: int, model: str, latency: float, error: bool = False) -> dict:
    return {
        "event_type": "telemetry.request", "event_id": f"req-{i}", "event_time": t_ms, "source": "telemetry",
        "tags": {"team": "search", "endpoint": "/v1/chat"},
        "payload": {"model": model, "provider": "openai", "latency_ms": latency, "input_tokens": 100 + i % 50,
                    "output_tokens": 20 + i % 7, "is_error": error},
    }


def cost(i: int, t_ms: int, model: str, usd: float) -> dict:
    return {"event_type": "cost.tokens", "event_id": f"cost-{i}", "event_time": t_ms, "source": "cost",
            "tags": {"team": "search", "endpoint": "/v1/chat"},
            "payload": {"model": model, "input_tokens": 100, "output_tokens": 20, "total_cost": usd, "currency": "USD"}}


@pytest.fixture(scope="module")
def run_result(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipeline")
    rng = np.random.default_rng(5)
    lines: list[str] = []
    expected: dict[tuple[str, int], list[float]] = {}
    n = 3000
    times = T0 + np.sort(rng.integers(0, 6 * 60_000, n))
    for i, t in enumerate(times.tolist()):
        model = MODELS[i % 3]
        lat = float(round(rng.lognormal(6, 0.5), 3))
        lines.append(json.dumps(request(i, t, model, lat, error=(i % 50 == 0))))
        expected.setdefault((model, t - t % 60_000), []).append(lat)
    for i in range(30):
        lines.append(json.dumps(cost(i, T0 + i * 10_000, MODELS[i % 3], 0.01)))
    lines.sort(key=lambda line: json.loads(line)["event_time"])  # in time order: only the planted event is late
    bad = [
        '{"event_type": "telemetry.request", "event_id": "x1", "event_tim',       # malformed JSON
        json.dumps({"event_type": "telemetry.teleport", "event_id": "x2", "event_time": T0, "payload": {}}),
        json.dumps(request(10_001, T0 + 1000, "gpt-4o", -5.0)),                     # negative latency
        json.dumps(request(0, int(times[0]), "gpt-4o", 1.0)),                       # duplicate id req-0
    ]
    late = json.dumps(request(20_000, T0 + 500, "gpt-4o", 100.0))                  # minute 0, after minute 5
    not_utf8 = b'{"event_type": "telemetry.request", "event_id": "\xff\xfe"}'
    src = tmp / "events.jsonl"
    src.write_bytes("\n".join(lines + bad + [late]).encode() + b"\n" + not_utf8 + b"\n")
    LINES.append(src.read_bytes().splitlines())
    dsn = f"chdb://{tmp}/store"
    assert main(["run", "--input", str(src), "--clickhouse", dsn]) == 0
    client = connect(ClickHouseSettings(dsn=dsn))
    yield client, expected, n
    client.close()


def q(client, sql):
    return client.query(sql).result_rows


def test_every_good_event_is_stored_once(run_result):
    client, _, n = run_result
    assert q(client, "SELECT count() FROM events FINAL WHERE source = 'telemetry'") == [(n + 1,)]
    assert q(client, "SELECT count() FROM events FINAL WHERE source = 'cost'") == [(30,)]


def test_bad_input_is_dead_lettered_with_reasons(run_result):
    client, *_ = run_result
    # Every dead letter keeps its input line's exact bytes and its line number as offset; a
    # duplicate too (not a re-encoding of the event it repeats).
    rows = q(client, "SELECT code, field, reason, offset FROM dead_letters FINAL ORDER BY offset")
    raws = client.query("SELECT raw FROM dead_letters FINAL ORDER BY offset", column_formats={"raw": "bytes"})
    codes = [r[0] for r in rows]
    assert len(rows) == 5, rows
    assert codes == ["malformed_json", "unknown_event_type", "negative_value", "duplicate", "malformed_json"]
    assert "latency" in rows[2][1] and "req-0" in rows[3][2]
    assert all(r[2] for r in rows)  # a human-readable reason every time
    lines = LINES[0]
    assert [raw for (raw,) in raws.result_rows] == [lines[offset - 1] for *_, offset in rows]


def test_late_event_is_counted_and_kept(run_result):
    client, *_ = run_result
    assert q(client, "SELECT event_id, toUnixTimestamp64Milli(event_time) FROM late_events FINAL") == [("req-20000", T0 + 500)]
    assert q(client, "SELECT count() FROM events FINAL WHERE event_id = 'req-20000'") == [(1,)]


def test_window_metrics_match_the_input(run_result):
    client, expected, _ = run_result
    rows = q(client, "SELECT model, toUnixTimestamp(window_start) * 1000, count, sum, min, max, p95 FROM metrics_1m_stats "
                     "WHERE metric = 'latency_ms'")
    assert len(rows) == len(expected)
    for model, start, count, total, vmin, vmax, p95 in rows:
        vals = np.array(expected[(model, start)])
        assert count == len(vals) and total == pytest.approx(vals.sum())
        assert (vmin, vmax) == (vals.min(), vals.max())
        assert p95 == pytest.approx(np.quantile(vals, 0.95, method="lower"), rel=0.01)


def test_composites_cross_sources(run_result):
    client, _, n = run_result
    rows = q(client, "SELECT sum(requests), sum(errors), sum(cost_usd) FROM composite_1h")
    requests, errors, usd = rows[0]
    assert requests == n and errors == len(range(0, n, 50))
    # Spend is the calls' cost (inferred from the price table: gpt-4o and claude-3-5-sonnet are
    # priced, llama-3-70b is not); the cost source's per-request records restate them, not added.
    table = PriceTable(load_prices([]), ModelNames(ModelSettings()))
    expected = 0.0
    for i, t in enumerate(T0 + np.sort(np.random.default_rng(5).integers(0, 6 * 60_000, n))):
        rates = table.rates("openai", MODELS[i % 3], int(t))
        if rates is not None:
            expected += call_cost(rates, 100 + i % 50, 20 + i % 7)
    assert expected > 0 and usd == pytest.approx(expected)
    sources = dict(q(client, "SELECT cost_source, countIf(billed = 1) FROM events FINAL GROUP BY cost_source"))
    assert sources == {"inferred": 2 * n // 3 + 1, "unknown": n // 3, "reported": 0}
    rate = q(client, "SELECT round(sum(errors) / sum(requests), 6) FROM composite_1d")[0][0]
    assert rate == pytest.approx(len(range(0, n, 50)) / n, rel=1e-6)
