"""Registry state, enrichment, compliance reports and usage feed: the pure operators."""
from __future__ import annotations

import pickle
import random

from operators.compliance import ComplianceBook
from operators.compliance.reports import DAY_MS, HOUR_MS
from operators.feeds import Horizon, UsageBook
from operators.registry import AssetBook, RegistryState
from operators.registry.book import MAX_HISTORY
from schemas.assets import RegistryChange
from schemas.events import EVENT_TYPE_OF
from schemas.incidents import Anomaly, Incident
from schemas.items import ALL_CLOSED, ComplianceFacts, DetectionOutput, GovernanceBatch, ShardOutput
from schemas.metrics import SeriesKey, WindowMetric
from schemas.payloads.registry import (AssetDeprecated, AssetRegistered, AssetUpdated, VersionPromoted,
                                       VersionPublished, VersionRetired)

MIN = 60_000


def change(i: int, t: int, payload) -> RegistryChange:
    return RegistryChange(event_id=f"r{i}", time_ms=t, event_type=EVENT_TYPE_OF[type(payload)], payload=payload)


def lifecycle() -> list[RegistryChange]:
    return [
        change(1, 0, AssetRegistered(asset_id="m-1", asset_name="GPT-4o", asset_type="model", version="1.0",
                                     owner="ml", category="llm", tags=["prod"])),
        change(2, 10 * MIN, AssetUpdated(asset_id="m-1", owner="platform", changed_fields=["owner"])),
        change(3, 20 * MIN, VersionPublished(asset_id="m-1", version="1.1")),
        change(4, 30 * MIN, VersionPromoted(asset_id="m-1", version="1.1", to_stage="production")),
        change(5, 40 * MIN, VersionRetired(asset_id="m-1", version="1.1")),
        change(6, 50 * MIN, AssetDeprecated(asset_id="m-1", replacement_asset_id="m-2", reason="old")),
    ]


def test_profile_follows_the_lifecycle_and_history_answers_as_of_any_time():
    book = AssetBook()
    applied = book.apply(lifecycle(), canonical=str.lower)
    [latest] = applied.assets
    assert (latest.status, latest.replacement_asset_id, latest.events) == ("deprecated", "m-2", 6)
    assert latest.versions == {"1.0": "published", "1.1": "retired"} and latest.version == "1.0"
    assert [p.change for p in applied.profiles] == ["created"] + ["updated"] * 5
    seen = [(i.owner, i.version) for t in (5, 15, 25, 35, 45) if (i := book.as_of("gpt-4o", t * MIN))]
    assert seen == [("ml", "1.0"), ("platform", "1.0"), ("platform", "1.1"), ("platform", "1.1"), ("platform", "1.0")]
    assert book.as_of("m-1", 0) is None and book.as_of("m-1", 1).tags == ("prod",)  # before registration: unknown


def test_history_does_not_depend_on_arrival_order_and_ignores_repeats():
    ordered = AssetBook()
    ordered.apply(lifecycle())
    shuffled = AssetBook()
    events = lifecycle() + lifecycle()[:2]
    random.Random(3).shuffle(events)
    for c in events:
        shuffled.apply([c])
    assert [e.profile for e in shuffled.entries["m-1"]] == [e.profile for e in ordered.entries["m-1"]]
    assert shuffled.entries["m-1"][-1].profile.events == 6


def test_an_asset_id_wins_over_another_assets_name():
    book = AssetBook()
    book.apply([change(1, 0, AssetRegistered(asset_id="gpt-4o", owner="a")),
                change(2, 0, AssetRegistered(asset_id="x-9", asset_name="gpt-4o", owner="b"))])
    assert book.as_of("gpt-4o", 1).owner == "a" and book.as_of("x-9", 1).owner == "b"


def test_old_versions_are_dropped_after_the_history_horizon():
    book = AssetBook()
    book.apply([change(1, 0, AssetRegistered(asset_id="m", owner="a")),
                change(2, 9 * DAY_MS, AssetUpdated(asset_id="m", owner="b"))])
    assert len(book.entries["m"]) == 2  # superseded a day ago: windows of the last 8 days still need it
    book.apply([change(3, 20 * DAY_MS, AssetUpdated(asset_id="m", owner="c"))])
    assert [e.profile.owner for e in book.entries["m"]] == ["b", "c"] and book.as_of("m", 10 * DAY_MS).owner == "b"
    book.apply([change(4, DAY_MS, AssetUpdated(asset_id="m", owner="d"))])  # older than what is kept
    assert book.too_old == 1 and book.entries["m"][-1].profile.owner == "c"
    assert book.as_of("m", 2 * DAY_MS).owner == "b"  # before the oldest kept version: that version


def test_history_is_bounded_per_asset():
    book = AssetBook()
    book.apply([change(i, i * 1000, AssetUpdated(asset_id="m", owner=f"o{i}")) for i in range(MAX_HISTORY + 50)])
    assert len(book.entries["m"]) == len(book.ids["m"]) == MAX_HISTORY
    assert book.as_of("m", 0).owner == "o50" and book.as_of("m", 10**9).owner == f"o{MAX_HISTORY + 49}"


def window(metric: str, minute: int, count: int = 1, total: float = 1.0, model: str = "gpt-4o") -> WindowMetric:
    return WindowMetric(series=SeriesKey(metric, model=model, team="search"), window_start_ms=minute * MIN,
                        window_ms=MIN, count=count, sum=total, min=0.0, max=total, sumsq=0.0, hist={})


