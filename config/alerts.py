"""Budgets (`[[budgets]]`), alert rules (`[[alerts.rules]]`) and notification channels
(`[[alerts.channels]]`): the typed settings and the checks that span them.

Rules are a tagged union on `kind`, so each kind accepts only its own keys (a threshold rule
with `min_score` is refused, not silently ignored). Webhook URLs carry tokens: a channel names
the environment variable that holds its URL (`url_env`) and a literal `url` is refused.
"""
from __future__ import annotations

import re
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from msgspec import Meta

from schemas.incidents import Pattern
from schemas.vocabulary import AlertSeverity, AnomalyType, FindingSeverity

PositiveFloat = Annotated[float, Meta(gt=0)]
PositiveInt = Annotated[int, Meta(gt=0)]
NonNegativeInt = Annotated[int, Meta(ge=0)]
Fraction = Annotated[float, Meta(ge=0, le=1)]

# Windowed metrics a threshold rule can watch: the flow's 1-minute series (model, endpoint, team;
# operators/windows/extract.py) and the input-quality counts per source (`dead_letters` rejected,
# `inputs` = events + dead letters + skipped), which alerting derives per batch.
WINDOW_METRICS = ("latency_ms", "ttft_ms", "input_tokens", "output_tokens", "cached_tokens", "cache_write_tokens",
                  "reasoning_tokens", "total_tokens", "requests", "errors", "agent_steps", "cost_usd",
                  "security_findings", "policy_violations", "compliance_checks")
