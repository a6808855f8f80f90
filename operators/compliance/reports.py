"""Compliance reports: per hour and per UTC day, for everything (`all`), per asset and per team:
evaluations, compliant, violations, compliance rate, violations by type and severity, and the
trend against the window before.

A report is recomputed whole from the window's counts whenever its window is whole and again
whenever a late event (or one for the window before it) arrives, so a late event updates the
affected rows; `version` = events counted x 2^32 + events counted in the window before, so the
row that counted more replaces the other in `compliance_reports` (ReplacingMergeTree), whatever
the order a replay writes rows in. Counting is per batch with Counters over the batch's facts
(only policy and governance events), never per event in the flow's hot path.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from operators.feeds.book import WindowBook
from schemas.assets import AssetInfo
from schemas.feeds import ComplianceReport
from schemas.incidents import stable_id
from schemas.items import ComplianceFacts

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
SPANS = {"hour": HOUR_MS, "day": DAY_MS}
COMPLIANT, NON_COMPLIANT, VIOLATION = 1, 0, 2
_LOW = 2**32 - 1


class _Counts:
    __slots__ = ("evaluations", "compliant", "violations", "by_type", "by_severity")

    def __init__(self) -> None:
        self.evaluations = self.compliant = self.violations = 0
        self.by_type: dict[str, int] = {}
        self.by_severity: dict[str, int] = {}

    @property
    def events(self) -> int:
        return self.evaluations + self.violations

    def __getstate__(self) -> tuple:
        return (self.evaluations, self.compliant, self.violations, self.by_type, self.by_severity)

    def __setstate__(self, state: tuple) -> None:
        self.evaluations, self.compliant, self.violations, self.by_type, self.by_severity = state


_NONE = _Counts()


class ComplianceBook(WindowBook):
    """Picklable (Bytewax snapshots). Keys: (window start, granularity, scope kind, scope).

    Two evaluations (one denied) and a violation for asset m-1 in hour 0; a late allowed
    evaluation updates the hour, and the next hour's trend with it:

    >>> book = ComplianceBook()
    >>> facts = ComplianceFacts(time_ms=[10, 20, 30], kind=[1, 0, 2], asset=["m-1"] * 3, team=["a"] * 3,
    ...                         violation_type=["", "", "pii"], severity=["info", "info", "high"])
    >>> book.add(facts)
    >>> [(r.granularity, r.scope_kind, r.evaluations, r.compliance_rate, r.violations_by_type)
    ...  for r in book.reports(HOUR_MS) if r.scope_kind != "team"]
    [('hour', 'all', 2, 0.5, {'pii': 1}), ('hour', 'asset', 2, 0.5, {'pii': 1})]
    >>> book.add(ComplianceFacts([HOUR_MS + 5], [1], ["m-1"], ["a"], [""], ["info"]))
    >>> book.add(ComplianceFacts([40], [1], ["m-1"], ["a"], [""], ["info"]))
    >>> [(r.window_start_ms, r.compliance_rate, r.prev_compliance_rate, r.version >> 32)
    ...  for r in book.reports(2 * HOUR_MS) if r.scope_kind == "all" and r.granularity == "hour"]
    [(0, 0.6666666666666666, None, 4), (3600000, 1.0, 0.6666666666666666, 1)]
    """

    KEEP_MS = 2 * DAY_MS

    def span(self, key: tuple) -> int:
        return SPANS[key[1]]

    def add(self, facts: ComplianceFacts) -> None:
        times = facts.time_ms
        n = len(times)
        if not n:
            return
        scopes = (("all", [""] * n), ("asset", facts.asset), ("team", facts.team))
        violation = [i for i, k in enumerate(facts.kind) if k == VIOLATION]
        for gran, span in SPANS.items():
            starts = [t - t % span for t in times]
            for kind, values in scopes:
                for (start, scope, k), count in Counter(zip(starts, values, facts.kind)).items():
                    c = self._counts(start, gran, kind, scope)
                    if c is None:
                        continue
                    if k == VIOLATION:
                        c.violations += count
                    else:
                        c.evaluations += count
                        c.compliant += count if k == COMPLIANT else 0
                for column, attr in ((facts.violation_type, "by_type"), (facts.severity, "by_severity")):
                    for (start, scope, label), count in Counter(
                            (starts[i], values[i], column[i] or "unknown") for i in violation).items():
                        c = self._counts(start, gran, kind, scope)
                        if c is not None:
                            into = getattr(c, attr)
                            into[label] = into.get(label, 0) + count

    def _counts(self, start: int, gran: str, kind: str, scope: str) -> _Counts | None:
        if kind != "all" and not scope:
            return None
        key = (start, gran, kind, scope)
        c = self.windows.get(key)
        if c is None:
            if not self.kept(start, key):
                return None
            c = self.windows[key] = _Counts()
        self.touch(key, (start + SPANS[gran], gran, kind, scope))
        return c

    def reports(self, complete_ms: int, asset_of: Callable[[str, int], AssetInfo | None] | None = None
                ) -> list[ComplianceReport]:
        """Reports of the windows that are whole by `complete_ms` and changed since last emitted."""
        return [self._report(key, asset_of) for key in self.ready(complete_ms)]

    def _report(self, key: tuple, asset_of: Callable[[str, int], AssetInfo | None] | None) -> ComplianceReport:
        start, gran, kind, scope = key
        span = SPANS[gran]
        c: _Counts = self.windows[key]  # type: ignore[assignment]
        p: _Counts = self.windows.get((start - span, gran, kind, scope), _NONE)  # type: ignore[assignment]
        rate, prev_rate = _ratio(c.compliant, c.evaluations), _ratio(p.compliant, p.evaluations)
        vrate, prev_vrate = _ratio(c.violations, c.evaluations), _ratio(p.violations, p.evaluations)
        return ComplianceReport(
            id=stable_id("compliance", gran, start, kind, scope), version=(c.events << 32) | min(p.events, _LOW),
            granularity=gran, window_start_ms=start, window_end_ms=start + span, scope_kind=kind, scope=scope,
            evaluations=c.evaluations, compliant=c.compliant, non_compliant=c.evaluations - c.compliant,
            violations=c.violations, compliance_rate=rate, violation_rate=vrate,
            violations_by_type=dict(sorted(c.by_type.items())), violations_by_severity=dict(sorted(c.by_severity.items())),
            prev_evaluations=p.evaluations, prev_violations=p.violations, prev_compliance_rate=prev_rate,
            compliance_rate_change=_diff(rate, prev_rate), violation_rate_change=_diff(vrate, prev_vrate),
            violations_change=c.violations - p.violations,
            asset=asset_of(scope, start + span) if kind == "asset" and asset_of is not None else None)


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def _diff(a: float | None, b: float | None) -> float | None:
    return a - b if a is not None and b is not None else None