def test_step_enriches_windows_anomalies_and_incidents_as_of_their_windows():
    state = RegistryState()
    state.step(ShardOutput("reg"), DetectionOutput(), GovernanceBatch(registry=lifecycle()[:2]))
    anomaly = Anomaly(id="a", metric="latency_ms", model="m-1", window_start_ms=5 * MIN, window_ms=MIN,
                      anomaly_type="spike", score=1.0, expected=1.0, spread=1.0, observed=9.0, detector="robust")
    incident = Incident(id="i", version=1, start_ms=0, end_ms=12 * MIN, assets=["m-1", "unknown"])
    found = DetectionOutput(anomalies=[anomaly], incidents=[incident])
    out = state.step(ShardOutput("s", windows=[window("requests", 3, model="m-1"), window("requests", 12, model="m-1")]),
                     found, None)
    assert [w.asset.owner for w in out.windows] == ["ml", "platform"]
    assert anomaly.asset.owner == "ml" and [a and a.owner for a in incident.asset_info] == ["platform", None]


def facts(rows: list[tuple[int, int, str, str, str, str]]) -> ComplianceFacts:
    return ComplianceFacts(*[list(c) for c in zip(*rows)]) if rows else ComplianceFacts([], [], [], [], [], [])


def random_facts(seed: int, n: int) -> list[tuple[int, int, str, str, str, str]]:
    rng = random.Random(seed)
    return [(rng.randrange(0, 2 * DAY_MS), rng.choice([0, 1, 1, 1, 2]), rng.choice(["m-1", "m-2"]),
             rng.choice(["a", "b", ""]), rng.choice(["pii", "rate"]), rng.choice(["high", "low"])) for _ in range(n)]


def final_reports(book: ComplianceBook, chunks: list[list], complete: list[int]) -> dict:
    latest: dict = {}
    for rows, horizon in zip(chunks, complete):
        book.add(facts(rows))
        for r in book.reports(horizon):
            if r.id not in latest or r.version >= latest[r.id].version:
                latest[r.id] = r
    return latest


def test_reports_are_exact_whatever_the_batching_and_lateness():
    rows = random_facts(1, 3000)
    expected = {}
    for start_key in ("hour", "day"):
        span = HOUR_MS if start_key == "hour" else DAY_MS
        for t, kind, asset, team, vtype, sev in rows:
            for scope_kind, scope in (("all", ""), ("asset", asset), ("team", team)):
                if scope_kind != "all" and not scope:
                    continue
                e = expected.setdefault((start_key, t - t % span, scope_kind, scope), [0, 0, 0, {}])
                e[0] += kind != 2
                e[1] += kind == 1
                e[2] += kind == 2
                if kind == 2:
                    e[3][vtype] = e[3].get(vtype, 0) + 1
    # In order, whole at the end; and shuffled (late events) in chunks with a horizon that moves.
    at_once = final_reports(ComplianceBook(), [rows], [ALL_CLOSED])
    shuffled = sorted(rows)
    random.Random(2).shuffle(shuffled[len(rows) // 2:])
    chunks = [shuffled[i:i + 100] for i in range(0, len(shuffled), 100)]
    horizons = [max(r[0] for r in c) for c in chunks[:-1]] + [ALL_CLOSED]
    late = final_reports(ComplianceBook(), chunks, horizons)
    for reports in (at_once, late):
        got = {(r.granularity, r.window_start_ms, r.scope_kind, r.scope):
               [r.evaluations, r.compliant, r.violations, r.violations_by_type] for r in reports.values()}
        assert got == {k: v for k, v in expected.items()}
    assert {k: (r.prev_evaluations, r.compliance_rate_change, r.violations_change) for k, r in at_once.items()} == \
           {k: (r.prev_evaluations, r.compliance_rate_change, r.violations_change) for k, r in late.items()}


def test_snapshot_and_restore_emit_the_same_reports():
    rows = sorted(random_facts(4, 600))
    chunks = [rows[i:i + 50] for i in range(0, len(rows), 50)]
    horizons = [c[-1][0] for c in chunks]
    straight = ComplianceBook()
    first = [r for c, h in zip(chunks, horizons) for r in (straight.add(facts(c)) or straight.reports(h))]
    book = ComplianceBook()
    resumed = []
    for i, (c, h) in enumerate(zip(chunks, horizons)):
        if i == 6:
            book = pickle.loads(pickle.dumps(book))
        book.add(facts(c))
        resumed += book.reports(h)
    assert resumed == first


def test_usage_is_re_emitted_with_a_higher_version_when_a_lagging_shard_adds_to_an_hour():
    book = UsageBook()
    book.add([window("requests", 5, 10, 10.0), window("cost_usd", 5, 10, 1.5), window("latency_ms", 5, 10, 900.0)])
    [first] = book.records(HOUR_MS)
    book.add([window("requests", 7, 4, 4.0)])
    [again] = book.records(HOUR_MS)
    assert (first.requests, first.cost_usd, first.version) == (10, 1.5, 2)
    assert (again.id, again.requests, again.version) == (first.id, 14, 3)


def test_horizon_waits_for_every_shard_and_for_an_event_past_the_window():
    h = Horizon()
    h.update("telemetry", closed_ms=ALL_CLOSED, watermark_ms=30 * MIN, final=False)  # idle: windows closed early
    assert h.complete_ms == 30 * MIN
    h.update("policy", closed_ms=10 * MIN, watermark_ms=12 * MIN, final=False)
    assert h.complete_ms == 30 * MIN  # never backwards
    h.update("telemetry", ALL_CLOSED, 90 * MIN, final=False)
    assert h.complete_ms == 30 * MIN
    h.update("policy", 70 * MIN, 72 * MIN, final=False)
    assert h.complete_ms == 70 * MIN
