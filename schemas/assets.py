"""Registry records: an asset's profile as the flow keeps it (ClickHouse `assets`, history in
`asset_events`) and the slice of it that enriches metric rows, anomalies and incidents.

Enrichment is a join at write time: a row carries the asset's fields as they were at the end of
the row's window, and a later registry change never rewrites it (a ClickHouse dictionary over
`assets` would answer with today's values instead; schemas/migrations/0008_registry_compliance.sql).
"""
from __future__ import annotations

import msgspec

from schemas.payloads.registry import AssetPayload


class AssetInfo(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What a metric row, anomaly or incident carries of its asset."""

    asset_id: str
    name: str = ""
    version: str = ""
    owner: str = ""
    category: str = ""
    tags: tuple[str, ...] = ()


# Columns an enriched row adds, in this order (metrics_1m, anomalies).
ASSET_INFO_COLUMNS = ("asset_id", "asset_name", "asset_version", "asset_owner", "asset_category", "asset_tags")
NO_ASSET: tuple = ("", "", "", "", "", [])


def asset_columns(a: AssetInfo | None) -> tuple:
    """The ASSET_INFO_COLUMNS values of a row (empty strings when the asset is unknown)."""
    if a is None:
        return NO_ASSET
    return (a.asset_id, a.name, a.version, a.owner, a.category, list(a.tags))


class AssetProfile(msgspec.Struct, kw_only=True):
    """An asset as the registry events so far describe it (latest state wins).

    `version` is the version traffic is taken to be served by: the one most recently promoted to
    production, else the most recently registered or published one that is not retired.
    `versions` maps every version seen to its stage (`published`, a promotion's `to_stage`, or
    `retired`). `events` counts the registry events folded in: the `assets` table's version, so a
    profile that knows more wins whatever order rows arrive in.
    """

    asset_id: str
    name: str = ""
    asset_type: str = ""
    version: str = ""
    owner: str = ""
    category: str = ""
    provider: str = ""
    tags: list[str] = []
    description: str = ""
    status: str = "active"
    stage: str = ""
    versions: dict[str, str] = {}
    replacement_asset_id: str = ""
    sunset_date: str = ""
    registered_at_ms: int = 0
    updated_at_ms: int = 0
    last_event_id: str = ""
    last_event_type: str = ""
    events: int = 0

    def info(self) -> AssetInfo:
        return AssetInfo(asset_id=self.asset_id, name=self.name, version=self.version, owner=self.owner,
                         category=self.category, tags=tuple(self.tags))


class RegistryChange(msgspec.Struct, frozen=True, kw_only=True):
    """One registry event as the registry step takes it."""

    event_id: str
    time_ms: int
    event_type: str
    payload: AssetPayload


ASSET_COLUMNS = ("asset_id", "name", "asset_type", "version", "owner", "category", "provider", "tags", "description",
                 "status", "stage", "versions", "replacement_asset_id", "sunset_date", "registered_at", "updated_at",
                 "last_event_id", "last_event_type", "events")


def asset_row(p: AssetProfile) -> tuple:
    return (p.asset_id, p.name, p.asset_type, p.version, p.owner, p.category, p.provider, p.tags, p.description,
            p.status, p.stage, p.versions, p.replacement_asset_id, p.sunset_date, p.registered_at_ms, p.updated_at_ms,
            p.last_event_id, p.last_event_type, p.events)


ASSET_EVENT_COLUMNS = ("event_id", "event_time", "event_type", "asset_id", "name", "version", "owner", "category",
                       "tags", "stage", "status", "payload")
_encode = msgspec.json.Encoder().encode


def asset_event_row(change: RegistryChange, after: AssetProfile) -> tuple:
    """A row of `asset_events`: the event and the profile right after it."""
    return (change.event_id, change.time_ms, change.event_type, after.asset_id, after.name, after.version, after.owner,
            after.category, after.tags, after.stage, after.status, _encode(change.payload).decode())
