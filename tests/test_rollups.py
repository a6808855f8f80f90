"""Rollups in the real ClickHouse engine: percentiles within 1% for every window size, a
replayed 1-minute insert changes no rollup, and a crash between the 1-minute insert and the
rollup recomputation is repaired by the replay."""
from __future__ import annotations

import time

import numpy as np
import pytest

from config.settings import ClickHouseSettings, RetentionSettings
from connectors import rollups
from connectors.clickhouse import connect, insert_new_windows
from schemas.metrics import window_rows
from schemas.rollups import WINDOWS
from connectors.migrations import migrate
from operators.windows import MetricValues, WindowAggregator

DAY0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z, a Thursday
HOURS = 30


@pytest.fixture(scope="module")
def dsn(tmp_path_factory):
    """One embedded engine per process: every test here uses this path (in its own database)."""
    return f"chdb://{tmp_path_factory.mktemp('rollups')}/store"


@pytest.fixture(scope="module")
def store(dsn):
    rng = np.random.default_rng(11)
    n = 60_000
    times = np.sort(DAY0 + rng.integers(0, HOURS * 3_600_000, n))
    models = np.where(rng.random(n) < 0.6, "gpt-4o", "claude-3")
    latency = np.where(models == "gpt-4o", rng.lognormal(6.0, 0.6, n), rng.lognormal(5.2, 0.9, n))
    # Two shards, as two Kafka partitions would give, each with its own window state.
    shard_of = rng.integers(0, 2, n)
    client = connect(ClickHouseSettings(dsn=dsn))
    migrate(client, RetentionSettings(metrics_1m_days=3650, metrics_5m_days=3650, metrics_15m_days=3650,
                                      metrics_1h_days=3650, metrics_6h_days=3650, metrics_1d_days=3650))
    inserted = []
    for shard in (0, 1):
        sel = shard_of == shard
        agg = WindowAggregator(0)
        agg.add(times[sel], [(m, "/v1/chat", "search") for m in models[sel]],
                [MetricValues("latency_ms", latency[sel])])
        windows = agg.close_all()
        for w in windows:
            w.shard = f"p{shard}"
        rows = window_rows(windows)
        assert insert_new_windows(client, rows) == len(rows)
        rollups.refresh(client, {r[4] for r in rows})
        inserted.append(rows)
    yield client, times, models, latency, inserted
    client.close()


@pytest.mark.parametrize("window, width_ms", [("1m", 60_000), ("15m", 900_000), ("1h", 3_600_000),
                                               ("6h", 21_600_000), ("1d", 86_400_000)])
def test_percentiles_within_one_percent_of_exact(store, window, width_ms):
    client, times, models, latency, _ = store
    rows = client.query(
        f"SELECT model, toUnixTimestamp(window_start) * 1000, count, min, max, p50, p95, p99 "
        f"FROM metrics_{window}_stats WHERE metric = 'latency_ms'").result_rows
    assert rows
    checked = 0
    for model, start, count, vmin, vmax, p50, p95, p99 in rows:
        sel = (models == model) & (times >= start) & (times < start + width_ms)
        v = latency[sel]
        assert count == len(v)
        assert vmin == pytest.approx(v.min()) and vmax == pytest.approx(v.max())
        for q, got in ((0.5, p50), (0.95, p95), (0.99, p99)):
            assert got == pytest.approx(np.quantile(v, q, method="lower"), rel=0.01)
        checked += 1
    assert checked == len(rows)


def test_weekly_and_monthly_rollups_hold_every_event(store):
    client, times, *_ = store
    for table in ("metrics_1w", "metrics_1mo"):
        total = client.query(f"SELECT sum(count) FROM {table}_stats WHERE metric = 'latency_ms'").result_rows[0][0]
        assert total == len(times)


def test_replayed_window_inserts_change_nothing(store):
    client, times, *_ = store

    def totals():
        return [client.query(f"SELECT sum(count), round(sum(sum), 3) FROM metrics_{w}_stats").result_rows[0]
                for w in ("1m", "5m", "1h", "1d")]

    before = totals()
    for rows in store[4]:
        assert insert_new_windows(client, rows[:300]) == 0
        rollups.refresh(client, {r[4] for r in rows[:300]})
    assert totals() == before
    assert before[0][0] == len(times)


def tier_totals(client) -> dict[str, tuple]:
    return {w.name: client.query(f"SELECT count(), sum(count), round(sum(sum), 6), toString(sumMap(histogram)) "
                                 f"FROM {w.table}_stats").result_rows[0] for w in WINDOWS}


def test_crash_before_the_rollups_is_repaired_by_the_replay(store, dsn):
    """The measured loss: 1-minute rows stored, the worker killed before the rollups saw them. The
    replay finds the rows already stored (and skips them) but still recomputes their rollups."""
    client = connect(ClickHouseSettings(dsn=dsn, database="crashed"))
    migrate(client, RetentionSettings())
    now_ms = int(time.time() * 1000) // 60_000 * 60_000
    agg = WindowAggregator(0)
    rng = np.random.default_rng(5)
    n = 5_000
    times = np.sort(now_ms - 3 * 3_600_000 + rng.integers(0, 3 * 3_600_000, n))
    agg.add(times, [("gpt-4o", "/v1/chat", "t")] * n, [MetricValues("latency_ms", rng.lognormal(5, 1, n))])
    windows = agg.close_all()
    for w in windows:
        w.shard = "p0"
    rows = window_rows(windows)
    first, rest = rows[: len(rows) // 2], rows[len(rows) // 2:]
    insert_new_windows(client, first)
    rollups.refresh(client, {r[4] for r in first})
    insert_new_windows(client, rest)  # ... and killed here: no recomputation for `rest`
    assert tier_totals(client)["5m"][1] < n

    assert insert_new_windows(client, rows) == 0  # the replay re-emits every window
    rollups.refresh(client, {r[4] for r in rows})
    totals = tier_totals(client)
    assert {name: t[1] for name, t in totals.items()} == {w.name: n for w in WINDOWS}
    assert len({t[3] for t in totals.values()}) == 1, "every tier holds the same merged histogram"
    rollups.refresh(client, {r[4] for r in rows})
    assert tier_totals(client) == totals, "recomputing again changes nothing"
    client.close()