QUALITY_METRICS = ("dead_letters", "inputs")
WINDOW_LABELS = ("model", "endpoint", "team")
QUALITY_LABELS = ("source",)
Stat = Literal["count", "sum", "mean", "min", "max", "p50", "p90", "p95", "p99"]
Op = Literal[">", ">=", "<", "<="]
Period = Literal["day", "week", "month"]
# Scope keys with a column of their own; any other key is looked up in the events' tags.
SCOPE_COLUMNS = {"team": "team", "model": "model", "endpoint": "endpoint", "asset": "asset_id"}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Budget(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A spend limit per calendar period, from the billed cost of calls (`events.billed`)."""

    name: str
    amount_usd: PositiveFloat
    # "global", or KEY=VALUE: team, model (canonical name), endpoint, asset (asset_id), or any tag key.
    scope: str = "global"
    period: Period = "month"
    # IANA zone the period boundaries are in (midnight, Monday, the 1st of the month).
    timezone: str = "UTC"
    # Fractions of amount_usd that budget rules alert on.
    thresholds: list[Annotated[float, Meta(gt=0)]] = msgspec.field(default_factory=lambda: [0.8, 1.0])
    # Forecast rules wait until this fraction of the period has passed (earlier burn rates are noise).
    forecast_from: Fraction = 0.1

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a budget needs a name")
        if self.scope != "global" and not re.fullmatch(r"[^=\s]+=[^=]+", self.scope):
            raise ValueError(f"budget {self.name!r}: scope must be \"global\" or KEY=VALUE (team=search, "
                             f"model=gpt-4o, asset=..., or a tag key)")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"budget {self.name!r}: unknown time zone {self.timezone!r}") from None
        if not self.thresholds or sorted(set(self.thresholds)) != self.thresholds:
            raise ValueError(f"budget {self.name!r}: thresholds must be increasing and unique, e.g. [0.8, 1.0]")

    @property
    def scope_key(self) -> tuple[str, str] | None:
        """(key, value) of a scoped budget, None for a global one."""
        if self.scope == "global":
            return None
        key, value = self.scope.split("=", 1)
        return key.strip(), value.strip()


class Rule(msgspec.Struct, tag_field="kind", forbid_unknown_fields=True, frozen=True):
    """What every rule has. `severity` unset: anomaly and incident alerts take their finding's
    severity, threshold and budget alerts are `medium`. `renotify_s` unset: `[alerts] renotify_s`."""

    name: str
    severity: AlertSeverity | None = None
    renotify_s: NonNegativeInt | None = None


class ThresholdRule(Rule, tag="threshold", kw_only=True):
    """`stat` of `metric` per 1-minute window (over `denominator`'s `denominator_stat` when set)
    compared with `threshold`, in every minute for at least `for_s` seconds."""

    metric: str
    threshold: float
    stat: Stat = "mean"
    op: Op = ">"
    denominator: str = ""
    denominator_stat: Stat = "sum"
    for_s: NonNegativeInt = 0
    # Labels the alert is split by; windows of one group are merged (histograms add up).
    by: list[str] | None = None
    # Only series whose labels equal these.
    match: dict[str, str] = {}
    # Windows with fewer events than this are "no data" (the condition does not hold).
    min_count: PositiveInt = 1

    def __post_init__(self) -> None:
        family = QUALITY_METRICS if self.metric in QUALITY_METRICS else WINDOW_METRICS
        labels = QUALITY_LABELS if family is QUALITY_METRICS else WINDOW_LABELS
        for m in (self.metric, self.denominator or self.metric):
            if m not in family:
                raise ValueError(f"rule {self.name!r}: unknown metric {m!r} (known: {', '.join(family)}; "
                                 f"a ratio's two metrics are of one family)")
        bad = [k for k in [*self.group_by, *self.match] if k not in labels]
        if bad:
            raise ValueError(f"rule {self.name!r}: {self.metric} has no label {bad[0]!r} (labels: {', '.join(labels)})")

    @property
    def group_by(self) -> list[str]:
        if self.by is not None:
            return self.by
        return list(QUALITY_LABELS if self.metric in QUALITY_METRICS else WINDOW_LABELS)


class AnomalyRule(Rule, tag="anomaly"):
    """Anomalies of these types on these metrics (empty: any), at or above a score and severity;
    one alert per series, cleared `resolve_after_s` after its last matching anomaly."""

    types: list[AnomalyType] = []
    metrics: list[str] = []
    min_score: Fraction = 0.0
    min_severity: FindingSeverity = "info"
    match: dict[str, str] = {}
    resolve_after_s: PositiveInt | None = None

    def __post_init__(self) -> None:
        bad = [k for k in self.match if k not in WINDOW_LABELS]
        if bad:
            raise ValueError(f"rule {self.name!r}: anomalies have no label {bad[0]!r} (labels: {', '.join(WINDOW_LABELS)})")


class IncidentRule(Rule, tag="incident"):
    """Incidents of these patterns (empty: any) at or above a severity and confidence; one alert
    per incident, resolved when it closes (or `resolve_after_s` after its last update)."""

    patterns: list[Pattern] = []
    min_severity: FindingSeverity = "info"
    min_confidence: Fraction = 0.0
    resolve_after_s: PositiveInt | None = None


class BudgetRule(Rule, tag="budget"):
    """Each threshold of these budgets (empty: all) crossed by the spend (`signal = "spend"`) or
    by the period-end forecast (`"forecast"`); resolved when the period rolls over."""

    budgets: list[str] = []
    signal: Literal["spend", "forecast"] = "spend"


AnyRule = ThresholdRule | AnomalyRule | IncidentRule | BudgetRule


class Channel(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A webhook that alert notifications are POSTed to, with the alerts routed to it."""

    name: str
    # Name of the environment variable holding the URL (URLs carry tokens: never in the file).
    url_env: str
    # json: the alert as a JSON object; slack: an incoming-webhook message {"text", "blocks"}.
    format: Literal["json", "slack"] = "json"
    # Routing: only these rules (empty: all), at or above this severity, with these labels.
    rules: list[str] = []
    min_severity: AlertSeverity = "low"
    match: dict[str, str] = {}
    # Also tell when an alert resolves.
    send_resolved: bool = True
    timeout_s: PositiveFloat = 5.0
    # Attempts per notification (exponential backoff from backoff_s up to backoff_max_s between
    # them); after the last one it is recorded as failed in `notifications`.
    max_attempts: PositiveInt = 5
    backoff_s: PositiveFloat = 1.0
    backoff_max_s: PositiveFloat = 30.0

    def __post_init__(self) -> None:
        # The message never echoes the value: it may be a URL with a token in it.
        if not _ENV_NAME.match(self.url_env):
            raise ValueError(f"channel {self.name!r}: url_env is the NAME of an environment variable holding the "
                             "webhook URL (e.g. HUB_SLACK_WEBHOOK_URL), not the URL itself")


class AlertSettings(msgspec.Struct, forbid_unknown_fields=True):
    """The `[alerts]` section."""

    # A firing alert is sent again after this much event time (0: never); per rule `renotify_s`.
    renotify_s: NonNegativeInt = 14_400
    # Anomaly and incident alerts resolve after this long (event time) without a new match.
    resolve_after_s: PositiveInt = 900
    rules: list[AnyRule] = []
    channels: list[Channel] = []


def check_alerting(budgets: list[Budget], alerts: AlertSettings) -> str | None:
    """What the types alone cannot see (names that must be unique or must exist); the first
    problem as one line, or None."""
    for what, names in (("budget", [b.name for b in budgets]), ("rule", [r.name for r in alerts.rules]),
                        ("channel", [c.name for c in alerts.channels])):
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            return f"{what} name {dup!r} is used twice"
    budget_names = {b.name for b in budgets}
    rule_names = {r.name for r in alerts.rules}
    for rule in alerts.rules:
        if isinstance(rule, BudgetRule):
            missing = [b for b in rule.budgets if b not in budget_names]
            if missing:
                return f"alerts.rules {rule.name!r}: no budget named {missing[0]!r}"
    for channel in alerts.channels:
        missing = [r for r in channel.rules if r not in rule_names]
        if missing:
            return f"alerts.channels {channel.name!r}: no rule named {missing[0]!r}"
    return None


def literal_urls(data: dict) -> list[str]:
    """Config paths of channels that carry a literal `url` (refused: tokens belong in the environment)."""
    channels = (data.get("alerts") or {}).get("channels") or []
    return [f"alerts.channels[{i}].url" for i, c in enumerate(channels) if isinstance(c, dict) and "url" in c]
