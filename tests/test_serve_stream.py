"""`GET /api/v1/stream`: server-sent events of anomalies, incidents and alerts written while a
client listens, against a real ClickHouse HTTP server (chdb-backed): data / heartbeat / complete /
error events, sequence numbers, and resuming from Last-Event-ID."""
from __future__ import annotations

import base64
import time
from contextlib import closing
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from config.settings import ClickHouseSettings, RetentionSettings, load_config
from connectors.clickhouse import connect
from connectors.migrations import migrate
from flows.serve import create_app

ANOMALY_COLS = ["id", "metric", "model", "endpoint", "team", "window_start", "window_ms", "anomaly_type", "score",
                "expected", "spread", "observed", "detector", "severity", "tags"]
INCIDENT_COLS = ["id", "version", "status", "pattern", "confidence", "severity", "opened_at", "start_time", "end_time",
                 "assets", "root_cause_id", "root_cause_reasons", "pattern_reasons", "impact", "member_ids",
                 "member_roles", "member_sources", "member_kinds", "member_times", "overflow", "merged_into"]


def anomaly(client: Any, aid: str, age_s: float) -> None:
    start = int((time.time() - age_s) * 1000) // 60_000 * 60_000
    client.insert("anomalies", [[aid, "latency_ms", "gpt-4o", "/v1/chat", "search", start, 60_000, "spike", 0.93,
                                 800.0, 50.0, 4000.0, "mad", "high", {}]], column_names=ANOMALY_COLS)


OPENED_MS = int(time.time() * 1000) - 60_000  # an incident keeps its open time (part of its sorting key)


def incident(client: Any, iid: str, version: int, status: str = "open") -> None:
    now = int(time.time() * 1000)
    client.insert("incidents", [[iid, version, status, "performance_degradation", 0.7, "high", OPENED_MS,
                                 OPENED_MS, now, ["gpt-4o"], "a1", ["first"], ["latency"], {"performance": 0.8},
                                 ["a1"], ["root_cause"], ["telemetry"], ["anomaly"], [OPENED_MS], 0, ""]],
                  column_names=INCIDENT_COLS)


ALERT_STARTS_MS = int(time.time() * 1000) - 120_000


def alert(client: Any, aid: str, version: int, status: str = "firing") -> None:
    now = int(time.time() * 1000)
    client.insert("alerts", [[aid, version, "gpt4o-p95", "threshold", status, status, "high",
                              {"model": "gpt-4o", "metric": "latency_ms"}, 2600.0, 2000.0, ALERT_STARTS_MS,
                              now if status == "resolved" else None, now, "p95 of latency_ms is 2600", [], []]],
                  column_names=["id", "version", "rule", "kind", "status", "event", "severity", "labels", "value",
                                "threshold", "starts_at", "ends_at", "updated_at", "summary", "anomaly_ids",
                                "incident_ids"])


def events(api: TestClient, url: str, headers: dict[str, str] | None = None, on_event=None) -> list[dict]:
    """Every SSE event until the stream ends: {'event', 'id', 'data', 'retry'}."""
    out: list[dict] = []
    current: dict[str, Any] = {}
    with api.stream("GET", url, headers=headers or {}) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if not line:
                if current.get("event"):
                    out.append(current)
                    if on_event:
                        on_event(current)
                current = {}
                continue
            name, _, value = line.partition(": ")
            if name == "data":
                current["data"] = orjson.loads(value)
            elif name in ("event", "id", "retry"):
                current[name] = value
    return out


@pytest.fixture
def server_store(clickhouse_server):
    server = clickhouse_server.start()
    settings = ClickHouseSettings(dsn=server.url)
    with closing(connect(settings)) as client:
        migrate(client, RetentionSettings())
    return server.url, settings


