"""The alert state machine: one entry per (rule, labelled condition), pending -> firing -> resolved.

Rules say what they observe (a condition held over [start, end) of event time); the book decides
what that means: a condition that holds for the rule's duration fires once, is deduplicated while
it keeps holding, is sent again after the re-notify interval, and resolves when a rule says it
cleared or when its expiry passes without a new observation. Every transition is one version of
the alert (`AlertRecord`); ids and versions depend only on the observations, never on the wall
clock, so a replay produces the same records.

A p95 condition observed minute by minute with a 3-minute duration: pending at 0 and 1, firing at
the third minute (starting at minute 0), deduplicated while it holds, resolved when it clears.

>>> book = AlertBook()
>>> def minute(m):
...     return Observation(ident=("gpt-4o",), labels={"model": "gpt-4o"}, value=2500.0, threshold=2000.0,
...                        start_ms=m * 60_000, end_ms=(m + 1) * 60_000, summary="p95 2500 > 2000")
>>> spec = RuleSpec("p95", "threshold", for_ms=180_000, renotify_ms=600_000)
>>> [book.observe(spec, minute(m)) for m in (0, 1)]
[[], []]
>>> [(r.event, r.starts_at_ms, r.version) for r in book.observe(spec, minute(2))]
[('firing', 0, 1)]
>>> [book.observe(spec, minute(m)) for m in (3, 4)]
[[], []]
>>> [(r.event, r.version) for r in book.observe(spec, minute(12))]  # a gap: resolved, pending anew
[('resolved', 2)]
>>> [(r.event, r.ends_at_ms) for r in book.clear("p95", ("gpt-4o",), at_ms=14 * 60_000)]  # was only pending
[]
"""
from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from schemas.alerts import AlertRecord, alert_id

# Links kept per alert (the latest ones).
MAX_LINKS = 20


@dataclass(frozen=True)
class RuleSpec:
    """What the book needs to know of a rule."""

    name: str
    kind: str
    for_ms: int = 0
    renotify_ms: int = 0
    # Threshold rules: a condition must hold in every minute; a gap ends it.
    contiguous: bool = True


@dataclass
class Observation:
    """A condition that held over [start_ms, end_ms); `ident` identifies it within its rule."""

    ident: tuple
    labels: dict[str, str]
    value: float
    threshold: float
    start_ms: int
    end_ms: int
    summary: str
    severity: str = "medium"
    # Resolve at this time unless observed again (0: only when a rule clears it).
    expires_ms: int = 0
    anomaly_ids: list[str] = field(default_factory=list)
    incident_ids: list[str] = field(default_factory=list)


class Entry(msgspec.Struct, kw_only=True):
    """A condition being watched: pending until its duration is met, then firing."""

    rule: str
    kind: str
    labels: dict[str, str]
    severity: str
    pending_since: int
    last_seen: int
    expires_ms: int = 0
    firing: bool = False
    id: str = ""
    version: int = 0
    value: float = 0.0
    threshold: float = 0.0
    starts_at: int = 0
    notified_at: int = 0
    summary: str = ""
    anomaly_ids: list[str] = []
    incident_ids: list[str] = []


class AlertBook:
    """Picklable: lives in the alerting step's Bytewax snapshots."""

    def __init__(self) -> None:
        self.entries: dict[tuple[str, tuple], Entry] = {}

    def observe(self, rule: RuleSpec, obs: Observation) -> list[AlertRecord]:
        """The condition held over [obs.start_ms, obs.end_ms): fire, re-notify, or just note it."""
        out: list[AlertRecord] = []
        key = (rule.name, obs.ident)
        e = self.entries.get(key)
        if e is not None and rule.contiguous and obs.start_ms > e.last_seen:
            out += self.clear(rule.name, obs.ident, e.last_seen)
            e = None
        if e is None:
            e = Entry(rule=rule.name, kind=rule.kind, labels=obs.labels, severity=obs.severity,
                      pending_since=obs.start_ms, last_seen=obs.end_ms)
            self.entries[key] = e
        e.pending_since = min(e.pending_since, obs.start_ms) if not e.firing else e.pending_since
        e.last_seen = max(e.last_seen, obs.end_ms)
        e.expires_ms = max(e.expires_ms, obs.expires_ms)
        e.value, e.threshold, e.summary = obs.value, obs.threshold, obs.summary
        e.anomaly_ids = _links(e.anomaly_ids, obs.anomaly_ids)
        e.incident_ids = _links(e.incident_ids, obs.incident_ids)
        if not e.firing:
            if obs.end_ms - e.pending_since >= rule.for_ms:
                e.firing, e.starts_at, e.notified_at = True, e.pending_since, obs.end_ms
                e.id = alert_id(rule.name, e.labels, e.starts_at)
                out.append(self._record(e, "firing", obs.end_ms))
        elif rule.renotify_ms and obs.end_ms - e.notified_at >= rule.renotify_ms:
            e.notified_at = obs.end_ms
            out.append(self._record(e, "renotify", obs.end_ms))
        return out

    def clear(self, rule: str, ident: tuple, at_ms: int) -> list[AlertRecord]:
        """The condition no longer holds (noticed at `at_ms`): a firing alert resolves, a pending one is dropped.

        It ended when it was last seen to hold (threshold rules), else at `at_ms` or its expiry,
        whichever came first."""
        e = self.entries.pop((rule, ident), None)
        if e is None or not e.firing:
            return []
        ends = e.last_seen if e.kind == "threshold" else min(at_ms, e.expires_ms or at_ms)
        return [self._record(e, "resolved", max(at_ms, ends), ends_at=max(ends, e.starts_at))]

    def idents(self, rule: str) -> list[tuple]:
        return [ident for (name, ident) in self.entries if name == rule]

    def expire(self, now_ms: int) -> list[AlertRecord]:
        """Resolve what was not observed again before its expiry."""
        out: list[AlertRecord] = []
        for (rule, ident), e in sorted(self.entries.items(), key=lambda kv: kv[1].expires_ms):
            if 0 < e.expires_ms <= now_ms:
                out += self.clear(rule, ident, e.expires_ms)
        return out

    def drop_rules(self, keep: set[str], now_ms: int) -> list[AlertRecord]:
        """Rules no longer configured (after a restart): their alerts resolve."""
        out: list[AlertRecord] = []
        for rule, ident in [k for k in self.entries if k[0] not in keep]:
            out += self.clear(rule, ident, now_ms)
        return out

    @staticmethod
    def _record(e: Entry, event: str, at_ms: int, ends_at: int | None = None) -> AlertRecord:
        e.version += 1
        resolved = event == "resolved"
        return AlertRecord(id=e.id, version=e.version, rule=e.rule, kind=e.kind,  # type: ignore[arg-type]
                           status="resolved" if resolved else "firing", event=event,  # type: ignore[arg-type]
                           severity=e.severity, labels=e.labels, value=e.value, threshold=e.threshold,
                           starts_at_ms=e.starts_at, ends_at_ms=ends_at, updated_at_ms=at_ms,
                           summary=e.summary,
                           anomaly_ids=list(e.anomaly_ids), incident_ids=list(e.incident_ids))


def _links(old: list[str], new: list[str]) -> list[str]:
    if not new:
        return old
    merged = old + [i for i in new if i not in old]
    return merged[-MAX_LINKS:]
