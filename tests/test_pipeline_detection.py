"""Anomalies and incidents through the whole flow: a latency spike, a cost spike and a security
finding on one model within minutes become anomalies and one correlated incident."""
from __future__ import annotations

import json
import time
from contextlib import closing

import numpy as np
import pytest

from config.settings import ClickHouseSettings
from connectors.clickhouse import connect
from flows.cli import main

T0 = (int(time.time() * 1000) // 3_600_000 - 4) * 3_600_000
MINUTES = 90
SPIKE_AT = 80  # minute of the incident


def lines() -> list[str]:
    rng = np.random.default_rng(17)
    out = []
    n = 0
    for minute in range(MINUTES):
        for j in range(30):
            t = T0 + minute * 60_000 + j * 2_000
            for model in ("gpt-4o", "claude-3-5-sonnet"):
                latency = float(rng.lognormal(6.0, 0.25))
                price = 0.002
                if model == "gpt-4o" and minute in (SPIKE_AT, SPIKE_AT + 1):
                    latency *= 12
                    price *= 15
                n += 1
                out.append({"event_type": "telemetry.request", "event_id": f"r{n}", "event_time": t,
                            "source": "telemetry", "payload": {"model": model, "latency_ms": round(latency, 3)}})
                out.append({"event_type": "cost.tokens", "event_id": f"c{n}", "event_time": t, "source": "cost",
                            "payload": {"model": model, "total_cost": price}})
    out.append({"event_type": "security.threat", "event_id": "threat-1", "event_time": T0 + SPIKE_AT * 60_000 + 30_000,
                "source": "security", "severity": "high",
                "payload": {"threat_type": "prompt_injection", "model": "gpt-4o"}})
    out.sort(key=lambda e: e["event_time"])
    return [json.dumps(e) for e in out]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("detect")
    src = tmp / "incident.jsonl"
    src.write_text("\n".join(lines()) + "\n")
    dsn = f"chdb://{tmp}/store"
    # The cost spike is in the cost source's records: they are the bill here.
    config = tmp / "hub.toml"
    config.write_text('[cost]\ncount_from = "cost_events"\n')
    assert main(["run", "--config", str(config), "--input", str(src), "--clickhouse", dsn]) == 0
    with closing(connect(ClickHouseSettings(dsn=dsn))) as client:
        yield client


def test_spikes_become_anomalies_on_the_right_series_and_window(store):
    rows = store.query("SELECT metric, model, toUnixTimestamp64Milli(window_start), anomaly_type, score, observed, expected "
                       "FROM anomalies FINAL WHERE anomaly_type = 'spike'").result_rows
    spikes = {(m, model, ts) for m, model, ts, *_ in rows}
    spike_start = T0 + SPIKE_AT * 60_000
    assert ("latency_ms", "gpt-4o", spike_start) in spikes
    assert ("cost_usd", "gpt-4o", spike_start) in spikes
    assert all(model == "gpt-4o" for _, model, *_ in rows), rows
    for metric, _, ts, _, score, observed, expected in rows:
        assert 0 < score <= 1 and observed > expected


def test_related_signals_form_one_incident_with_a_graph(store):
    incidents = store.query(
        "SELECT id, pattern, confidence, root_cause_id, member_sources, member_ids FROM incidents FINAL "
        "WHERE status != 'merged' AND has(assets, 'gpt-4o')").result_rows
    with_threat = [i for i in incidents if "threat-1" in i[5]]
    assert len(with_threat) == 1, incidents
    iid, pattern, confidence, root, sources, members = with_threat[0]
    assert {"anomaly", "security"} <= set(sources)
    assert pattern in ("security_incident", "cost_impact", "performance_degradation")
    assert 0 < confidence <= 1 and root in members
    edges = store.query(f"SELECT from_id, to_id, relationship FROM incident_edges FINAL WHERE incident_id = '{iid}'").result_rows
    assert edges and all(a in members and b in members for a, b, _ in edges)
    assert not store.query("SELECT id FROM incidents FINAL WHERE has(assets, 'claude-3-5-sonnet')").result_rows
