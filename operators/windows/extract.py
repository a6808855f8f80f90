"""Which windowed metrics an event contributes to, computed column-wise for a whole batch.

Series are split by (model, endpoint, team). Ratios users want (error rate, cost per request,
cost per 1k tokens, throughput) are not stored: they are derived from these sums and counts at
query time (views `composite_<window>`), which keeps them exact when windows roll up.
"""
from __future__ import annotations

import numpy as np

from operators.windows import MetricValues

# metric -> the source module it is measured from (cost events repeat token counts; they must
# not count twice). Cost is summed over the rows marked `billed` ([cost] count_from).
DIRECT = {"latency_ms": "telemetry", "ttft_ms": "telemetry", "input_tokens": "telemetry", "output_tokens": "telemetry",
          "cached_tokens": "telemetry", "total_tokens": "telemetry", "cache_write_tokens": "telemetry",
          "reasoning_tokens": "telemetry"}
COMPLIANT = {"passed", "pass", "compliant", "allowed", "allow", "verified", "success"}
# One event per model call: these count as requests (errors: the ones with is_error set).
REQUEST_TYPES = {"telemetry.request", "telemetry.latency", "telemetry.error"}
COMPLIANCE_TYPES = {"governance.compliance", "compliance.verified", "policy.evaluated"}
VIOLATION_TYPES = {"governance.violation", "violation.detected"}


# Event type -> 1 request, 2 policy violation, 3 compliance check, 4 agent/tool step (0: none).
TYPE_CODE = {**{t: 1 for t in REQUEST_TYPES}, **{t: 2 for t in VIOLATION_TYPES}, **{t: 3 for t in COMPLIANCE_TYPES},
             "telemetry.agent": 4}


def _floats(column: list) -> np.ndarray:
    # None (SQL NULL) becomes NaN, which the aggregator skips.
    return np.array(column, dtype=np.float64)


def extract(columns: dict[str, list]) -> list[MetricValues]:
    """Per-metric value arrays (NaN = event does not contribute) for one batch of events.

    `columns` are event columns by name (schemas.rows.COLUMN_NAMES). The cost record repeats
    its request's token counts; only the telemetry event's are summed, so none count twice.

    >>> columns = {name: [None, None, None] for name in DIRECT}
    >>> columns.update(event_type=["telemetry.request", "cost.tokens", "governance.compliance"],
    ...                source=["telemetry", "cost", "governance"], is_error=[1, 0, 0],
    ...                outcome=["error", "", "passed"], latency_ms=[812.5, None, None],
    ...                input_tokens=[640, 640, None], cost_usd=[0.0041, 0.0042, None], billed=[0, 1, 0])
    >>> metrics = {m.name: m.values.tolist() for m in extract(columns)}
    >>> metrics["latency_ms"], metrics["input_tokens"], metrics["cost_usd"]
    ([812.5, nan, nan], [640.0, nan, nan], [nan, 0.0042, nan])
    >>> metrics["requests"], metrics["errors"], metrics["compliance_checks"]
    ([1.0, nan, nan], [1.0, nan, nan], [nan, nan, 1.0])
    """
    code_of = TYPE_CODE.get
    code = np.array([code_of(t, 0) for t in columns["event_type"]], dtype=np.int8)
    source = np.array(columns["source"], dtype=object)
    out = [MetricValues(name, np.where(source == src, _floats(columns[name]), np.nan)) for name, src in DIRECT.items()]
    billed = np.array(columns["billed"], dtype=bool)
    out.append(MetricValues("cost_usd", np.where(billed, _floats(columns["cost_usd"]), np.nan)))
    request = code == 1
    out.append(MetricValues("requests", np.where(request, 1.0, np.nan)))
    failed = np.array(columns["is_error"], dtype=np.float64)
    out.append(MetricValues("errors", np.where(request, failed, np.nan)))
    out.append(MetricValues("agent_steps", np.where(code == 4, failed, np.nan)))
    out.append(MetricValues("security_findings", np.where(source == "security", 1.0, np.nan)))
    out.append(MetricValues("policy_violations", np.where(code == 2, 1.0, np.nan)))
    checks = np.full(len(code), np.nan)
    outcome = columns["outcome"]
    for i in np.flatnonzero(code == 3).tolist():
        checks[i] = 1.0 if outcome[i].lower() in COMPLIANT else 0.0
    out.append(MetricValues("compliance_checks", checks))
    return out
