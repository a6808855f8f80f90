"""Registry enrichment and compliance reports end to end: `hub run --input FILE` on the embedded
store, then the file grown (a late policy event, a later registry update) and read on from the
same recovery dir, then a full replay into the same store and a clean run into another.

Day A (two days ago), 10:00-11:40 UTC: gpt-4o serves 20 calls a minute (a 20x latency spike in
minute 70); asset gpt-4o is registered at 09:59 (owner ml, 1.0), handed to platform at 10:20 and
1.1 is promoted to production at 10:50. One policy evaluation a minute (every fourth denied),
teams search and ads in turn, a violation every 10 minutes. The file then grows by a late denied
evaluation and a violation at 10:15, owner finance from 13:20, and a few calls at 13:20-13:25.
"""
from __future__ import annotations

import json
import time
from contextlib import closing
from pathlib import Path

import pytest

from config.settings import ClickHouseSettings
from connectors.clickhouse import connect
from flows.cli import main

pytestmark = pytest.mark.slow
MIN = 60_000
HOUR = 3_600_000
DAY = 86_400_000
DAY_A = (int(time.time() * 1000) // DAY - 2) * DAY
T0 = DAY_A + 10 * HOUR
REPORT_COLUMNS = ("granularity, toUnixTimestamp64Milli(window_start), scope_kind, scope, evaluations, compliant, "
                  "non_compliant, violations, compliance_rate, violation_rate, violations_by_type, "
                  "violations_by_severity, prev_evaluations, prev_violations, prev_compliance_rate, "
                  "compliance_rate_change, violation_rate_change, violations_change, asset_owner, version")


def envelope(event_type: str, event_id: str, t: int, payload: dict, source: str, team: str = "",
             severity: str = "") -> dict:
    out = {"event_type": event_type, "event_id": event_id, "event_time": t, "source": source, "payload": payload}
    if team:
        out["tags"] = {"team": team}
    if severity:
        out["severity"] = severity
    return out


def asset(event_type: str, i: int, t: int, **fields) -> dict:
    return envelope(event_type, f"reg-{i}", t, {"asset_id": "gpt-4o", "asset_name": "gpt-4o", **fields}, "registry")


def call(i: int, t: int, latency: float) -> dict:
    return envelope("telemetry.request", f"c-{i}", t, {"model": "gpt-4o", "provider": "openai", "latency_ms": latency,
                                                       "input_tokens": 100, "output_tokens": 20}, "telemetry", "search")


def evaluation(i: int, t: int, denied: bool, team: str) -> dict:
    return envelope("policy.evaluated", f"pe-{i}", t, {"policy_id": "pol-1", "decision": "denied" if denied else "allowed",
                                                      "asset_id": "gpt-4o", "model": "gpt-4o"}, "policy", team)


def violation(i: int, t: int, kind: str, severity: str, team: str) -> dict:
    return envelope("violation.detected", f"pv-{i}", t, {"policy_id": "pol-1", "violation_type": kind,
                                                        "asset_id": "gpt-4o"}, "policy", team, severity)


def first_part() -> list[dict]:
    lines = [asset("asset.registered", 1, T0 - MIN, version="1.0", owner="ml", category="llm", tags=["prod"]),
             asset("asset.updated", 2, T0 + 20 * MIN, owner="platform", changed_fields=["owner"]),
             asset("version.promoted", 3, T0 + 50 * MIN, version="1.1", to_stage="production")]
    for minute in range(100):
        t = T0 + minute * MIN
        lines += [call(minute * 20 + k, t + k * 3000, 6000.0 + k if minute == 70 else 300.0 + k) for k in range(20)]
        lines.append(evaluation(minute, t + 1500, minute % 4 == 0, "search" if minute % 2 else "ads"))
        if minute % 10 == 5:
            lines.append(violation(minute, t + 2500, "pii" if minute % 20 == 5 else "rate_limit",
                                   "high" if minute < 50 else "low", "search"))
    return sorted(lines, key=lambda e: e["event_time"])


def second_part() -> list[dict]:
    later = T0 + 200 * MIN
    return ([evaluation(1000, T0 + 15 * MIN + 100, True, "search"), violation(1000, T0 + 16 * MIN, "pii", "high", "ads"),
             asset("asset.updated", 4, later, owner="finance", changed_fields=["owner"])]
            + [call(10_000 + i, later + i * 15_000, 300.0) for i in range(24)])


def expected_reports(events: list[dict]) -> dict:
    """(granularity, start, scope kind, scope) -> [evaluations, compliant, violations, by type, by severity]."""
    out: dict = {}
    for e in events:
        if e["source"] != "policy":
            continue
        t, team = e["event_time"], e.get("tags", {}).get("team", "")
        for gran, span in (("hour", HOUR), ("day", DAY)):
            for kind, scope in (("all", ""), ("asset", "gpt-4o"), ("team", team)):
                r = out.setdefault((gran, t - t % span, kind, scope), [0, 0, 0, {}, {}])
                if e["event_type"] == "policy.evaluated":
                    r[0] += 1
                    r[1] += e["payload"]["decision"] == "allowed"
                else:
                    r[2] += 1
                    for m, label in ((r[3], e["payload"]["violation_type"]), (r[4], e["severity"])):
                        m[label] = m.get(label, 0) + 1
    return out


def write(path: Path, events: list[dict], mode: str = "w") -> None:
    with path.open(mode) as f:
        f.write("".join(json.dumps(e) + "\n" for e in events))


def run(src: Path, store: Path, recovery: Path) -> None:
    assert main(["run", "--input", str(src), "--clickhouse", f"chdb://{store}", "--recovery-dir", str(recovery)]) == 0


def rows(store: Path, sql: str) -> list[tuple]:
    with closing(connect(ClickHouseSettings(dsn=f"chdb://{store}"))) as client:
        return client.query(sql).result_rows


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("registry")
    src = tmp / "events.jsonl"
    write(src, first_part())
    run(src, tmp / "store", tmp / "recovery")
    before = {"metrics": metric_assets(tmp / "store"), "reports": reports(tmp / "store")}
    write(src, second_part(), "a")
    run(src, tmp / "store", tmp / "recovery")
    grown = {"metrics": metric_assets(tmp / "store"), "reports": reports(tmp / "store"),
             "anomalies": rows(tmp / "store", "SELECT anomaly_type, metric, toUnixTimestamp64Milli(window_start), "
                                              "asset_id, asset_name, asset_version, asset_owner, asset_category, "
                                              "asset_tags FROM anomalies FINAL WHERE model = 'gpt-4o'"),
             "incidents": rows(tmp / "store", "SELECT assets, asset_ids, asset_owners, toUnixTimestamp64Milli(end_time) "
                                              "FROM incidents FINAL"),
             "assets": rows(tmp / "store", "SELECT asset_id, owner, version, stage, events, tags FROM assets FINAL"),
             "asset_events": rows(tmp / "store", "SELECT event_id, event_type, owner, version FROM asset_events FINAL "
                                                 "ORDER BY event_time")}
    run(src, tmp / "store", tmp / "replay-recovery")  # the whole file again, from scratch, into the same store
    replayed = {"metrics": metric_assets(tmp / "store"), "reports": reports(tmp / "store")}
    (tmp / "clean").mkdir()
    clean_src = tmp / "clean" / "events.jsonl"
    write(clean_src, sorted(first_part() + second_part(), key=lambda e: e["event_time"]))
    run(clean_src, tmp / "clean" / "store", tmp / "clean" / "recovery")
    clean = {"metrics": metric_assets(tmp / "clean" / "store"), "reports": reports(tmp / "clean" / "store")}
    return before, grown, replayed, clean


def metric_assets(store: Path) -> list[tuple]:
    return rows(store, "SELECT metric, toUnixTimestamp(window_start) * 1000, asset_id, asset_name, asset_version, "
                       "asset_owner, asset_category, asset_tags, sum(count) FROM metrics_1m FINAL WHERE model = 'gpt-4o' "
                       "GROUP BY ALL ORDER BY ALL")


def reports(store: Path) -> list[tuple]:
    return rows(store, f"SELECT {REPORT_COLUMNS} FROM compliance_reports FINAL ORDER BY ALL")


def owner_at(t: int, grown: bool) -> tuple[str, str]:
    owner = "finance" if grown and t >= T0 + 200 * MIN else "platform" if t >= T0 + 20 * MIN else "ml"
    return owner, "1.1" if t >= T0 + 50 * MIN else "1.0"


def test_metric_rows_carry_their_asset_as_of_their_window(stores):
    before, grown, *_ = stores
    latency = [r for r in grown["metrics"] if r[0] == "latency_ms"]
    assert len(latency) == 100 + 6
    for metric, start, asset_id, name, version, owner, category, tags, _ in latency:
        assert (asset_id, name, category, tags) == ("gpt-4o", "gpt-4o", "llm", ["prod"])
        assert (owner, version) == owner_at(start + MIN - 1, grown=True), start
    # The later update (finance) did not rewrite any row written before it.
    assert [r for r in grown["metrics"] if r[1] < T0 + 200 * MIN] == before["metrics"]


def test_anomalies_and_incidents_carry_their_asset(stores):
    _, grown, *_ = stores
    spikes = [a for a in grown["anomalies"] if a[1] == "latency_ms" and a[2] == T0 + 70 * MIN]
    assert spikes, grown["anomalies"]
    for _, _, start, asset_id, name, version, owner, category, tags in grown["anomalies"]:
        assert (asset_id, name, category, tags) == ("gpt-4o", "gpt-4o", "llm", ["prod"])
        assert (owner, version) == owner_at(start + MIN - 1, grown=True)
    for assets, asset_ids, owners, end in grown["incidents"]:
        assert len(asset_ids) == len(owners) == len(assets)
        for key, asset_id, owner in zip(assets, asset_ids, owners):
            if key == "gpt-4o" and end >= T0:
                assert (asset_id, owner) == ("gpt-4o", owner_at(end, grown=True)[0])


def test_assets_table_holds_the_latest_profile_and_asset_events_the_history(stores):
    _, grown, *_ = stores
    assert grown["assets"] == [("gpt-4o", "finance", "1.1", "production", 4, ["prod"])]
    assert grown["asset_events"] == [("reg-1", "asset.registered", "ml", "1.0"), ("reg-2", "asset.updated", "platform", "1.0"),
                                     ("reg-3", "version.promoted", "platform", "1.1"),
                                     ("reg-4", "asset.updated", "finance", "1.1")]


def test_compliance_reports_are_exact_per_hour_and_day_including_a_late_event(stores):
    before, grown, *_ = stores
    for stage, events in ((before, first_part()), (grown, first_part() + second_part())):
        expected = expected_reports(events)
        got = {(g, s, k, sc): [ev, comp, viol, by_type, by_sev]
               for g, s, k, sc, ev, comp, _, viol, _, _, by_type, by_sev, *_ in stage["reports"]}
        assert got == {k: v for k, v in expected.items()}
    by_key = {r[:4]: r for r in grown["reports"]}
    hour10, hour11 = by_key[("hour", T0, "all", "")], by_key[("hour", T0 + HOUR, "all", "")]
    assert hour10[4:8] == (61, 45, 16, 7)  # 60 evaluations + the late one; 15 + 1 denied; 6 + 1 violations
    assert hour10[8] == pytest.approx(45 / 61) and hour10[9] == pytest.approx(7 / 61)
    # The next hour's trend follows the late event: it compares against the updated hour.
    assert hour11[12:14] == (61, 7) and hour11[14] == pytest.approx(45 / 61)
    assert hour11[15] == pytest.approx(hour11[8] - 45 / 61) and hour11[17] == hour11[7] - 7
    assert by_key[("hour", T0, "asset", "gpt-4o")][18] == "platform"  # the asset as of the hour's end
    assert by_key[("day", DAY_A, "all", "")][4:8] == (101, 75, 26, 11)


def test_a_replay_and_a_clean_run_give_identical_rows(stores):
    _, grown, replayed, clean = stores
    assert replayed["reports"] == grown["reports"]
    assert replayed["metrics"] == grown["metrics"]
    assert clean["reports"] == grown["reports"]
    # The same assets on the same windows (the counts differ only where the late event, in order in
    # the clean run, made it into its minute's window).
    assert [r[:-1] for r in clean["metrics"]] == [r[:-1] for r in grown["metrics"]]
