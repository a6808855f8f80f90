"""`hub reprice`: after a price change, stored calls and every cost rollup say what the new price
table says, reported costs stay, and a second run changes nothing."""
from __future__ import annotations

import json
import time
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path

import pytest

from config.settings import ClickHouseSettings
from connectors.clickhouse import connect
from flows.cli import main
from schemas.rollups import WINDOWS

T0 = (int(time.time() * 1000) // 86_400_000 - 2) * 86_400_000  # midnight two days ago
DAY = datetime.fromtimestamp(T0 / 1000, timezone.utc).strftime("%Y-%m-%d")
CHANGE_MS = T0 + 90 * 60_000


def price_file(path: Path, *entries: tuple[str, float, float]) -> Path:
    path.write_text("".join(f'[[price]]\nprovider = "acme"\nmodels = ["acme-llm"]\neffective_from = {day}\n'
                            f"input = {i}\noutput = {o}\n\n" for day, i, o in entries))
    return path


def config(tmp: Path, name: str, prices: Path) -> Path:
    path = tmp / f"{name}-hub.toml"
    path.write_text(f'[cost]\nprice_files = ["{prices}"]\n')
    return path


def cost_state(client) -> dict[str, object]:  # type: ignore[no-untyped-def]
    q = lambda sql: client.query(sql).result_rows  # noqa: E731
    state: dict[str, object] = {"events": q("SELECT event_id, round(cost_usd, 12), cost_source FROM events FINAL "
                                           "WHERE event_type = 'telemetry.request' ORDER BY event_id")}
    for w in WINDOWS:
        state[w.name] = q(f"SELECT model, window_start, count, round(sum, 9), round(max, 9), round(p50, 9) "
                          f"FROM {w.table}_stats WHERE metric = 'cost_usd' ORDER BY ALL")
    return state


def test_reprice_rewrites_inferred_costs_and_every_rollup_idempotently(tmp_path: Path) -> None:
    lines = []
    for i in range(240):  # one call a minute for 4 hours, growing sizes
        t = T0 + i * 60_000 + 5_000
        payload = {"model": "acme-llm", "provider": "acme", "latency_ms": 50.0, "input_tokens": 1000 + i,
                   "output_tokens": 100 + i}
        if i % 60 == 7:
            payload["cost_usd"] = 0.5  # reported: never repriced
        lines.append(json.dumps({"event_type": "telemetry.request", "event_id": f"c{i:03d}", "event_time": t,
                                 "source": "telemetry", "payload": payload}))
    src = tmp_path / "calls.jsonl"
    src.write_text("\n".join(lines) + "\n")
    dsn = f"chdb://{tmp_path / 'store'}"
    old = price_file(tmp_path / "old.toml", ("2020-01-01", 1.0, 2.0))
    assert main(["run", "--config", str(config(tmp_path, "old", old)), "--input", str(src), "--clickhouse", dsn]) == 0

    # A raise from 01:30 on the first day, announced afterwards as a price change event.
    new_cfg = config(tmp_path, "new", old)
    raise_event = json.dumps({"event_type": "cost.price", "event_id": "raise", "event_time": CHANGE_MS,
                              "source": "cost", "payload": {"provider": "acme", "model": "acme-llm",
                                                            "input": 3.0, "output": 6.0}})
    (tmp_path / "raise.jsonl").write_text(raise_event + "\n")
    assert main(["run", "--config", str(new_cfg), "--input", str(tmp_path / "raise.jsonl"),
                 "--clickhouse", dsn]) == 0
    with closing(connect(ClickHouseSettings(dsn=dsn))) as client:
        before = cost_state(client)
    assert main(["reprice", "--config", str(new_cfg), "--since", DAY, "--clickhouse", dsn, "--dry-run"]) == 0
    with closing(connect(ClickHouseSettings(dsn=dsn))) as client:
        assert cost_state(client) == before  # a dry run writes nothing
    assert main(["reprice", "--config", str(new_cfg), "--since", DAY, "--clickhouse", dsn]) == 0

    with closing(connect(ClickHouseSettings(dsn=dsn))) as client:
        first = cost_state(client)
    assert first != before
    expected = {}
    for i in range(240):
        t = T0 + i * 60_000 + 5_000
        rate_in, rate_out = (3.0, 6.0) if t >= CHANGE_MS else (1.0, 2.0)
        expected[f"c{i:03d}"] = (0.5, "reported") if i % 60 == 7 else (
            round(((1000 + i) * rate_in + (100 + i) * rate_out) / 1e6, 12), "inferred")
    assert {e: (c, s) for e, c, s in first["events"]} == expected
    total = sum(c for c, _ in expected.values())
    for w in WINDOWS:  # every tier sums to the calls' cost, window by window rebuilt
        assert sum(r[3] for r in first[w.name]) == pytest.approx(total), w.name
        assert sum(r[2] for r in first[w.name]) == 240, w.name
    hourly_max = {}
    for i, (cost, _) in enumerate(expected.values()):
        hour = (T0 + i * 60_000) // 3_600_000
        hourly_max[hour] = max(hourly_max.get(hour, 0.0), cost)
    assert [round(r[4], 9) for r in first["1h"]] == [round(v, 9) for _, v in sorted(hourly_max.items())]

    assert main(["reprice", "--config", str(new_cfg), "--since", DAY, "--clickhouse", dsn]) == 0
    with closing(connect(ClickHouseSettings(dsn=dsn))) as client:
        assert cost_state(client) == first  # a second run changes nothing


def test_reprice_refuses_a_bad_date_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["reprice", "--since", "last tuesday", "--clickhouse", f"chdb://{tmp_path / 's'}"]) != 0
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "last tuesday" in err
