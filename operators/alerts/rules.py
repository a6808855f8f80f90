"""Rule evaluation: what each kind of rule observes, handed to the alert book.

Threshold rules are judged per whole 1-minute window (all shards' parts merged: counts and sums
add, histograms merge, so a p95 is the p95 of the minute, never an average of p95s). Budget
rules are judged at the same minute ticks from the spend so far in the budget's period. Anomaly
and incident rules are judged per finding as detection emits it.
"""
from __future__ import annotations

import math
import operator

from config.alerts import AlertSettings, AnomalyRule, Budget, BudgetRule, IncidentRule, ThresholdRule
from operators.alerts.book import AlertBook, Observation, RuleSpec
from operators.alerts.periods import period_bounds, period_label
from operators.windows import sketch
from schemas.alerts import AlertRecord, BudgetStatus
from schemas.incidents import Anomaly, Incident
from schemas.metrics import WindowMetric
from schemas.vocabulary import severity_rank

MINUTE_MS = 60_000
OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
QUANTILES = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}


class Agg:
    """One minute of one group of one metric: windows of several series or shards merged."""

    __slots__ = ("count", "sum", "min", "max", "hist")

    def __init__(self) -> None:
        self.count, self.sum, self.min, self.max = 0, 0.0, math.inf, -math.inf
        self.hist: dict[int, int] = {}

    def add(self, count: int, total: float, lo: float, hi: float, hist: dict[int, int] | None = None) -> None:
        self.count += count
        self.sum += total
        self.min, self.max = min(self.min, lo), max(self.max, hi)
        if hist:
            sketch.merge_into(self.hist, hist)

    def add_window(self, w: WindowMetric) -> None:
        self.add(w.count, w.sum, w.min, w.max, w.hist)

    def stat(self, name: str) -> float | None:
        """The rule's statistic; None when the minute has nothing to say (no events)."""
        if name in ("count", "sum"):
            return float(self.count if name == "count" else self.sum)
        if not self.count:
            return None
        if name in QUANTILES:
            return sketch.quantile(self.hist, QUANTILES[name]) if self.hist else None
        return {"mean": self.sum / self.count, "min": self.min, "max": self.max}[name]

    def __getstate__(self) -> tuple:
        return (self.count, self.sum, self.min, self.max, self.hist)

    def __setstate__(self, state: tuple) -> None:
        self.count, self.sum, self.min, self.max, self.hist = state


def threshold_value(rule: ThresholdRule, num: Agg | None, den: Agg | None) -> float | None:
    """The rule's value for one group and minute, or None (no data: the condition does not hold).

    >>> rule = ThresholdRule(name="errors", metric="errors", stat="sum", denominator="requests", threshold=0.05)
    >>> requests, errors = Agg(), Agg()
    >>> requests.add(200, 200.0, 1.0, 1.0); errors.add(200, 14.0, 0.0, 1.0)
    >>> threshold_value(rule, errors, requests)
    0.07
    >>> threshold_value(rule, None, requests), threshold_value(rule, errors, None)
    (0.0, None)
    """
    counted = den if rule.denominator else num
    if counted is None or counted.count < rule.min_count:
        return None
    top = num.stat(rule.stat) if num is not None else (0.0 if rule.stat in ("count", "sum") else None)
    if top is None or not rule.denominator:
        return top
    bottom = den.stat(rule.denominator_stat) if den is not None else None
    return top / bottom if bottom else None


def _fmt(labels: dict[str, str]) -> str:
    shown = [f"{k}={v}" for k, v in labels.items() if v and k != "metric"]
    return f" ({', '.join(shown)})" if shown else ""


