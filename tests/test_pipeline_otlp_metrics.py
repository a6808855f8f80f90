"""OTLP metrics and logs through the whole pipeline (file input -> embedded ClickHouse)."""
from __future__ import annotations

import time

from config.settings import ClickHouseSettings
from connectors.clickhouse import connect
from flows.cli import main
from tests.test_otlp_metrics import (
    MINUTE,
    MODEL_ATTRS,
    TOKEN_BOUNDS,
    LogRecord,
    encode,
    explicit,
    exponential,
    logs_request,
    metric,
    request,
)


def test_metric_points_land_in_metrics_1m_and_are_accounted(tmp_path) -> None:
    t0_ms = (int(time.time() * 1000) // 3_600_000 - 2) * 3_600_000
    t1 = (t0_ms + 30_000) * 1_000_000
    inputs = [float(v) for v in range(100, 400, 3)]
    durations = [0.2 + i / 100 for i in range(100)]
    tokens = request(metric("gen_ai.client.token.usage", [
        explicit(inputs, TOKEN_BOUNDS, {**MODEL_ATTRS, "gen_ai.token.type": "input"}, t1, t1 - MINUTE)]))
    latency = request(metric("gen_ai.client.operation.duration", [
        exponential(durations, 6, MODEL_ATTRS, t1, t1 - MINUTE)], unit="s"))
    logs = logs_request([LogRecord(observed_time_unix_nano=t1, severity_number=9)])
    src = tmp_path / "otlp.jsonl"
    src.write_bytes(b"\n".join(encode(r, False) for r in (tokens, latency, logs)) + b"\n")
    dsn = f"chdb://{tmp_path}/store"
    assert main(["run", "--input", str(src), "--clickhouse", dsn]) == 0
    client = connect(ClickHouseSettings(dsn=dsn))
    try:
        rows = {r[0]: r[1:] for r in client.query(
            "SELECT metric, model, count, sum, p50 FROM metrics_1m_stats WHERE metric IN "
            "('input_tokens', 'latency_ms', 'requests', 'errors')").result_rows}
        skipped = dict(client.query("SELECT reason, sum(inputs) FROM skipped_inputs FINAL GROUP BY reason").result_rows)
    finally:
        client.close()
    assert rows["input_tokens"][:3] == ("gpt-4o", len(inputs), sum(inputs))
    assert rows["latency_ms"][1] == len(durations)
    assert abs(rows["latency_ms"][3] / (sorted(durations)[49] * 1000) - 1) < 0.02
    assert rows["requests"][1:3] == (len(durations), len(durations)) and rows["errors"][2] == 0
    assert skipped == {"metric_points": 2, "log_record": 1}
