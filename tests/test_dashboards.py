"""The Grafana dashboards (dashboards/): Grafana cannot run here, so every panel's and every
annotation's SQL is run, with the ClickHouse plugin's macros expanded as the plugin expands them,
on a store filled by a real `hub run`, and must return rows with the columns the panel expects."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import pytest
import yaml

from config.settings import ClickHouseSettings
from connectors.clickhouse import connect, read_only_settings
from tests.helpers import ALERTING_CONFIG, ROOT

BOARDS = sorted((ROOT / "dashboards/json").glob("*.json"))
DATASOURCE_UID = "hub-clickhouse"
# (dashboard uid, panel or annotation title) -> the columns its query must return, in order.
EXPECTED: dict[tuple[str, str], list[str]] = {
    ("hub-overview", "Requests"): ["requests"],
    ("hub-overview", "Error rate"): ["error_rate"],
    ("hub-overview", "p95 latency"): ["p95_ms"],
    ("hub-overview", "Cost"): ["cost_usd"],
    ("hub-overview", "Requests per model"): ["time", "model", "requests"],
    ("hub-overview", "Error rate per model"): ["time", "model", "error_rate"],
    ("hub-overview", "Latency p50 / p95 / p99 (all models)"): ["time", "p50_ms", "p95_ms", "p99_ms"],
    ("hub-overview", "p95 latency per model"): ["time", "model", "p95_ms"],
    ("hub-overview", "Tokens per model"): ["time", "model", "tokens"],
    ("hub-overview", "Cost per model"): ["time", "model", "cost_usd"],
    ("hub-overview", "Cost per team"): ["time", "team", "cost_usd"],
    ("hub-overview", "Anomalies"): ["time", "timeEnd", "text", "tags"],
    ("hub-cost", "Cost per day and model"): ["time", "model", "cost_usd"],
    ("hub-cost", "Cost per team"): ["time", "team", "cost_usd"],
    ("hub-cost", "Unit cost per model"): ["model", "requests", "cost_usd", "cost_per_request", "cost_per_1k_tokens"],
    ("hub-cost", "Cost by where it came from"): ["cost_source", "model", "calls", "cost_usd"],
    ("hub-cost", "Budget used"): ["budget", "pct_used"],
    ("hub-cost", "Budgets"): ["budget", "scope", "period", "period_start", "amount_usd", "spend", "forecast", "pct_used",
                              "updated_at"],
    ("hub-alerts", "Firing alerts"): ["firing"],
    ("hub-alerts", "Alerts started per rule"): ["time", "rule", "alerts"],
    ("hub-alerts", "Current alerts"): ["starts_at", "rule", "kind", "severity", "status", "value", "threshold", "summary",
                                       "labels", "ends_at"],
    ("hub-alerts", "Alert history"): ["updated_at", "id", "version", "rule", "event", "severity", "value", "summary"],
    ("hub-alerts", "Alerts"): ["time", "timeEnd", "text", "tags"],
    ("hub-quality", "Dead letters per reason"): ["time", "code", "dead_letters"],
    ("hub-quality", "Dead letters per source"): ["time", "source", "dead_letters"],
    ("hub-quality", "Late events per source"): ["time", "source", "late_events"],
    ("hub-quality", "Skipped inputs per reason"): ["time", "reason", "inputs"],
    ("hub-quality", "Latest dead letters"): ["ingest_time", "source", "code", "field", "reason", "topic", "partition",
                                             "offset"],
    ("hub-incidents", "Anomalies per type"): ["time", "anomaly_type", "anomalies"],
    ("hub-incidents", "Open incidents"): ["open_incidents"],
    ("hub-incidents", "Latest anomalies"): ["window_start", "metric", "model", "endpoint", "team", "anomaly_type",
                                            "severity", "score", "expected", "observed", "detector"],
    ("hub-incidents", "Incidents"): ["opened_at", "id", "status", "pattern", "severity", "confidence", "assets",
                                     "members", "root_cause_id"],
    ("hub-incidents", "Incident edges"): ["incident_id", "from_id", "to_id", "relationship", "weight", "time"],
    ("hub-incidents", "Anomalies"): ["time", "timeEnd", "text", "tags"],
    ("hub-incidents", "Incidents opened"): ["time", "timeEnd", "text", "tags"],
    ("hub-compliance", "Compliance rate"): ["time", "compliance_rate"],
    ("hub-compliance", "Policy violations and security findings"): ["time", "metric", "findings"],
    ("hub-compliance", "Violations by type and severity"): ["event_type", "severity", "events"],
    ("hub-compliance", "Compliance rate per team (hourly reports)"): ["time", "team", "compliance_rate"],
    ("hub-compliance", "Daily compliance per asset"): ["window_start", "asset", "asset_owner", "evaluations",
                                                       "non_compliant", "violations", "compliance_rate",
                                                       "compliance_rate_change", "violations_by_severity"],
}


def expand(sql: str, start_s: int, end_s: int, interval_s: int) -> str:
    """The plugin's macros (pkg/macros of grafana-clickhouse-datasource): time filters as
    toDateTime(epoch s) / fromUnixTimestamp64Milli(epoch ms) bounds, intervals as toStartOfInterval."""
    sql = re.sub(r"\$__timeFilter_ms\(([^)]+)\)", lambda m: f"{m[1]} >= fromUnixTimestamp64Milli({start_s * 1000}) "
                 f"AND {m[1]} <= fromUnixTimestamp64Milli({end_s * 1000})", sql)
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)", lambda m: f"{m[1]} >= toDateTime({start_s}) AND {m[1]} <= "
                 f"toDateTime({end_s})", sql)
    sql = re.sub(r"\$__timeInterval\(([^)]+)\)",
                 lambda m: f"toStartOfInterval(toDateTime({m[1]}), INTERVAL {interval_s} second)", sql)
    sql = sql.replace("$__interval_s", str(interval_s)).replace("$__fromTime", f"toDateTime({start_s})")
    sql = sql.replace("$__toTime", f"toDateTime({end_s})")
    assert "$__" not in sql, f"a macro this test does not expand: {sql}"
    return sql


def queries() -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(dashboard uid, title, target) of every panel query and annotation query."""
    for path in BOARDS:
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                yield board["uid"], panel["title"], target
        for annotation in board["annotations"]["list"]:
            if "target" in annotation:
                yield board["uid"], annotation["name"], annotation["target"]


