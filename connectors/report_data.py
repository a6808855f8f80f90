"""The store queries behind `hub report` (read-only): every series the report plots, as rows.

The window of the time series follows how much time the store spans, so a 20-minute run and a
month of data both give readable plots: up to 6 hours of data in 5-minute windows, up to 3 days
in hours, beyond that in days. Percentiles come from merged histograms (hub_quantile).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from clickhouse_connect.driver.client import Client

from connectors.clickhouse import read_only_settings

MAX_ANOMALY_SERIES = 6
MAX_INCIDENTS = 20


@dataclass
class ReportData:
    window: str
    first: datetime | None
    last: datetime | None
    totals: dict[str, Any]
    latency: list[tuple]  # window_start, model, p50, p95, p99
    error_rate: list[tuple]  # window_start, model, error_rate
    tokens: list[tuple]  # window_start, model, tokens
    cost_by_model: list[tuple]  # day, model, cost
    cost_by_team: list[tuple]  # day, team, cost
    anomaly_series: list[tuple]  # metric, model, window_start, mean
    anomalies: list[tuple]  # metric, model, window_start, anomaly_type, score, observed, expected, severity
    incidents: list[dict[str, Any]]
    edges: list[tuple]  # incident_id, from_id, to_id, relationship


def _window(span_s: float) -> str:
    if span_s <= 6 * 3600:
        return "5m"
    if span_s <= 3 * 86_400:
        return "1h"
    return "1d"


def load(client: Client) -> ReportData:
    ro = read_only_settings(client)

    def rows(sql: str, **params: Any) -> list[tuple]:
        return client.query(sql, parameters=params, settings=ro).result_rows

    first, last, events, dead, skipped = rows(
        "SELECT min(event_time), max(event_time), count(), (SELECT count() FROM dead_letters FINAL), "
        "(SELECT sum(inputs) FROM skipped_inputs FINAL) FROM events FINAL")[0]
    empty = not events
    span = 0.0 if empty else (last - first).total_seconds()
    w = _window(span)
    totals_row = rows("SELECT sum(requests), sum(errors), sum(cost_usd), sum(tokens) FROM composite_1d")[0]
    totals = {"events": events, "dead_letters": dead, "skipped": skipped or 0, "requests": totals_row[0] or 0,
              "errors": totals_row[1] or 0, "cost_usd": totals_row[2] or 0.0, "tokens": totals_row[3] or 0}
    series_keys = rows(
        f"SELECT metric, model FROM anomalies FINAL GROUP BY metric, model ORDER BY count() DESC, metric, model "
        f"LIMIT {MAX_ANOMALY_SERIES}")
    anomaly_series: list[tuple] = []
    anomalies: list[tuple] = []
    if series_keys:
        keys = [tuple(k) for k in series_keys]
        anomaly_series = rows(
            "SELECT metric, model, window_start, sum(sum) / nullIf(sum(count), 0) FROM metrics_1m_stats "
            "WHERE (metric, model) IN {keys:Array(Tuple(String, String))} GROUP BY metric, model, window_start "
            "ORDER BY window_start", keys=keys)
        anomalies = rows(
            "SELECT metric, model, window_start, anomaly_type, score, observed, expected, severity FROM anomalies FINAL "
            "WHERE (metric, model) IN {keys:Array(Tuple(String, String))} ORDER BY window_start", keys=keys)
    incidents = [dict(zip(("id", "opened_at", "status", "pattern", "severity", "confidence", "assets", "root_cause_id",
                           "member_ids", "member_roles", "member_sources", "member_kinds", "member_times"), r))
                 for r in rows("SELECT id, opened_at, status, pattern, severity, confidence, assets, root_cause_id, "
                               "member_ids, member_roles, member_sources, member_kinds, member_times FROM incidents FINAL "
                               f"ORDER BY opened_at DESC LIMIT {MAX_INCIDENTS}")]
    edges: list[tuple] = []
    if incidents:
        edges = rows("SELECT e.incident_id, e.from_id, e.to_id, e.relationship FROM incident_edges AS e FINAL "
                     "INNER JOIN (SELECT id, max(version) AS version FROM incidents GROUP BY id) AS i "
                     "ON e.incident_id = i.id AND e.version = i.version WHERE e.incident_id IN {ids:Array(String)}",
                     ids=[i["id"] for i in incidents])
    return ReportData(
        window=w, first=None if empty else first, last=None if empty else last, totals=totals,
        latency=rows(f"SELECT window_start, model, hub_quantile(sumMap(histogram), 0.5), "
                     f"hub_quantile(sumMap(histogram), 0.95), hub_quantile(sumMap(histogram), 0.99) "
                     f"FROM metrics_{w}_stats WHERE metric = 'latency_ms' GROUP BY window_start, model "
                     f"ORDER BY window_start, model"),
        error_rate=rows(f"SELECT window_start, model, sum(errors) / nullIf(sum(requests), 0) FROM composite_{w} "
                        f"GROUP BY window_start, model ORDER BY window_start, model"),
        tokens=rows(f"SELECT window_start, model, sum(tokens) FROM composite_{w} GROUP BY window_start, model "
                    f"ORDER BY window_start, model"),
        cost_by_model=rows("SELECT window_start, model, sum(cost_usd) FROM composite_1d GROUP BY window_start, model "
                           "ORDER BY window_start, model"),
        cost_by_team=rows("SELECT window_start, team, sum(sum) FROM metrics_1d_stats WHERE metric = 'cost_usd' "
                          "GROUP BY window_start, team ORDER BY window_start, team"),
        anomaly_series=anomaly_series, anomalies=anomalies, incidents=incidents, edges=edges)
