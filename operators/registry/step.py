"""The flow's registry step: one state for all shards, after detection. It keeps the asset
registry (operators/registry/book.py), enriches each shard's closed windows and what detection
found in them with their assets as of their windows, and builds the compliance reports and the
feed records once their windows are whole (operators/feeds/book.py)."""
from __future__ import annotations

from collections.abc import Callable

import msgspec

from operators.compliance import ComplianceBook
from operators.feeds import Horizon, UsageBook
from operators.registry.book import AssetBook
from schemas.feeds import ViolationReport
from schemas.items import DetectionOutput, GovernanceBatch, RegistryOutput, ShardOutput

MINUTE_MS = 60_000


class RegistrySteps(msgspec.Struct, frozen=True):
    """Config of the step (not part of its snapshotted state): the canonical model name (assets
    are looked up by id and by canonical name) and whether the usage feed is on."""

    canonical: Callable[[str], str] = str
    usage: bool = False


class RegistryState:
    """Picklable: lives in Bytewax snapshots, so a restart resumes with the same registry history,
    pending compliance and usage windows.

    >>> from schemas.assets import RegistryChange
    >>> from schemas.metrics import SeriesKey, WindowMetric
    >>> from schemas.payloads.registry import AssetRegistered, AssetUpdated
    >>> def window(minute):
    ...     return WindowMetric(series=SeriesKey("requests", model="gpt-4o"), window_start_ms=minute * 60_000,
    ...                         window_ms=60_000, count=1, sum=1.0, min=1.0, max=1.0, sumsq=1.0, hist={})
    >>> def registry(i, minute, owner):
    ...     kind = AssetRegistered if i == 1 else AssetUpdated
    ...     return RegistryChange(event_id=f"r{i}", time_ms=minute * 60_000, event_type=kind.__struct_config__.tag,
    ...                           payload=kind(asset_id="m-1", asset_name="gpt-4o", owner=owner))
    >>> state = RegistryState()
    >>> out = state.step(ShardOutput("s", windows=[window(0), window(1)]), DetectionOutput(),
    ...                  GovernanceBatch(registry=[registry(1, 1, "ml"), registry(2, 3, "platform")]))
    >>> [w.asset.owner if w.asset else None for w in out.windows], [p.change for p in out.profiles]
    ([None, 'ml'], ['created', 'updated'])
    >>> [w.asset.owner for w in state.step(ShardOutput("s", windows=[window(3)]), DetectionOutput(), None).windows]
    ['platform']
    """

    def __init__(self) -> None:
        self.book = AssetBook()
        self.compliance = ComplianceBook()
        self.usage = UsageBook()
        self.horizon = Horizon()
        # Violation reports wait until their time is whole across shards: by then the registry
        # events before them were taken, whichever shard they came on.
        self.violations: list[ViolationReport] = []

    def step(self, out: ShardOutput, found: DetectionOutput, gov: GovernanceBatch | None,
             steps: RegistrySteps = RegistrySteps()) -> RegistryOutput:
        res = RegistryOutput(windows=out.windows)
        if gov is not None:
            if gov.registry:
                applied = self.book.apply(gov.registry, steps.canonical)
                res.assets, res.asset_events, res.profiles = applied.assets, applied.asset_events, applied.profiles
            if gov.facts is not None:
                self.compliance.add(gov.facts)
            self.violations += gov.violations
            res.audit = gov.audit
        if steps.usage:
            self.usage.add(out.windows)
        self.horizon.update(out.shard, out.closed_ms, out.watermark_ms, out.final)
        complete = self.horizon.complete_ms
        if self.violations:
            res.violations = sorted((v for v in self.violations if v.time_ms < complete), key=lambda v: v.time_ms)
            if res.violations:
                self.violations = [v for v in self.violations if v.time_ms >= complete]
        if self.book:
            self._enrich(res, found)
        as_of = self.book.as_of if self.book else None
        res.reports = self.compliance.reports(complete, as_of)
        if steps.usage:
            res.usage = self.usage.records(complete, as_of)
        return res

    def _enrich(self, res: RegistryOutput, found: DetectionOutput) -> None:
        """Per closed window and finding, never per event: one lookup each."""
        as_of = self.book.as_of
        for w in res.windows:
            w.asset = as_of(w.series.model, w.window_start_ms + w.window_ms)
        for a in found.anomalies:
            a.asset = as_of(a.model, a.window_start_ms + (a.window_ms or MINUTE_MS))
        for i in found.incidents:
            i.asset_info = [as_of(key, i.end_ms + 1) for key in i.assets]
        for v in res.violations:
            v.asset = as_of(v.asset_id or v.model, v.time_ms + 1)
