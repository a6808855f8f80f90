"""Cost through the whole flow: price change events price later calls and survive a restart, and
spend counts each call once whichever source is the bill."""
from __future__ import annotations

import json
import time
from contextlib import closing
from pathlib import Path

import pytest

from config.settings import ClickHouseSettings
from connectors.clickhouse import connect
from flows.cli import main

T0 = (int(time.time() * 1000) // 3_600_000 - 2) * 3_600_000


def call(i: int, t: int, model: str = "acme-llm", **extra: object) -> str:
    return json.dumps({"event_type": "telemetry.request", "event_id": f"call-{i}", "event_time": t,
                       "source": "telemetry", "payload": {"model": model, "provider": "acme", "latency_ms": 100.0,
                                                          "input_tokens": 1000, "output_tokens": 500, **extra}})


def price(t: int, input_usd: float, output_usd: float) -> str:
    return json.dumps({"event_type": "cost.price", "event_id": f"price-{t}", "event_time": t, "source": "cost",
                       "payload": {"provider": "acme", "model": "acme-llm", "input": input_usd,
                                   "output": output_usd}})


def run(tmp: Path, name: str, lines: list[str], config: str = "") -> str:
    src = tmp / f"{name}.jsonl"
    src.write_text("\n".join(lines) + "\n")
    cfg = tmp / f"{name}.toml"
    cfg.write_text(config)
    dsn = f"chdb://{tmp / 'store'}"
    assert main(["run", "--config", str(cfg), "--input", str(src), "--clickhouse", dsn]) == 0
    return dsn


def costs(dsn: str) -> dict[str, tuple[float | None, str]]:
    with closing(connect(ClickHouseSettings(dsn=dsn))) as client:
        rows = client.query("SELECT event_id, cost_usd, cost_source FROM events FINAL "
                            "WHERE event_type = 'telemetry.request'").result_rows
    return {event_id: (usd, source) for event_id, usd, source in rows}


def test_a_price_change_prices_later_calls_and_survives_a_restart(tmp_path: Path) -> None:
    # An unpriced model until its price is announced at T0 + 60 s; a raise at T0 + 120 s.
    dsn = run(tmp_path, "first", [call(1, T0), price(T0 + 60_000, 2.0, 8.0), call(2, T0 + 90_000),
                                  price(T0 + 120_000, 4.0, 16.0), call(3, T0 + 150_000)])
    got = costs(dsn)
    assert got["call-1"] == (None, "unknown")
    assert got["call-2"][1] == "inferred" and got["call-2"][0] == pytest.approx((1000 * 2 + 500 * 8) / 1e6)
    assert got["call-3"][0] == pytest.approx((1000 * 4 + 500 * 16) / 1e6)
    # A new run (a restart) prices with what the store kept, although its input has no price event.
    run(tmp_path, "second", [call(4, T0 + 100_000), call(5, T0 + 200_000)])
    got = costs(dsn)
    assert got["call-4"][0] == pytest.approx((1000 * 2 + 500 * 8) / 1e6)
    assert got["call-5"][0] == pytest.approx((1000 * 4 + 500 * 16) / 1e6)


@pytest.mark.parametrize("count_from, expected", [("calls", 0.06), ("cost_events", 0.05)])
def test_spend_counts_each_call_once(tmp_path: Path, count_from: str, expected: float) -> None:
    """Each call is reported twice (the span with tokens, the CostOps record with a charge): spend
    is one or the other, never both."""
    lines = [price(T0, 2.0, 8.0)]
    for i in range(10):
        lines.append(call(i, T0 + 1000 + i))
        lines.append(json.dumps({"event_type": "cost.tokens", "event_id": f"charge-{i}", "event_time": T0 + 1000 + i,
                                 "source": "cost", "payload": {"model": "acme-llm", "total_cost": 0.005,
                                                               "request_id": f"call-{i}"}}))
    dsn = run(tmp_path, "spend", lines, f'[cost]\ncount_from = "{count_from}"\n')
    with closing(connect(ClickHouseSettings(dsn=dsn))) as client:
        billed = client.query("SELECT sum(cost_usd) FROM events FINAL WHERE billed = 1").result_rows[0][0]
        composite = client.query("SELECT sum(cost_usd) FROM composite_1h").result_rows[0][0]
        sources = dict(client.query("SELECT event_type, any(cost_source) FROM events FINAL "
                                    "WHERE event_type IN ('telemetry.request', 'cost.tokens') GROUP BY 1").result_rows)
    assert billed == pytest.approx(expected) and composite == pytest.approx(expected)
    assert sources == {"telemetry.request": "inferred", "cost.tokens": "reported"}
