"""`hub serve`: the HTTP API against a store populated by a real `hub run` (synthetic traffic):
paging by following links, percentiles from merged histograms, problem details for bad input,
timeouts, busy slots and missing keys, the OpenAPI schema, and the CLI itself."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from config.settings import load_config
from connectors import store_api
from connectors.clickhouse import connect
from flows.serve import create_app
from tests.helpers import ALERTING_CONFIG, ROOT, same_store

PROBLEM = "application/problem+json"


def hub(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=ROOT)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A store filled by `hub run`: ~30k synthetic events over ~25 minutes of event time, with
    budgets and alert rules that fire (tests/data/alerting.toml)."""
    path = tmp_path_factory.mktemp("serve") / "store"
    r = hub("run", "--events", "30000", "--rate", "20", "--clickhouse", f"chdb://{path}",
            "--config", str(ALERTING_CONFIG))
    assert r.returncode == 0, r.stderr
    return f"chdb://{path}"


def make_client(dsn: str, **serve: object) -> TestClient:
    overrides = {"clickhouse.dsn": dsn, **{f"serve.{k}": v for k, v in serve.items()}}
    return TestClient(create_app(load_config(overrides=overrides)), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def api(store: str) -> Iterator[TestClient]:
    with make_client(store) as client:  # the context runs startup/shutdown: the store is closed after
        yield client


def walk(api: TestClient, url: str, link: str) -> list[dict]:
    """Every answer met by following `link` from url until it is null."""
    answers = []
    while url:
        r = api.get(url)
        assert r.status_code == 200, r.text
        answers.append(r.json())
        url = r.json()["pagination"]["links"][link]
    return answers


def keys(answer: dict, *names: str) -> list[tuple]:
    return [tuple(row[n] for n in names) for row in answer["data"]]


# -- paging ---------------------------------------------------------------------------------------

def test_following_next_prev_and_last_links_walks_every_page_once(api: TestClient) -> None:
    params = "name=latency_ms&window=5m&group_by=model"
    whole = api.get(f"/api/v1/metrics?{params}&per_page=1000").json()
    expected = keys(whole, "window_start", "model")
    assert len(expected) > 20 and len(set(expected)) == len(expected)

    forward = walk(api, f"/api/v1/metrics?{params}&per_page=7", "next")
    total_pages = -(-len(expected) // 7)
    assert [a["pagination"]["page"] for a in forward] == list(range(1, total_pages + 1))
    assert all(a["pagination"]["total_items"] == len(expected) and a["pagination"]["total_pages"] == total_pages
               for a in forward)
    assert [k for a in forward for k in keys(a, "window_start", "model")] == expected

    last = api.get(forward[0]["pagination"]["links"]["last"]).json()
    # Floats are compared within 1e-9: a sum merged in another order differs in its last bits.
    assert last["pagination"]["page"] == total_pages and same_store(last["data"], forward[-1]["data"])
    backward = walk(api, forward[0]["pagination"]["links"]["last"], "prev")
    assert [a["pagination"]["page"] for a in backward] == list(range(total_pages, 0, -1))
    assert same_store([a["data"] for a in backward], [a["data"] for a in reversed(forward)])
    first = api.get(backward[-1]["pagination"]["links"]["first"]).json()
    assert same_store(first["data"], forward[0]["data"]) and first["pagination"]["links"]["prev"] is None


def test_a_page_number_alone_jumps_to_the_same_rows_as_the_links(api: TestClient) -> None:
    forward = walk(api, "/api/v1/events?per_page=50&source=telemetry&from=2000-01-01T00:00:00Z", "next")[:4]
    assert len(forward) == 4
    jumped = api.get("/api/v1/events?per_page=50&source=telemetry&from=2000-01-01T00:00:00Z&page=4").json()
    assert jumped["data"] == forward[3]["data"]
    times = [datetime.fromisoformat(row["event_time"]) for a in forward for row in a["data"]]
    assert times == sorted(times, reverse=True), "newest first"
    assert all(row["source"] == "telemetry" for a in forward for row in a["data"])


def test_an_empty_listing_has_one_page_and_no_neighbours(api: TestClient) -> None:
    r = api.get("/api/v1/events", params={"model": "no-such-model"})
    body = r.json()
    assert r.status_code == 200 and body["data"] == [] and body["status"] == "success"
    pages = body["pagination"]
    assert (pages["total_items"], pages["total_pages"], pages["links"]["next"], pages["links"]["prev"]) == (0, 0, None, None)
    assert api.get(pages["links"]["last"]).json()["data"] == []


# -- answers --------------------------------------------------------------------------------------

def test_percentiles_come_from_merged_histograms(api: TestClient, store: str) -> None:
    """The API's p95 per model over a day equals merging every 1-minute histogram of that day."""
    body = api.get("/api/v1/metrics", params={"name": "latency_ms", "window": "1d", "group_by": "model"}).json()
    assert body["status"] in ("success", "partial") and body["metrics"]["queries"] == 2
    got = {(row["window_start"][:10], row["model"]): (row["count"], row["p50"], row["p95"], row["p99"])
           for row in body["data"]}
    with closing(connect(load_config(overrides={"clickhouse.dsn": store}).clickhouse, read_only=True)) as client:
        rows = client.query(
            "SELECT toString(toDate(window_start)) AS day, model, sum(count), hub_quantile(sumMap(hist), 0.5), "
            "hub_quantile(sumMap(hist), 0.95), hub_quantile(sumMap(hist), 0.99) FROM metrics_1m FINAL "
            "WHERE metric = 'latency_ms' GROUP BY day, model").result_rows
    expected = {(day, model): (count, p50, p95, p99) for day, model, count, p50, p95, p99 in rows}
    assert got.keys() == expected.keys() and len(got) >= 5
    for key, (count, *quantiles) in expected.items():
        assert got[key][0] == count
        assert got[key][1:] == pytest.approx(quantiles, rel=1e-9)
    row = body["data"][0]
    assert row["p50"] <= row["p95"] <= row["p99"] <= row["max"] and row["window_start"].endswith("Z")


def test_anomalies_and_incidents_with_their_graph(api: TestClient) -> None:
    incidents = api.get("/api/v1/incidents", params={"per_page": 5}).json()
    assert incidents["pagination"]["total_items"] > 0
    one = incidents["data"][0]
    graph = api.get(f"/api/v1/incidents/{one['id']}").json()["data"]
    assert graph["id"] == one["id"] and len(graph["members"]) == one["member_count"]
    members = {m["id"] for m in graph["members"]}
    assert graph["edges"] and all(e["from_id"] in members and e["to_id"] in members for e in graph["edges"])
    assert graph["root_cause_id"] in members
    missing = api.get("/api/v1/incidents/nope")
    assert missing.status_code == 404 and missing.headers["content-type"] == PROBLEM
    assert missing.json()["code"] == "NOT_FOUND"
    anomalies = api.get("/api/v1/anomalies", params={"min_score": 0.5})
    assert anomalies.status_code == 200
    assert all(a["score"] >= 0.5 for a in anomalies.json()["data"])


# -- alerts, budgets, compliance reports, assets ---------------------------------------------------

def stored(store: str, sql: str) -> list[tuple]:
    with closing(connect(load_config(overrides={"clickhouse.dsn": store}).clickhouse, read_only=True)) as client:
        return client.query(sql).result_rows


@pytest.mark.parametrize(("path", "key"), [
    ("/api/v1/alerts/history", ("updated_at", "id", "version")),
    ("/api/v1/compliance", ("window_start", "id")),
    ("/api/v1/assets", ("asset_id",)),
])
def test_the_new_listings_page_by_links_in_both_directions(api: TestClient, path: str, key: tuple[str, ...]) -> None:
    whole = api.get(path, params={"per_page": 1000}).json()
    expected = keys(whole, *key)
    assert len(expected) >= 8 and len(set(expected)) == len(expected)
    per_page = 3
    forward = walk(api, f"{path}?per_page={per_page}", "next")
    assert [a["pagination"]["page"] for a in forward] == list(range(1, -(-len(expected) // per_page) + 1))
    assert [k for a in forward for k in keys(a, *key)] == expected
    backward = walk(api, forward[0]["pagination"]["links"]["last"], "prev")
    assert [k for a in reversed(backward) for k in keys(a, *key)] == expected


def test_current_alerts_are_each_alerts_latest_version(api: TestClient, store: str) -> None:
    current = api.get("/api/v1/alerts", params={"per_page": 1000}).json()
    latest = dict(stored(store, "SELECT id, max(version) FROM alerts FINAL GROUP BY id"))
    assert {a["id"]: a["version"] for a in current["data"]} == latest
    assert current["pagination"]["total_items"] == len(latest)
    starts = [datetime.fromisoformat(a["starts_at"]) for a in current["data"]]
    assert starts == sorted(starts, reverse=True), "newest start first"

    by_state = {state: api.get("/api/v1/alerts", params={"state": state, "per_page": 1000}).json()["data"]
                for state in ("firing", "resolved")}
    assert by_state["firing"] and by_state["resolved"]
    assert all(a["status"] == state and (a["ends_at"] is None) == (state == "firing")
               for state, rows in by_state.items() for a in rows)
    assert len(by_state["firing"]) + len(by_state["resolved"]) == len(latest)
    assert {a["kind"] for a in current["data"]} == {"budget", "threshold", "incident"}

    p95 = api.get("/api/v1/alerts", params={"rule": "p95-latency", "severity": "medium",
                                            "label": ["model=gpt-4o", "metric=latency_ms"]}).json()["data"]
    assert len(p95) == 1 and p95[0]["labels"]["model"] == "gpt-4o" and p95[0]["value"] > p95[0]["threshold"]
    middle = sorted(starts)[len(starts) // 2]
    later = api.get("/api/v1/alerts", params={"from": middle.isoformat(), "per_page": 1000}).json()["data"]
    assert later and len(later) < len(latest)
    assert all(datetime.fromisoformat(a["starts_at"]) >= middle for a in later)


def test_alert_history_has_every_version(api: TestClient, store: str) -> None:
    history = api.get("/api/v1/alerts/history", params={"per_page": 1000}).json()
    assert history["pagination"]["total_items"] == stored(store, "SELECT count() FROM alerts FINAL")[0][0]
    resolved = api.get("/api/v1/alerts", params={"state": "resolved", "per_page": 1}).json()["data"][0]
    versions = api.get("/api/v1/alerts/history", params={"alert_id": resolved["id"]}).json()["data"]
    assert versions[0] == resolved, "the current state is the newest version"
    assert [v["version"] for v in versions] == list(range(resolved["version"], 0, -1))
    assert versions[0]["event"] == "resolved" and versions[-1]["event"] == "firing"
    fired = api.get("/api/v1/alerts/history", params={"event": "firing", "kind": "budget"}).json()["data"]
    assert fired and all(v["event"] == "firing" and v["kind"] == "budget" for v in fired)


def test_budget_status_per_budget_and_period(api: TestClient, store: str) -> None:
    rows = api.get("/api/v1/budgets").json()["data"]
    expected = stored(store, "SELECT budget, toString(toDate(period_start)), spend, updated_at FROM budget_status FINAL")
    assert sorted((b["budget"], b["period_start"][:10], b["spend"]) for b in rows) == \
        sorted((b, day, spend) for b, day, spend, _ in expected)
    assert {b["budget"] for b in rows} == {"global-day", "search-month"}
    latest = api.get("/api/v1/budgets", params={"latest": "true"}).json()["data"]
    assert sorted(b["budget"] for b in latest) == ["global-day", "search-month"]
    newest = {}
    for b in rows:
        newest[b["budget"]] = max(newest.get(b["budget"], ""), b["period_start"])
    assert all(b["period_start"] == newest[b["budget"]] for b in latest)
    day = api.get("/api/v1/budgets", params={"period": "day"}).json()["data"]
    assert day and all(b["period"] == "day" and b["scope"] == "global" for b in day)
    over = [b for b in day if b["spend"] > b["amount_usd"]]
    assert over and all(b["pct_used"] == pytest.approx(100 * b["spend"] / b["amount_usd"]) for b in over)


def test_compliance_reports_by_granularity_scope_and_time(api: TestClient, store: str) -> None:
    team = api.get("/api/v1/compliance", params={"granularity": "hour", "team": "search"}).json()
    assert team["data"] and all((r["granularity"], r["scope_kind"], r["scope"]) == ("hour", "team", "search")
                                for r in team["data"])
    count = stored(store, "SELECT count() FROM compliance_reports FINAL "
                          "WHERE granularity = 'hour' AND scope_kind = 'team' AND scope = 'search'")[0][0]
    assert team["pagination"]["total_items"] == count
    assets = api.get("/api/v1/compliance", params={"scope_kind": "asset", "granularity": "day"}).json()["data"]
    assert assets and all(r["scope_kind"] == "asset" for r in assets)
    assert all(r["evaluations"] == r["compliant"] + r["non_compliant"] for r in assets)
    one = assets[0]["scope"]
    assert [r["scope"] for r in api.get("/api/v1/compliance", params={"asset": one, "granularity": "day"}
                                        ).json()["data"]] == [one]
    window = team["data"][-1]["window_start"]
    ranged = api.get("/api/v1/compliance", params={"team": "search", "granularity": "hour", "to": window}).json()
    assert ranged["data"] == [] and ranged["pagination"]["total_items"] == 0


def test_assets_are_the_registrys_latest_profiles(api: TestClient, store: str) -> None:
    body = api.get("/api/v1/assets").json()
    expected = dict(stored(store, "SELECT asset_id, events FROM assets FINAL"))
    assert {a["asset_id"]: a["events"] for a in body["data"]} == expected
    ids = [a["asset_id"] for a in body["data"]]
    assert ids == sorted(ids)
    one = body["data"][0]
    got = api.get(f"/api/v1/assets/{one['asset_id']}").json()
    assert got["data"] == one and got["status"] == "success"
    owned = api.get("/api/v1/assets", params={"owner": one["owner"], "asset_type": one["asset_type"]}).json()["data"]
    assert one in owned and all(a["owner"] == one["owner"] for a in owned)
    missing = api.get("/api/v1/assets/no-such-asset")
    assert missing.status_code == 404 and missing.headers["content-type"] == PROBLEM


@pytest.mark.parametrize(("path", "params", "field"), [
    ("/api/v1/alerts", {"state": "open"}, "query.state"),
    ("/api/v1/alerts", {"severity": "urgent"}, "query.severity"),
    ("/api/v1/alerts", {"label": "model"}, "query.label.0"),
    ("/api/v1/alerts/history", {"event": "fired"}, "query.event"),
    ("/api/v1/alerts/history", {"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "query.from"),
    ("/api/v1/budgets", {"period": "year"}, "query.period"),
    ("/api/v1/compliance", {"granularity": "week"}, "query.granularity"),
    ("/api/v1/compliance", {"scope_kind": "team", "asset": "gpt-4o"}, "query.scope_kind"),
    ("/api/v1/assets", {"owner": "a b"}, "query.owner"),
    ("/api/v1/assets", {"after": "not-a-cursor"}, "query.after"),
])
def test_a_bad_filter_is_a_problem_naming_the_field(api: TestClient, path: str, params: dict, field: str) -> None:
    r = api.get(path, params=params)
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM, r.text
    body = r.json()
    assert body["code"] == "VALIDATION_ERROR" and body["instance"] == path
    assert field in {e["field"] for e in body["errors"]}, body


# -- problems -------------------------------------------------------------------------------------

def test_bad_parameters_are_problems_with_field_errors(api: TestClient) -> None:
    r = api.get("/api/v1/metrics", params={"window": "2h", "per_page": 0, "from": "yesterday"})
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["code"] == "VALIDATION_ERROR" and body["status"] == 422 and body["suggestion"]
    assert {e["field"] for e in body["errors"]} == {"query.name", "query.window", "query.per_page", "query.from"}
    assert {e["code"] for e in body["errors"]} >= {"missing", "literal_error", "greater_than_equal"}
    assert body["documentation_url"].endswith("/docs") and body["instance"] == "/api/v1/metrics"
    kind = api.get(body["type"])
    assert kind.status_code == 200 and "Invalid request parameters" in kind.text

    r = api.get("/api/v1/events", params={"per_page": 5000})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.per_page"
    r = api.get("/api/v1/events", params={"after": "not-a-cursor"})
    assert r.status_code == 422 and r.json()["errors"][0]["code"] == "invalid_cursor"
    r = api.get("/api/v1/events", params={"after": "WzFd", "last": "true"})
    assert r.status_code == 422 and {e["field"] for e in r.json()["errors"]} == {"query.after", "query.last"}
    r = api.get("/api/v1/events", params={"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.from"
    r = api.get("/api/v1/nowhere")
    assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND"
    r = api.delete("/api/v1/events")
    assert r.status_code == 405 and r.headers["content-type"] == PROBLEM


def test_a_slow_query_times_out_as_a_problem(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # A source whose scalar subquery never ends: only ClickHouse's max_execution_time stops it.
    slow = "(SELECT * FROM events FINAL WHERE (SELECT count() FROM system.numbers WHERE cityHash64(number) = 0) >= 0)"
    monkeypatch.setattr(store_api, "EVENTS", store_api.Listing(store_api.EVENT_COLUMNS, slow, store_api.EVENTS.keys, True))
    with make_client(store, query_timeout_s=0.5) as api:
        started = time.monotonic()
        r = api.get("/api/v1/events")
        took = time.monotonic() - started
    assert r.status_code == 504 and r.headers["content-type"] == PROBLEM, r.text
    assert r.json()["code"] == "QUERY_TIMEOUT" and "0.5s" in r.json()["detail"] and r.json()["suggestion"]
    assert took < 10


def test_busy_query_slots_answer_429_with_retry_after(store: str) -> None:
    with make_client(store, max_concurrent_queries=1, query_timeout_s=0.3) as api:
        reader = api.app.state.reader
        assert reader._slots.acquire(timeout=1)  # another request holds the only slot
        try:
            r = api.get("/api/v1/events")
        finally:
            reader._slots.release()
        assert r.status_code == 429 and r.headers["retry-after"] == "1" and r.json()["code"] == "TOO_MANY_REQUESTS"
        assert api.get("/api/v1/events").status_code == 200


# -- keys -----------------------------------------------------------------------------------------

def test_api_keys_are_checked_when_configured(store: str) -> None:
    key = "k-" + "x" * 30
    other = "second-key"
    with make_client(store, api_keys=f"{key},sha256:{hashlib.sha256(other.encode()).hexdigest()}") as api:
        for headers in ({}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"}):
            r = api.get("/api/v1/events", headers=headers)
            assert r.status_code == 401 and r.json()["code"] == "UNAUTHORIZED", headers
            assert r.headers["www-authenticate"].startswith("Bearer")
        assert api.get("/api/v1/events", headers={"X-API-Key": key}).status_code == 200
        assert api.get("/api/v1/events", headers={"Authorization": f"Bearer {other}"}).status_code == 200
        assert api.get("/healthz").status_code == 200 and api.get("/openapi.json").status_code == 200


def test_hub_serve_off_loopback_without_keys_refuses_to_start(tmp_path: Path) -> None:
    r = hub("serve", "--host", "0.0.0.0", "--clickhouse", f"chdb://{tmp_path}/store", env={"HUB_SERVE__API_KEYS": ""})
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "needs API keys" in r.stderr and "HUB_SERVE__API_KEYS" in r.stderr
    assert not (tmp_path / "store").exists()
    r = hub("config", "check", env={"HUB_SERVE__API_KEYS": "abc"})
    assert r.returncode == 0
    r = hub("config", "show", env={"HUB_SERVE__API_KEYS": "abc"})
    assert "abc" not in r.stdout and "serve.api_keys" in r.stdout


def test_openapi_describes_every_route_and_the_problem_shape(api: TestClient) -> None:
    spec = api.get("/openapi.json").json()
    assert {"/api/v1/metrics", "/api/v1/events", "/api/v1/anomalies", "/api/v1/incidents",
            "/api/v1/incidents/{incident_id}", "/api/v1/alerts", "/api/v1/alerts/history", "/api/v1/budgets",
            "/api/v1/compliance", "/api/v1/assets", "/api/v1/assets/{asset_id}"} <= set(spec["paths"])
    alerts = spec["paths"]["/api/v1/alerts"]["get"]
    assert {p["name"] for p in alerts["parameters"]} >= {"state", "rule", "severity", "from", "to", "after", "per_page"}
    assert PROBLEM in alerts["responses"]["422"]["content"]
    assert {"Alert", "BudgetStatus", "ComplianceReport", "Asset"} <= set(spec["components"]["schemas"])
    metrics = spec["paths"]["/api/v1/metrics"]["get"]
    assert {p["name"] for p in metrics["parameters"]} >= {"name", "window", "group_by", "from", "to", "after", "before"}
    assert PROBLEM in metrics["responses"]["422"]["content"]
    assert {"Problem", "FieldError", "Pagination", "Links", "ExecutionMetrics"} <= set(spec["components"]["schemas"])


# -- the real server against a running hub ----------------------------------------------------------

@pytest.mark.slow
def test_hub_serve_reads_a_running_hub_run_live(tmp_path: Path) -> None:
    from connectors.live_store import find
    from ports import free_port
    from tests.helpers import HubProcess, wait_for

    store = tmp_path / "store"
    worker = HubProcess(["--rate", "400", "--clickhouse", f"chdb://{store}"], {}, tmp_path / "run.log").start()
    server = None
    try:
        wait_for(lambda: find(store), 120, "the run to serve its store live")
        port = free_port()
        log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115
        server = subprocess.Popen([sys.executable, "-m", "flows.cli", "serve", "--port", str(port),
                                   "--clickhouse", f"chdb://{store}"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"

        def total() -> int:
            try:
                r = httpx.get(f"{base}/api/v1/events", params={"per_page": 1}, timeout=10)
            except httpx.HTTPError:
                return 0
            return r.json()["pagination"]["total_items"] if r.status_code == 200 else 0

        first = wait_for(total, 60, "hub serve to answer with events")
        wait_for(lambda: total() > first, 60, f"the event total to grow past {first}")
        assert "(live, served by `hub run` pid" in (tmp_path / "serve.log").read_text()
        r = httpx.get(f"{base}/api/v1/metrics", params={"name": "requests", "window": "1m"}, timeout=10)
        assert r.status_code == 200 and r.json()["status"] in ("success", "partial")
    finally:
        if server is not None:
            server.terminate()
            assert server.wait(30) == 0
        worker.stop()