ALL = list(queries())


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """~30k synthetic events through `hub run` with budgets and alert rules that fire (so
    budget_status and alerts have rows, as compliance_reports do), plus two anomalies (the
    generator's series are calm)."""
    path = tmp_path_factory.mktemp("dashboards") / "store"
    r = subprocess.run([sys.executable, "-m", "flows.cli", "run", "--events", "30000", "--rate", "20",
                        "--clickhouse", f"chdb://{path}", "--config", str(ALERTING_CONFIG)],
                       capture_output=True, text=True, timeout=300, cwd=ROOT, env=dict(os.environ))
    assert r.returncode == 0, r.stderr
    settings = ClickHouseSettings(dsn=f"chdb://{path}")
    with closing(connect(settings)) as client:
        start = int(time.time() * 1000) // 60_000 * 60_000 - 600_000
        client.insert("anomalies", [[f"a{i}", "latency_ms", "gpt-4o", "/v1/chat", "search", start + i * 60_000, 60_000,
                                     kind, 0.9, 800.0, 50.0, 4000.0, "mad", "high", {}]
                                    for i, kind in enumerate(("spike", "level_shift"))],
                      column_names=["id", "metric", "model", "endpoint", "team", "window_start", "window_ms",
                                    "anomaly_type", "score", "expected", "spread", "observed", "detector", "severity",
                                    "tags"])
        yield client


def test_every_query_has_an_expectation_and_uses_the_provisioned_data_source() -> None:
    assert len(BOARDS) == 6 and len(ALL) == len(EXPECTED)
    assert {(uid, title) for uid, title, _ in ALL} == set(EXPECTED)
    for uid, title, target in ALL:
        assert target["datasource"] == {"type": "grafana-clickhouse-datasource", "uid": DATASOURCE_UID}, (uid, title)
        assert target["editorType"] == "sql" and target["rawSql"].strip(), (uid, title)
    provisioned = yaml.safe_load((ROOT / "dashboards/provisioning/datasources/clickhouse.yaml").read_text())
    assert [d["uid"] for d in provisioned["datasources"]] == [DATASOURCE_UID]
    assert provisioned["datasources"][0]["type"] == "grafana-clickhouse-datasource"
    assert "password" not in provisioned["datasources"][0]["jsonData"]
    uids = [json.loads(p.read_text())["uid"] for p in BOARDS]
    assert len(set(uids)) == len(uids)


def test_compose_provisions_grafana_with_the_plugin_and_these_files() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    grafana = compose["services"]["grafana"]
    assert "grafana-clickhouse-datasource" in grafana["environment"]["GF_INSTALL_PLUGINS"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"]}
    assert (ROOT / mounts["/etc/grafana/provisioning"]).resolve() == (ROOT / "dashboards/provisioning").resolve()
    provider = yaml.safe_load((ROOT / "dashboards/provisioning/dashboards/hub.yaml").read_text())
    path = provider["providers"][0]["options"]["path"]
    assert (ROOT / mounts[path]).resolve() == (ROOT / "dashboards/json").resolve()
    assert grafana["environment"]["HUB_GRAFANA_CLICKHOUSE_HOST"] == "clickhouse"


@pytest.mark.parametrize(("uid", "title", "target"), ALL, ids=[f"{u}:{t}" for u, t, _ in ALL])
def test_panel_sql_runs_and_returns_the_expected_columns(store: Any, uid: str, title: str,
                                                         target: dict[str, Any]) -> None:
    now = int(time.time())
    sql = expand(target["rawSql"], now - 2 * 86_400, now + 3_600, 60)
    result = store.query(sql, settings=read_only_settings(store))
    assert list(result.column_names) == EXPECTED[(uid, title)], sql
    assert result.result_rows, f"{uid} / {title} returned no rows: {sql}"
    if target["queryType"] == "timeseries":
        assert result.column_names[0] == "time"
        times = [row[0] for row in result.result_rows]
        assert times == sorted(times), "time series come ordered by time"
