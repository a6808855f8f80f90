"""`hub report --html FILE`: one self-contained HTML page of interactive Plotly plots.

The page carries plotly.js inline (no network needed to open it, ~4.7 MB): latency p50/p95/p99
over time per model, error rate and tokens per model, cost per day per model and per team,
the anomalous series with their anomalies marked, and the latest incidents listed with their
event graph (members placed by time and role, edges as lines).
"""
from __future__ import annotations

import html
from collections import defaultdict
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio

from config.errors import HubError
from config.settings import HubConfig
from connectors.clickhouse import connect
from connectors.report_data import ReportData, load

ROLES = ("root_cause", "contributor", "effect", "related")
STYLE = """body{font-family:system-ui,sans-serif;margin:24px;color:#222}h1{margin-bottom:4px}
.meta{color:#666;margin-bottom:16px}table{border-collapse:collapse;margin:8px 0 24px}
td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;font-size:13px}.totals td{font-size:15px}
.plot{margin-bottom:24px}.empty{color:#888;font-style:italic}"""


def _by(rows: list[tuple], key: int) -> dict[Any, list[tuple]]:
    groups: dict[Any, list[tuple]] = defaultdict(list)
    for row in rows:
        groups[row[key]].append(row)
    return dict(sorted(groups.items()))


def _lines(title: str, rows: list[tuple], value: int, ytitle: str, name_of: Any = None, mode: str = "lines") -> go.Figure:
    fig = go.Figure()
    for group, points in _by(rows, 1).items():
        fig.add_trace(go.Scatter(x=[p[0] for p in points], y=[p[value] for p in points], mode=mode,
                                 name=name_of(group) if name_of else str(group or "(none)")))
    fig.update_layout(title=title, yaxis_title=ytitle, height=380, margin={"t": 50, "b": 40})
    return fig


def latency_figure(data: ReportData) -> go.Figure:
    fig = go.Figure()
    for model, points in _by(data.latency, 1).items():
        for col, q, dash in ((2, "p50", "dot"), (3, "p95", "solid"), (4, "p99", "dash")):
            fig.add_trace(go.Scatter(x=[p[0] for p in points], y=[p[col] for p in points], mode="lines",
                                     name=f"{model} {q}", legendgroup=str(model), line={"dash": dash}))
    fig.update_layout(title=f"Latency p50 / p95 / p99 per model ({data.window} windows, merged histograms)",
                      yaxis_title="ms", height=460, margin={"t": 50, "b": 40})
    return fig


def cost_figure(rows: list[tuple], by: str) -> go.Figure:
    fig = go.Figure()
    for group, points in _by(rows, 1).items():
        fig.add_trace(go.Bar(x=[p[0] for p in points], y=[p[2] for p in points], name=str(group or "(none)")))
    fig.update_layout(title=f"Cost per day and {by} (USD, billed rows)", barmode="stack", yaxis_title="USD",
                      height=380, margin={"t": 50, "b": 40})
    return fig


def anomaly_figures(data: ReportData) -> list[go.Figure]:
    marks = _by([(a[0], a[1], *a[2:]) for a in data.anomalies], 0)
    figs = []
    for (metric, model), points in _by([((m, mo), t, v) for m, mo, t, v in data.anomaly_series], 0).items():
        fig = go.Figure(go.Scatter(x=[p[1] for p in points], y=[p[2] for p in points], mode="lines",
                                   name=f"{metric} mean per minute"))
        found = [a for a in marks.get(metric, []) if a[1] == model]
        fig.add_trace(go.Scatter(
            x=[a[2] for a in found], y=[a[5] for a in found], mode="markers", name="anomaly",
            marker={"color": "red", "size": 10, "symbol": "x"},
            text=[f"{a[3]} (score {a[4]:.2f}, observed {a[5]:.4g}, expected {a[6]:.4g}, {a[7]})" for a in found],
            hoverinfo="text+x"))
        fig.update_layout(title=f"{metric} of {model}: anomalies marked", height=340, margin={"t": 50, "b": 40})
        figs.append(fig)
    return figs


def incident_graph(incident: dict[str, Any], edges: list[tuple]) -> go.Figure:
    """Members at (time, role); edges between them; the root cause ringed."""
    pos = {}
    lanes = {r: i for i, r in enumerate(ROLES)}
    for mid, role, source, kind, when in zip(incident["member_ids"], incident["member_roles"],
                                             incident["member_sources"], incident["member_kinds"],
                                             incident["member_times"]):
        pos[mid] = (when, lanes.get(role, len(ROLES)), f"{role}: {source} {kind}<br>{mid}")
    fig = go.Figure()
    xs: list[Any] = []
    ys: list[Any] = []
    for _, src, dst, _rel in edges:
        if src in pos and dst in pos:
            xs += [pos[src][0], pos[dst][0], None]
            ys += [pos[src][1], pos[dst][1], None]
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line={"color": "#bbb", "width": 1}, hoverinfo="skip",
                             name="edges"))
    root = incident["root_cause_id"]
    fig.add_trace(go.Scatter(
        x=[p[0] for p in pos.values()], y=[p[1] for p in pos.values()], mode="markers", name="members",
        text=[p[2] for p in pos.values()], hoverinfo="text",
        marker={"size": [16 if m == root else 9 for m in pos], "color": [p[1] for p in pos.values()],
                "colorscale": "Viridis", "line": {"width": [3 if m == root else 0 for m in pos], "color": "red"}}))
    fig.update_layout(title=f"Incident {incident['id'][:12]}: {incident['pattern']} ({incident['severity']})",
                      yaxis={"tickvals": list(range(len(ROLES))), "ticktext": list(ROLES)}, height=320,
                      showlegend=False, margin={"t": 50, "b": 40})
    return fig


