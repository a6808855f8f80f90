"""The outbound feeds on the real broker: registry, policy, governance and telemetry events in,
`hub run --until-end`, and every feed topic holds records that validate against its packaged JSON
Schema (schemas/json/feed-*.schema.json) and say what went in."""
from __future__ import annotations

import json
import time
import uuid

import orjson
import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic
from jsonschema import Draft202012Validator

from schemas.jsonschema import FEED_SCHEMAS, PACKAGED_DIR
from tests.helpers import produce, topic_env, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
MIN = 60_000
HOUR = 3_600_000
T0 = (int(time.time() * 1000) // HOUR - 5) * HOUR


def message(event_type: str, event_id: str, t: int, payload: dict, team: str = "search", **extra) -> bytes:
    return orjson.dumps({"event_type": event_type, "event_id": event_id, "event_time": t, "tags": {"team": team},
                         "payload": payload, **extra})


def test_every_feed_topic_gets_records_valid_against_its_schema(kafka_bootstrap, tmp_path, monkeypatch):
    from flows.cli import main

    env = topic_env(kafka_bootstrap)
    run = uuid.uuid4().hex[:8]
    feeds = {key: f"f{run}.{key}" for *_, key in FEED_SCHEMAS.values()}
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for f in admin.create_topics([NewTopic(t, 1, 1) for t in feeds.values()]).values():
        f.result(30)
    env.update({f"HUB_KAFKA__TOPICS__{key.upper()}": topic for key, topic in feeds.items()})
    produce(kafka_bootstrap, env["HUB_KAFKA__TOPICS__REGISTRY"], [
        message("asset.registered", "r-1", T0 - MIN, {"asset_id": "gpt-4o", "asset_name": "gpt-4o", "owner": "ml",
                                                      "version": "1.0", "tags": ["prod"]}),
        message("asset.updated", "r-2", T0 + 30 * MIN, {"asset_id": "gpt-4o", "owner": "platform",
                                                        "changed_fields": ["owner"]})])
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    # The registry first (as in production, assets exist before their traffic): which partition a
    # run reads first is up to the source, and rows are enriched with what was taken before them.
    args = ["run", "--until-end", "--clickhouse", f"chdb://{tmp_path}/store", "--recovery-dir", str(tmp_path / "rec")]
    assert main(args) == 0
    calls = [message("telemetry.request", f"c-{i}", T0 + i * 30_000,
                     {"model": "gpt-4o", "latency_ms": 300.0, "input_tokens": 100, "output_tokens": 20, "cost_usd": 0.01})
             for i in range(2 * 120 + 10)]  # two whole hours and a bit
    produce(kafka_bootstrap, env["HUB_KAFKA__TOPICS__TELEMETRY"], calls)
    produce(kafka_bootstrap, env["HUB_KAFKA__TOPICS__POLICY"], [
        message("policy.evaluated", f"p-{i}", T0 + i * 5 * MIN, {"policy_id": "pol-1", "asset_id": "gpt-4o",
                                                                  "decision": "denied" if i % 3 == 0 else "allowed"})
        for i in range(26)] + [
        message("violation.detected", "v-1", T0 + 7 * MIN, {"policy_id": "pol-1", "violation_type": "pii",
                                                              "asset_id": "gpt-4o", "description": "email in prompt"},
                severity="high"),
        message("audit.logged", "a-1", T0 + 8 * MIN, {"actor": "alice", "action": "override", "resource": "pol-1"})])
    produce(kafka_bootstrap, env["HUB_KAFKA__TOPICS__GOVERNANCE"], [
        message("governance.audit", "a-2", T0 + 9 * MIN, {"actor": "bob", "action": "export", "resource_id": "gpt-4o",
                                                          "resource_type": "model", "details": {"rows": "10"}}),
        message("governance.violation", "v-2", T0 + 61 * MIN, {"policy_id": "gov-1", "violation_type": "retention",
                                                               "asset_id": "gpt-4o"})])
    assert main(args) == 0  # on from the offsets of the first run

    got: dict[str, list[dict]] = {}
    for name, (*_, key) in FEED_SCHEMAS.items():
        schema = json.loads((PACKAGED_DIR / name).read_text())
        validator = Draft202012Validator(schema)
        records = consume(kafka_bootstrap, feeds[key])
        for r in records:
            validator.validate(r)
        got[key] = records
    usage = {(r["hour_start_ms"], r["team"], r["model"]): r for r in got["usage_feed"]}
    assert usage[(T0, "search", "gpt-4o")]["requests"] == 120
    assert usage[(T0, "search", "gpt-4o")]["cost_usd"] == pytest.approx(1.2)
    assert usage[(T0, "search", "gpt-4o")]["asset"]["owner"] == "platform"  # as of the hour's end
    reports = {(r["granularity"], r["window_start_ms"], r["scope_kind"], r["scope"]): r for r in got["compliance_feed"]}
    first = reports[("hour", T0, "all", "")]
    assert (first["evaluations"], first["compliant"], first["violations"]) == (12, 8, 1)
    assert reports[("hour", T0 + HOUR, "asset", "gpt-4o")]["violations_by_type"] == {"retention": 1}
    assert sorted(r["id"] for r in got["violation_feed"]) == ["v-1", "v-2"]
    v1 = next(r for r in got["violation_feed"] if r["id"] == "v-1")
    assert (v1["severity"], v1["description"], v1["asset"]["owner"]) == ("high", "email in prompt", "ml")
    assert {(r["id"], r["actor"], r["resource"]) for r in got["audit_feed"]} == {("a-1", "alice", "pol-1"),
                                                                                ("a-2", "bob", "gpt-4o")}
    assert [(r["change"], r["profile"]["owner"]) for r in sorted(got["asset_feed"], key=lambda r: r["time_ms"])] == \
        [("created", "ml"), ("updated", "platform")]


def consume(bootstrap: str, topic: str) -> list[dict]:
    """Everything on the topic: read until a poll finds nothing new after at least one record."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex, "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    out: list[dict] = []
    quiet = [0]

    def drained() -> bool:
        m = consumer.poll(0.5)
        if m is None or m.error() is not None:
            quiet[0] += 1
            return bool(out) and quiet[0] >= 4
        quiet[0] = 0
        out.append(orjson.loads(m.value()))
        return False

    try:
        wait_for(drained, 60, f"records on {topic}", interval_s=0)
    finally:
        consumer.close()
    return out