def test_stream_sends_new_anomalies_and_incidents_and_resumes(server_store) -> None:
    dsn, settings = server_store
    cfg = load_config(overrides={"clickhouse.dsn": dsn, "serve.stream_poll_s": 0.1})
    with closing(connect(settings)) as writer, TestClient(create_app(cfg)) as api:
        anomaly(writer, "old", age_s=600)  # stored before the client came: not sent
        wrote: list[str] = []

        def write_on_first_heartbeat(ev: dict) -> None:
            if ev["event"] == "heartbeat" and not wrote:
                anomaly(writer, "a1", age_s=90)  # an earlier window than "now": still new
                incident(writer, "i1", 1)
                alert(writer, "al1", 1)
                wrote.append("yes")

        got = events(api, "/api/v1/stream?heartbeat_s=0.3&duration_s=4", on_event=write_on_first_heartbeat)
        kinds = [e["event"] for e in got]
        assert kinds[0] == "heartbeat" and kinds[-1] == "complete" and "error" not in kinds
        assert [e["data"]["sequence"] for e in got] == list(range(1, len(got) + 1))
        assert all(e["data"]["type"] == e["event"] for e in got)
        assert got[0]["retry"] == "2000"
        data = [e for e in got if e["event"] == "data" and e["data"]["kind"] != "alert"]
        assert [(e["data"]["kind"], e["data"]["data"]["id"]) for e in data] == [("anomaly", "a1"), ("incident", "i1")]
        alerts = [e["data"]["data"] for e in got if e["event"] == "data" and e["data"]["kind"] == "alert"]
        assert [(a["id"], a["version"], a["status"], a["labels"]["model"]) for a in alerts] == \
            [("al1", 1, "firing", "gpt-4o")]
        assert data[0]["data"]["data"]["score"] == pytest.approx(0.93)
        assert data[1]["data"]["data"]["version"] == 1

        # Reconnect after the anomaly: the incident (never acknowledged) comes again, then what
        # was written while away; the numbering goes on from the id.
        anomaly(writer, "a2", age_s=30)
        incident(writer, "i1", 2, status="closed")
        alert(writer, "al1", 2, status="resolved")
        resumed = events(api, "/api/v1/stream?heartbeat_s=5&duration_s=1.5", headers={"Last-Event-ID": data[0]["id"]})
        seq = data[0]["data"]["sequence"]
        assert [e["data"]["sequence"] for e in resumed] == list(range(seq + 1, seq + 1 + len(resumed)))
        sent = [(e["data"]["kind"], e["data"]["data"]["id"], e["data"]["data"].get("version")) for e in resumed
                if e["event"] == "data"]
        assert [x for x in sent if x[0] != "alert"] == [("anomaly", "a2", None), ("incident", "i1", 2)], \
            (resumed, data[0])
        # Every version of an alert is an event: the firing one (never acknowledged), then the resolution.
        assert [x for x in sent if x[0] == "alert"] == [("alert", "al1", 1), ("alert", "al1", 2)]
        assert resumed[-1]["event"] == "complete"

        # From the last event of that stream: nothing new.
        again = events(api, "/api/v1/stream?heartbeat_s=5&duration_s=0.5", headers={"Last-Event-ID": resumed[-1]["id"]})
        assert [e["event"] for e in again] == ["complete"]

        # `from` replays what was stored for windows after it.
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 900))
        replay = events(api, f"/api/v1/stream?kinds=anomalies&duration_s=0.5&from={since}")
        assert [e["data"]["data"]["id"] for e in replay if e["event"] == "data"] == ["old", "a1", "a2"]


def test_bad_last_event_id_is_a_problem_and_store_errors_are_error_events(clickhouse_server) -> None:
    server = clickhouse_server.start()
    cfg = load_config(overrides={"clickhouse.dsn": server.url, "serve.stream_poll_s": 0.1})
    with closing(connect(ClickHouseSettings(dsn=server.url))) as client:
        migrate(client, RetentionSettings())
    with TestClient(create_app(cfg)) as api:
        r = api.get("/api/v1/stream", headers={"Last-Event-ID": "nonsense"})
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
        assert r.json()["errors"][0]["field"] == "header.last-event-id"
        r = api.get("/api/v1/stream", params={"kinds": "budgets"})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.kinds.0"

        clickhouse_server.stop(server)  # the store goes away under a listening client
        got = events(api, "/api/v1/stream?duration_s=1&heartbeat_s=5")
        errors = [e for e in got if e["event"] == "error"]
        assert errors and errors[0]["data"]["error"]["code"] == "StoreUnavailable" and got[-1]["event"] == "complete"


def test_an_id_from_before_alerts_were_streamed_still_resumes() -> None:
    """Browsers reconnect with the id they last got, possibly from the previous version of the hub."""
    from flows.api_stream import Cursor

    legacy = "7." + base64.urlsafe_b64encode(orjson.dumps([1000, "a", 2000, "i", 3])).decode().rstrip("=")
    cursor = Cursor.decode(legacy)
    assert cursor.seq == 7
    assert cursor.keys == {"anomalies": (1000, "a"), "incidents": (2000, "i", 3), "alerts": (2000, "", 0)}
    assert Cursor.decode(cursor.encode()) == cursor