class Alerting:
    """The configured budgets and rules, compiled once; stateless (the state is the AlertBook and
    the alerting step's), so a restart with a changed config applies the new rules."""

    def __init__(self, budgets: list[Budget], settings: AlertSettings) -> None:
        self.budgets = {b.name: b for b in budgets}
        self.settings = settings
        self.threshold = [r for r in settings.rules if isinstance(r, ThresholdRule)]
        self.anomaly = [r for r in settings.rules if isinstance(r, AnomalyRule)]
        self.incident = [r for r in settings.rules if isinstance(r, IncidentRule)]
        self.budget_rules = [r for r in settings.rules if isinstance(r, BudgetRule)]
        self.rule_names = {r.name for r in settings.rules}
        self.channels = settings.channels
        # metric -> [(rule, slot)]: slot 0 numerator, 1 denominator.
        self.watching: dict[str, list[tuple[ThresholdRule, int]]] = {}
        for r in self.threshold:
            self.watching.setdefault(r.metric, []).append((r, 0))
            if r.denominator:
                self.watching.setdefault(r.denominator, []).append((r, 1))

    def spec(self, rule, kind: str, for_s: int = 0) -> RuleSpec:
        renotify = self.settings.renotify_s if rule.renotify_s is None else rule.renotify_s
        return RuleSpec(rule.name, kind, for_ms=for_s * 1000, renotify_ms=renotify * 1000,
                        contiguous=kind == "threshold")

    # -- threshold rules ----------------------------------------------------------------------
    def groups(self, metric: str, labels: dict[str, str]):
        """(rule name, group, slot) for every threshold rule a sample of `metric` with `labels` feeds."""
        for rule, slot in self.watching.get(metric, ()):
            if all(labels.get(k) == v for k, v in rule.match.items()):
                yield rule.name, tuple(labels.get(k, "") for k in rule.group_by), slot

    def tick_thresholds(self, book: AlertBook, minute_ms: int, groups: dict[tuple[str, tuple], list]) -> list[AlertRecord]:
        out: list[AlertRecord] = []
        end = minute_ms + MINUTE_MS
        for rule in self.threshold:
            spec = self.spec(rule, "threshold", rule.for_s)
            holding = set()
            for (name, group), (num, den) in groups.items():
                if name != rule.name:
                    continue
                value = threshold_value(rule, num, den)
                if value is None or not OPS[rule.op](value, rule.threshold):
                    continue
                labels = {"metric": rule.metric + (f"/{rule.denominator}" if rule.denominator else ""),
                          **dict(zip(rule.group_by, group))}
                what = f"{rule.stat} of {labels['metric']}"
                out += book.observe(spec, Observation(
                    ident=group, labels=labels, value=value, threshold=rule.threshold, start_ms=minute_ms, end_ms=end,
                    summary=f"{what} is {value:.4g} ({rule.op} {rule.threshold:g}){_fmt(labels)}",
                    severity=rule.severity or "medium", expires_ms=end + MINUTE_MS))
                holding.add(group)
            for ident in book.idents(rule.name):
                if ident not in holding:
                    out += book.clear(rule.name, ident, end)
        return out

    # -- budgets ------------------------------------------------------------------------------
    def tick_budgets(self, book: AlertBook, minute_ms: int, totals: dict[tuple[str, int], list],
                     status: list[BudgetStatus]) -> list[AlertRecord]:
        """Budget standing as of the end of `minute_ms`; `totals`: (budget, period start) -> [period end, USD]."""
        out: list[AlertRecord] = []
        end = minute_ms + MINUTE_MS
        standing = {}
        for b in self.budgets.values():
            start, stop = period_bounds(minute_ms, b.period, b.timezone)
            spend = totals.get((b.name, start), [stop, 0.0])[1]
            length = stop - start
            forecast = spend / max(end - start, MINUTE_MS) * length
            standing[b.name] = (start, stop, spend, forecast, (end - start) / length)
            if spend > 0:
                status.append(BudgetStatus(budget=b.name, scope=b.scope, period=b.period, period_start_ms=start,
                                           period_end_ms=stop, amount_usd=b.amount_usd, spend=spend, forecast=forecast,
                                           pct_used=100.0 * spend / b.amount_usd, updated_at_ms=end))
        for rule in self.budget_rules:
            spec = self.spec(rule, "budget")
            holding = set()
            for name in rule.budgets or list(self.budgets):
                b = self.budgets[name]
                start, stop, spend, forecast, elapsed = standing[name]
                for fraction in b.thresholds:
                    limit = fraction * b.amount_usd
                    if rule.signal == "spend":
                        value, held = spend, spend >= limit
                    else:
                        value, held = forecast, elapsed >= b.forecast_from and forecast >= limit
                    if not held:
                        continue
                    period = period_label(start, b.timezone)
                    ident = (name, start, fraction)
                    what = "spent" if rule.signal == "spend" else "forecast to spend"
                    out += book.observe(spec, Observation(
                        ident=ident, labels={"budget": name, "period": period, "threshold": f"{fraction * 100:g}%"},
                        value=value, threshold=limit, start_ms=minute_ms, end_ms=end,
                        summary=(f"budget {name} ({b.scope}, {b.period} of {period}) {what} ${value:,.2f} = "
                                 f"{100 * value / b.amount_usd:.0f}% of ${b.amount_usd:,.2f} (threshold {fraction * 100:g}%)"),
                        severity=rule.severity or "medium", expires_ms=stop))
                    holding.add(ident)
            for ident in book.idents(rule.name):
                if ident not in holding:
                    out += book.clear(rule.name, ident, end)
        return out

    # -- findings -----------------------------------------------------------------------------
    def findings(self, book: AlertBook, anomalies: list[Anomaly], incidents: list[Incident]) -> list[AlertRecord]:
        out: list[AlertRecord] = []
        for a in sorted(anomalies, key=lambda a: a.window_start_ms) if self.anomaly else ():
            for rule in self.anomaly:
                if _anomaly_matches(rule, a):
                    out += book.observe(self.spec(rule, "anomaly"), self._anomaly_observation(rule, a))
        for i in incidents if self.incident else ():
            for rule in self.incident:
                if i.status != "open":
                    out += book.clear(rule.name, (i.id,), max(i.end_ms, i.start_ms))
                elif (not rule.patterns or i.pattern in rule.patterns) and i.confidence >= rule.min_confidence \
                        and severity_rank(i.severity) >= severity_rank(rule.min_severity):
                    out += book.observe(self.spec(rule, "incident"), self._incident_observation(rule, i))
        return out

    def _resolve_after_ms(self, rule: AnomalyRule | IncidentRule) -> int:
        return 1000 * (self.settings.resolve_after_s if rule.resolve_after_s is None else rule.resolve_after_s)

    def _anomaly_observation(self, rule: AnomalyRule, a: Anomaly) -> Observation:
        end = a.window_start_ms + (a.window_ms or MINUTE_MS)
        labels = {"metric": a.metric, "model": a.model, "endpoint": a.endpoint, "team": a.team}
        return Observation(
            ident=(a.metric, a.model, a.endpoint, a.team), labels=labels, value=a.score, threshold=rule.min_score,
            start_ms=a.window_start_ms, end_ms=end, expires_ms=end + self._resolve_after_ms(rule),
            summary=(f"{a.anomaly_type.replace('_', ' ')} in {a.metric}{_fmt(labels)}: {a.observed:.4g} against "
                     f"{a.expected:.4g} expected (score {a.score:.2f})"),
            severity=rule.severity or (a.severity if severity_rank(a.severity) else "low"), anomaly_ids=[a.id])

    def _incident_observation(self, rule: IncidentRule, i: Incident) -> Observation:
        end = max(i.end_ms, i.start_ms)
        return Observation(
            ident=(i.id,), labels={"incident": i.id, "pattern": i.pattern}, value=i.confidence,
            threshold=rule.min_confidence, start_ms=i.start_ms or i.opened_ms, end_ms=end,
            expires_ms=end + self._resolve_after_ms(rule),
            summary=(f"incident {i.pattern.replace('_', ' ')} ({i.severity}, confidence {i.confidence:.2f}) on "
                     f"{', '.join(i.assets[:5]) or 'unknown assets'}, {len(i.members)} signals"),
            severity=rule.severity or (i.severity if severity_rank(i.severity) else "low"),
            anomaly_ids=[m.signal_id for m in i.members if m.source == "anomaly"], incident_ids=[i.id])


def _anomaly_matches(rule: AnomalyRule, a: Anomaly) -> bool:
    return ((not rule.types or a.anomaly_type in rule.types) and (not rule.metrics or a.metric in rule.metrics)
            and a.score >= rule.min_score and severity_rank(a.severity) >= severity_rank(rule.min_severity)
            and all(getattr(a, k) == v for k, v in rule.match.items()))
