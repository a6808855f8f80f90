"""The flow's alerting step: one state for all shards, fed each shard output's `AlertFeed` and
what detection found in it.

Time is event time. A minute is judged once it is whole: every shard still holding open windows
has closed past it (`ShardOutput.closed_ms`), so the result does not depend on how shards
interleave. Judging happens per minute with data, never per event. The alert clock (`now`) is
the oldest such horizon (or, when no shard holds windows open, the newest event time seen); it
drives expiry: anomaly and incident alerts that were not seen again, budget periods that ended,
threshold conditions whose series went silent.
"""
from __future__ import annotations

from schemas.items import ALL_CLOSED, AlertFeed, AlertOutput, DetectionOutput
from operators.alerts.book import AlertBook
from operators.alerts.notify import route
from operators.alerts.periods import period_bounds
from operators.alerts.rules import MINUTE_MS, Agg, Alerting

# A shard more than this far (event time) behind the others stops holding alerting back: its
# parts of older minutes are then counted late (`AlertState.late`) instead.
MAX_PENDING_MINUTES = 180
# Budget period totals are kept this long after their period ends (late spend may still come).
KEEP_PERIOD_MS = 86_400_000


class _Minute:
    """Data of one minute waiting to be judged."""

    __slots__ = ("groups", "spend")

    def __init__(self) -> None:
        # (rule, group) -> [numerator, denominator]
        self.groups: dict[tuple[str, tuple], list] = {}
        self.spend: dict[str, float] = {}

    def __getstate__(self) -> tuple:
        return (self.groups, self.spend)

    def __setstate__(self, state: tuple) -> None:
        self.groups, self.spend = state


