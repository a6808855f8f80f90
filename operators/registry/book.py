"""Per-asset registry state: every asset's history by event time, so a row is enriched with the
asset as it was at the end of its window, whatever order registry events and windows arrive in.

An asset's history is the fold of its registry events in event-time order; an event that arrives
out of order is put in its place and the later profiles are folded again, so the history depends
only on which events arrived, not on their order. Superseded versions are kept KEEP_HISTORY_MS of
event time (windows that late still find their asset), at most MAX_HISTORY per asset (a registry
that changes an asset many times a second, like the synthetic generator's, must not grow the
snapshots); the latest version is always kept, and a time before the oldest kept version is
answered with that version.
"""
from __future__ import annotations

import bisect
from collections.abc import Callable

import msgspec

from schemas.assets import AssetInfo, AssetProfile, RegistryChange, asset_event_row
from schemas.feeds import AssetProfileEvent
from schemas.incidents import stable_id
from schemas.payloads.registry import AssetUpdated

KEEP_HISTORY_MS = 8 * 86_400_000
MAX_HISTORY = 256
PRODUCTION = frozenset(("production", "prod"))
# Metadata an event carries flat; a non-empty value (or one `changed_fields` names) replaces the old.
_FIELDS = ("name", "asset_type", "owner", "category", "provider", "description")
_PAYLOAD_FIELD = {"name": "asset_name"}


def current_version(versions: dict[str, str]) -> str:
    """The version serving traffic: most recently promoted to production, else the most recent
    live one (dict order = order last touched).

    >>> current_version({"1.0": "production", "1.1": "published"}), current_version({"1.0": "retired"})
    ('1.0', '')
    """
    prod = [v for v, s in versions.items() if s in PRODUCTION]
    if prod:
        return prod[-1]
    live = [v for v, s in versions.items() if s != "retired"]
    return live[-1] if live else ""


def fold(prev: AssetProfile | None, c: RegistryChange) -> AssetProfile:
    """The profile after one registry event.

    >>> from schemas.payloads.registry import AssetRegistered, VersionPromoted, VersionPublished
    >>> p = fold(None, RegistryChange(event_id="e1", time_ms=1, event_type="asset.registered",
    ...          payload=AssetRegistered(asset_id="m-1", asset_name="GPT-4", version="1.0", owner="ml")))
    >>> p = fold(p, RegistryChange(event_id="e2", time_ms=2, event_type="version.published",
    ...          payload=VersionPublished(asset_id="m-1", version="1.1")))
    >>> (p.name, p.version, p.owner, p.events)
    ('GPT-4', '1.1', 'ml', 2)
    >>> p = fold(p, RegistryChange(event_id="e3", time_ms=3, event_type="version.promoted",
    ...          payload=VersionPromoted(asset_id="m-1", version="1.0", to_stage="production")))
    >>> (p.version, p.stage, p.versions)
    ('1.0', 'production', {'1.1': 'published', '1.0': 'production'})
    """
    p = c.payload
    named = set(p.changed_fields) if isinstance(p, AssetUpdated) else set()
    changes: dict = {}
    for f in _FIELDS:
        value = getattr(p, _PAYLOAD_FIELD.get(f, f))
        if value or _PAYLOAD_FIELD.get(f, f) in named:
            changes[f] = value
    if p.tags or "tags" in named:
        changes["tags"] = list(p.tags)
    base = prev if prev is not None else AssetProfile(asset_id=p.asset_id, registered_at_ms=c.time_ms)
    versions = dict(base.versions)
    kind = c.event_type
    if kind == "asset.registered":
        changes["status"] = "active"
    elif kind == "asset.deprecated":
        changes.update(status="deprecated", replacement_asset_id=p.replacement_asset_id, sunset_date=p.sunset_date)
    if p.version:
        stage = versions.pop(p.version, "published")
        if kind == "version.promoted":
            stage = p.to_stage
        elif kind == "version.retired":
            stage = "retired"
        elif kind == "version.published" and stage == "retired":
            stage = "published"
        versions[p.version] = stage
    version = current_version(versions)
    return msgspec.structs.replace(
        base, **changes, versions=versions, version=version, stage=versions.get(version, ""),
        updated_at_ms=c.time_ms, last_event_id=c.event_id, last_event_type=kind, events=base.events + 1)


class _Entry:
    __slots__ = ("time_ms", "change", "profile", "info")

    def __init__(self, change: RegistryChange, profile: AssetProfile) -> None:
        self.time_ms = change.time_ms
        self.change = change
        self.profile = profile
        self.info = profile.info()

    def __getstate__(self) -> tuple:
        return (self.change, self.profile)

    def __setstate__(self, state: tuple) -> None:
        self.__init__(*state)


