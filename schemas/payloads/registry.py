"""Registry payloads (LLM-Registry): asset and version lifecycle events, each carrying the
flat asset metadata of `AssetPayload`."""
from __future__ import annotations

from typing import ClassVar

from schemas.payloads.base import Payload


class AssetPayload(Payload):
    """Asset metadata every registry event carries (flat, as the registry emits it)."""

    SOURCE: ClassVar[str] = "registry"
    asset_id: str
    asset_name: str = ""
    asset_type: str = ""
    version: str = ""
    owner: str = ""
    category: str = ""
    provider: str = ""
    tags: list[str] = []
    description: str = ""


class AssetRegistered(AssetPayload, tag="asset.registered"):
    """A new asset (model, prompt, dataset, endpoint) entered the registry."""


class AssetUpdated(AssetPayload, tag="asset.updated"):
    """Asset metadata changed; `changed_fields` names what."""

    changed_fields: list[str] = []


class AssetDeprecated(AssetPayload, tag="asset.deprecated"):
    """An asset is deprecated; consumers should move to `replacement_asset_id`."""

    reason: str = ""
    replacement_asset_id: str = ""
    sunset_date: str = ""


class VersionPublished(AssetPayload, kw_only=True, tag="version.published"):
    """A new version of an asset was published."""

    version: str
    previous_version: str = ""


class VersionPromoted(AssetPayload, kw_only=True, tag="version.promoted"):
    """A version moved between stages (e.g. staging -> production)."""

    version: str
    to_stage: str
    from_stage: str = ""


class VersionRetired(AssetPayload, kw_only=True, tag="version.retired"):
    """A version was retired and no longer serves traffic."""

    version: str
    reason: str = ""
