"""Which windowed metrics an event contributes to, computed column-wise for a whole batch.

Series are split by (model, endpoint, team). Ratios users want (error rate, cost per request,
cost per 1k tokens, throughput) are not stored: they are derived from these sums and counts at
query time (views `composite_<window>`), which keeps them exact when windows roll up.
"""
from __future__ import annotations

import numpy as np

from operators.windowing import MetricValues

DIRECT = ("latency_ms", "ttft_ms", "input_tokens", "output_tokens", "cached_tokens", "total_tokens", "cost_usd")
COMPLIANT = {"passed", "pass", "compliant", "allowed", "allow", "verified", "success"}
COMPLIANCE_TYPES = ("compliance", "policy_evaluated", "policy.evaluated")
VIOLATION_MARK = "violation"
METRIC_NAMES = (*DIRECT, "requests", "errors", "security_findings", "policy_violations", "compliance_checks")


def _floats(column: list) -> np.ndarray:
    # None (SQL NULL) becomes NaN, which the aggregator skips.
    return np.array(column, dtype=np.float64)


def extract(columns: dict[str, list]) -> list[MetricValues]:
    """Per-metric value arrays (NaN = event does not contribute) for one batch of events."""
    source = np.array(columns["source"], dtype=object)
    event_type = columns["event_type"]
    n = len(source)
    out = [MetricValues(name, _floats(columns[name])) for name in DIRECT]
    is_error = np.array(columns["is_error"], dtype=np.float64)
    telemetry = source == "telemetry"
    request = telemetry & (~np.isnan(out[0].values) | ~np.isnan(out[5].values) | ~np.isnan(out[2].values) | (is_error > 0))
    out.append(MetricValues("requests", np.where(request, 1.0, np.nan)))
    out.append(MetricValues("errors", np.where(request, is_error, np.nan)))
    out.append(MetricValues("security_findings", np.where(source == "security", 1.0, np.nan)))
    et = np.array([t.lower() for t in event_type], dtype=object) if n else np.array([], dtype=object)
    violation = np.fromiter((VIOLATION_MARK in t for t in et), dtype=bool, count=n)
    governance = (source == "governance") | (source == "policy")
    out.append(MetricValues("policy_violations", np.where(violation & governance, 1.0, np.nan)))
    check = np.fromiter((any(m in t for m in COMPLIANCE_TYPES) for t in et), dtype=bool, count=n)
    passed = np.fromiter((o.lower() in COMPLIANT for o in columns["outcome"]), dtype=bool, count=n)
    out.append(MetricValues("compliance_checks", np.where(check, passed.astype(np.float64), np.nan)))
    return out