class Applied(msgspec.Struct):
    """What one batch of registry events changed."""

    assets: list[AssetProfile] = []
    asset_events: list[tuple] = []
    profiles: list[AssetProfileEvent] = []


class AssetBook:
    """Picklable (Bytewax snapshots).

    >>> from schemas.payloads.registry import AssetRegistered, AssetUpdated
    >>> book = AssetBook()
    >>> _ = book.apply([RegistryChange(event_id="e1", time_ms=1_000, event_type="asset.registered",
    ...                 payload=AssetRegistered(asset_id="m-1", asset_name="gpt-4o", version="1.0", owner="a"))])
    >>> _ = book.apply([RegistryChange(event_id="e2", time_ms=5_000, event_type="asset.updated",
    ...                 payload=AssetUpdated(asset_id="m-1", owner="b"))])
    >>> [getattr(book.as_of("gpt-4o", t), "owner", None) for t in (1_000, 2_000, 5_001)]
    [None, 'a', 'b']
    """

    def __init__(self) -> None:
        self.entries: dict[str, list[_Entry]] = {}
        self.times: dict[str, list[int]] = {}
        self.ids: dict[str, set[str]] = {}
        # Lookup key (asset id, canonical asset name or id) -> asset id.
        self.keys: dict[str, str] = {}
        # Asset id -> event time of its oldest kept entry, once older ones were dropped.
        self.floor: dict[str, int] = {}
        self.newest_ms = 0
        self.too_old = 0

    def __bool__(self) -> bool:
        return bool(self.entries)

    def apply(self, changes: list[RegistryChange], canonical: Callable[[str], str] = str) -> Applied:
        out = Applied(assets=[], asset_events=[], profiles=[])
        touched: dict[str, None] = {}
        for c in sorted(changes, key=lambda c: (c.time_ms, c.event_id)):
            asset = c.payload.asset_id
            entries = self.entries.setdefault(asset, [])
            times = self.times.setdefault(asset, [])
            ids = self.ids.setdefault(asset, set())
            if c.event_id in ids:
                continue  # the same registry event again (another partition, a producer retry)
            pos = bisect.bisect_right(times, c.time_ms)
            while pos > 0 and entries[pos - 1].time_ms == c.time_ms and entries[pos - 1].change.event_id > c.event_id:
                pos -= 1
            if pos == 0 and asset in self.floor:
                self.too_old += 1
                out.asset_events.append(asset_event_row(c, entries[0].profile))
                continue
            entries.insert(pos, _Entry(c, fold(entries[pos - 1].profile if pos else None, c)))
            times.insert(pos, c.time_ms)
            ids.add(c.event_id)
            for i in range(pos + 1, len(entries)):
                entries[i] = _Entry(entries[i].change, fold(entries[i - 1].profile, entries[i].change))
            after = entries[pos].profile
            out.asset_events.append(asset_event_row(c, after))
            out.profiles.append(AssetProfileEvent(
                id=stable_id("asset-profile", c.event_id), change="created" if len(entries) == 1 else "updated",
                asset_id=asset, registry_event_id=c.event_id, registry_event_type=c.event_type, time_ms=c.time_ms,
                profile=entries[-1].profile))
            self.keys[asset] = asset
            for key in (canonical(asset), canonical(after.name) if after.name else ""):
                if key and (key not in self.entries or key == asset):  # another asset's own id wins over a name
                    self.keys[key] = asset
            self.newest_ms = max(self.newest_ms, c.time_ms)
            touched[asset] = None
        out.assets = [self.entries[a][-1].profile for a in touched]
        if touched:
            self._prune()
        return out

    def resolve(self, key: str) -> str | None:
        """The asset id a model name or asset id stands for."""
        return self.keys.get(key)

    def as_of(self, key: str, end_ms: int) -> AssetInfo | None:
        """The asset `key` names as registry events before `end_ms` describe it (None: unknown then)."""
        asset = self.keys.get(key)
        if asset is None:
            return None
        i = bisect.bisect_left(self.times[asset], end_ms)
        if i:
            return self.entries[asset][i - 1].info
        return self.entries[asset][0].info if asset in self.floor else None

    def _prune(self) -> None:
        cutoff = self.newest_ms - KEEP_HISTORY_MS
        for asset, entries in self.entries.items():
            drop = max(len(entries) - MAX_HISTORY, 0)
            while drop + 1 < len(entries) and entries[drop + 1].time_ms < cutoff:
                drop += 1
            if drop:
                self.ids[asset].difference_update(e.change.event_id for e in entries[:drop])
                del entries[:drop]
                del self.times[asset][:drop]
                self.floor[asset] = entries[0].time_ms
