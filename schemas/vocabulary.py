"""The shared words: sources, severities, anomaly types. Every module that names one imports it
from here, so adding a source or a severity is one edit.
"""
from __future__ import annotations

import typing
from typing import Literal

# Source modules of the LLM platform; each has its own input topic.
SourceModule = Literal["telemetry", "security", "cost", "governance", "registry", "policy"]
SOURCES: tuple[str, ...] = typing.get_args(SourceModule)
# Correlation signals come from the sources and from the anomaly detectors.
SignalSource = Literal["telemetry", "security", "cost", "governance", "registry", "policy", "anomaly"]

# One severity scale for every event family, ordered. Log levels map onto it by rank
# (warning -> medium, error -> high, fatal -> critical); see SEVERITY_ALIASES.
Severity = Literal["debug", "info", "low", "medium", "high", "critical"]
SEVERITIES: tuple[str, ...] = typing.get_args(Severity)
# For consumers that compare severities (alert thresholds): higher rank = more severe.
SEVERITY_RANK: dict[str, int] = {s: i for i, s in enumerate(SEVERITIES)}
SEVERITY_ALIASES: dict[str, str] = {
    **{s: s for s in SEVERITIES},
    "trace": "debug", "verbose": "debug", "dbg": "debug",
    "information": "info", "informational": "info", "notice": "info", "none": "info", "ok": "info",
    "minor": "low",
    "warn": "medium", "warning": "medium", "moderate": "medium", "med": "medium",
    "error": "high", "err": "high", "major": "high", "severe": "high", "important": "high",
    "crit": "critical", "fatal": "critical", "emergency": "critical", "emerg": "critical",
    "alert": "critical", "panic": "critical", "blocker": "critical",
}

# Findings (anomalies, incidents, correlation signals) start at info: debug is for logs only.
FindingSeverity = Literal["info", "low", "medium", "high", "critical"]
FINDING_SEVERITIES: tuple[str, ...] = typing.get_args(FindingSeverity)
# Severities worth telling someone about (alert thresholds, noteworthy signals).
AlertSeverity = Literal["low", "medium", "high", "critical"]
ALERT_SEVERITIES: tuple[str, ...] = typing.get_args(AlertSeverity)

AnomalyType = Literal["spike", "drop", "level_shift", "frequency_change", "distribution_shift"]
ANOMALY_TYPES: tuple[str, ...] = typing.get_args(AnomalyType)


def severity_rank(severity: str) -> int:
    """0 (info or unknown) .. 4 (critical) on the findings scale; case-insensitive.

    >>> severity_rank("HIGH") > severity_rank("medium")
    True
    >>> severity_rank("debug"), severity_rank("nonsense")
    (0, 0)
    """
    try:
        return FINDING_SEVERITIES.index(severity.lower())
    except ValueError:
        return 0