class AlertState:
    """Picklable: lives in Bytewax snapshots, so a restart resumes with the same pending minutes,
    budget totals and alert entries (the config is not part of it: see Alerting).

    A day budget of $10 with $3 spent per minute crosses 80% in minute 3 (judged once minute 3 is
    whole), fires once, and resolves when the clock passes the end of the day.

    >>> from config.alerts import AlertSettings, Budget, BudgetRule, Channel
    >>> budgets = [Budget(name="day", amount_usd=10.0, period="day", thresholds=[0.8])]
    >>> alerting = Alerting(budgets, AlertSettings(rules=[BudgetRule(name="spend")],
    ...                                            channels=[Channel(name="ops", url_env="OPS_URL")]))
    >>> state = AlertState()
    >>> def feed(minute, usd):
    ...     t = minute * 60_000
    ...     return AlertFeed("s0", watermark_ms=t, closed_ms=t - 60_000, spend=[("day", t, usd)])
    >>> [[(a.event, a.starts_at_ms // 60_000) for a in state.step(feed(m, 3.0), None, alerting).alerts]
    ...  for m in (1, 2, 3, 4, 5)]
    [[], [], [], [], [('firing', 3)]]
    >>> out = state.step(feed(1440 + 5, 1.0), None, alerting)
    >>> [(a.event, a.ends_at_ms // 60_000) for a in out.alerts], [n.event for n in out.notifications]
    ([('resolved', 1440)], ['resolved'])
    >>> [(b.period_start_ms, b.pct_used) for b in out.budgets]  # minutes 4 and 5 of the first day
    [(0, 120.0), (0, 150.0)]
    """

    def __init__(self) -> None:
        self.book = AlertBook()
        self.pending: dict[int, _Minute] = {}
        # (budget, period start) -> [period end, USD]
        self.totals: dict[tuple[str, int], list] = {}
        self.closed: dict[str, int] = {}
        self.done: set[str] = set()
        self.watermark_ms = 0
        self.now_ms = 0
        # Minutes starting before this have been judged; data for them is late.
        self.judged_ms = 0
        self.late = 0

    def step(self, feed: AlertFeed, found: DetectionOutput | None, alerting: Alerting) -> AlertOutput:
        self._progress(feed)
        self._take(feed, alerting)
        complete = self._complete()
        alerts, budgets = [], []
        for minute in sorted(m for m in self.pending if m + MINUTE_MS <= complete):
            data = self.pending.pop(minute)
            for name, usd in data.spend.items():
                self._add_spend(alerting, name, minute, usd)
            alerts += alerting.tick_thresholds(self.book, minute, data.groups)
            if alerting.budgets:
                alerts += alerting.tick_budgets(self.book, minute, self.totals, budgets)
            self.judged_ms = max(self.judged_ms, minute + MINUTE_MS)
        if found is not None:
            alerts += alerting.findings(self.book, found.anomalies, found.incidents)
        self.now_ms = max(self.now_ms, min(complete, self.watermark_ms))
        alerts += self.book.expire(self.now_ms)
        alerts += self.book.drop_rules(alerting.rule_names, self.now_ms)
        self._forget_periods()
        return AlertOutput(alerts=alerts, budgets=budgets, notifications=route(alerts, alerting.channels))

    def _progress(self, feed: AlertFeed) -> None:
        if feed.final:
            self.done.add(feed.shard)
        else:
            self.done.discard(feed.shard)  # a resumed input goes on after its end
        self.closed[feed.shard] = feed.closed_ms
        self.watermark_ms = max(self.watermark_ms, feed.watermark_ms)

    def _complete(self) -> int:
        """Minutes ending at or before this are whole."""
        holding = [c for s, c in self.closed.items() if s not in self.done and c < ALL_CLOSED]
        complete = min(holding) if holding else ALL_CLOSED
        if len(self.pending) > MAX_PENDING_MINUTES:
            complete = max(complete, sorted(self.pending)[-MAX_PENDING_MINUTES] + MINUTE_MS)
        return complete

    def _minute(self, minute_ms: int) -> _Minute | None:
        if minute_ms < self.judged_ms:
            self.late += 1
            return None
        data = self.pending.get(minute_ms)
        if data is None:
            data = self.pending[minute_ms] = _Minute()
        return data

    def _take(self, feed: AlertFeed, alerting: Alerting) -> None:
        for w in feed.windows:
            labels = {"model": w.series.model, "endpoint": w.series.endpoint, "team": w.series.team}
            for name, group, slot in alerting.groups(w.series.metric, labels):
                data = self._minute(w.window_start_ms)
                if data is not None:
                    _agg(data, name, group, slot).add_window(w)
        if feed.quality:
            minute = feed.quality_minute_ms or max(self.judged_ms, self.now_ms - self.now_ms % MINUTE_MS)
            for source, inputs, dead in feed.quality:
                for metric, n in (("inputs", inputs), ("dead_letters", dead)):
                    for name, group, slot in alerting.groups(metric, {"source": source}):
                        data = self._minute(minute)
                        if data is not None and n:
                            _agg(data, name, group, slot).add(n, float(n), 1.0, 1.0)
        for name, minute, usd in feed.spend:
            if name not in alerting.budgets:
                continue
            if minute < self.judged_ms:  # money is never dropped: straight into its period
                self._add_spend(alerting, name, minute, usd)
                continue
            data = self._minute(minute)
            if data is not None:
                data.spend[name] = data.spend.get(name, 0.0) + usd

    def _add_spend(self, alerting: Alerting, name: str, minute_ms: int, usd: float) -> None:
        b = alerting.budgets.get(name)
        if b is None:
            return
        start, stop = period_bounds(minute_ms, b.period, b.timezone)
        total = self.totals.setdefault((name, start), [stop, 0.0])
        total[1] += usd

    def _forget_periods(self) -> None:
        for key in [k for k, (stop, _) in self.totals.items() if stop + KEEP_PERIOD_MS < self.now_ms]:
            del self.totals[key]


def _agg(data: _Minute, rule: str, group: tuple, slot: int) -> Agg:
    pair = data.groups.setdefault((rule, group), [None, None])
    if pair[slot] is None:
        pair[slot] = Agg()
    return pair[slot]