def render(data: ReportData, store: str) -> str:
    figures: list[tuple[str, go.Figure | None, str]] = [
        ("Latency", latency_figure(data) if data.latency else None, "no latency windows yet"),
        ("Error rate", _lines(f"Error rate per model ({data.window} windows)", data.error_rate, 2, "errors / requests")
         if data.error_rate else None, "no requests yet"),
        ("Tokens", _lines(f"Tokens per model ({data.window} windows)", data.tokens, 2, "tokens")
         if data.tokens else None, "no tokens yet"),
        ("Cost per model", cost_figure(data.cost_by_model, "model") if data.cost_by_model else None, "no cost yet"),
        ("Cost per team", cost_figure(data.cost_by_team, "team") if data.cost_by_team else None, "no cost yet"),
    ]
    parts = []
    plotly_js: bool | str = True  # inline once, in the first plot
    for title, fig, empty in figures:
        parts.append(f"<h2>{html.escape(title)}</h2>")
        if fig is None:
            parts.append(f'<p class="empty">{html.escape(empty)}</p>')
            continue
        parts.append(f'<div class="plot">{pio.to_html(fig, include_plotlyjs=plotly_js, full_html=False)}</div>')
        plotly_js = False
    parts.append("<h2>Anomalies</h2>")
    anomaly_figs = anomaly_figures(data)
    if not anomaly_figs:
        parts.append('<p class="empty">no anomalies</p>')
    for fig in anomaly_figs:
        parts.append(f'<div class="plot">{pio.to_html(fig, include_plotlyjs=plotly_js, full_html=False)}</div>')
        plotly_js = False
    parts.append("<h2>Incidents</h2>")
    parts.append(_incident_table(data))
    edges = _by(data.edges, 0)
    for incident in data.incidents[:5]:
        fig = incident_graph(incident, edges.get(incident["id"], []))
        parts.append(f'<div class="plot">{pio.to_html(fig, include_plotlyjs=plotly_js, full_html=False)}</div>')
        plotly_js = False
    if plotly_js is True:  # no plot at all: still a valid page
        parts.append('<p class="empty">the store holds nothing to plot yet</p>')
    t = data.totals
    span = (f"{data.first:%Y-%m-%d %H:%M} to {data.last:%Y-%m-%d %H:%M} UTC" if data.first and data.last else "no events")
    totals = (f'<table class="totals"><tr><th>events</th><th>requests</th><th>errors</th><th>tokens</th><th>cost (USD)</th>'
              f"<th>dead letters</th><th>skipped</th></tr><tr><td>{t['events']:,}</td><td>{t['requests']:,}</td>"
              f"<td>{t['errors']:,.0f}</td><td>{t['tokens']:,.0f}</td><td>{t['cost_usd']:,.4f}</td>"
              f"<td>{t['dead_letters']:,}</td><td>{t['skipped']:,}</td></tr></table>")
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>LLM Analytics Hub report</title>"
            f"<style>{STYLE}</style></head><body><h1>LLM Analytics Hub report</h1>"
            f"<div class=\"meta\">{html.escape(store)}: {span}; generated {generated}</div>{totals}"
            f"{''.join(parts)}</body></html>\n")


def _incident_table(data: ReportData) -> str:
    if not data.incidents:
        return '<p class="empty">no incidents</p>'
    rows = "".join(
        f"<tr><td>{i['opened_at']:%Y-%m-%d %H:%M:%S}</td><td>{html.escape(i['id'][:12])}</td>"
        f"<td>{html.escape(i['status'])}</td><td>{html.escape(i['pattern'])}</td><td>{html.escape(i['severity'])}</td>"
        f"<td>{i['confidence']:.2f}</td><td>{html.escape(', '.join(i['assets']))}</td><td>{len(i['member_ids'])}</td></tr>"
        for i in data.incidents)
    return ("<table><tr><th>opened</th><th>id</th><th>status</th><th>pattern</th><th>severity</th><th>confidence</th>"
            f"<th>assets</th><th>members</th></tr>{rows}</table>")


def write_report(cfg: HubConfig, target: str) -> Path:
    path = Path(target)
    if not path.parent.is_dir():
        raise HubError(f"cannot write {target}: directory {path.parent} does not exist")
    with closing(connect(cfg.clickhouse, read_only=True)) as client:
        try:
            data = load(client)
        except Exception as exc:  # the store answered, but not as a hub store does
            raise HubError(f"cannot read the report's data from {cfg.clickhouse.dsn}: {str(exc).splitlines()[0][:300]} "
                           "(run `hub migrate` or `hub run` first)") from None
    page = render(data, cfg.clickhouse.dsn)
    try:
        path.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise HubError(f"cannot write {target}: {exc.strerror or exc}") from None
    return path
