"""Normalization settings: how each source's events are decoded, corrected and validated.

Embedded in the main config under `[normalization]`; every field has a default, so
`NormalizationSettings()` is a working configuration. Per-source sections are keyed by source
module (`[normalization.sources.cost]`, ...).
"""
from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

Mode = Literal["strict", "lenient"]
# otlp_json / otlp_proto are OTLP traces; OTLP metrics and logs have their own names, since their
# protobuf messages start with the same wire tag as traces (see operators/normalize/formats.py).
WireFormat = Literal["auto", "hub", "base", "otlp_json", "otlp_proto", "otlp_metrics_json", "otlp_metrics_proto",
                     "otlp_logs_json", "otlp_logs_proto"]
CostUnit = Literal["usd", "cents", "micros"]

# Currency -> USD rates used when a source sends no better ones. Operators should set real rates.
DEFAULT_CURRENCY_RATES: dict[str, float] = {"EUR": 1.08, "GBP": 1.25, "JPY": 0.0067, "CAD": 0.73, "AUD": 0.66}


class SourceNormalization(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Settings for one source module."""

    # How far this source's clock runs ahead of true time; subtracted from its event times.
    clock_skew_ms: int = 0
    # Rename fields before decoding: dotted path in the message -> canonical dotted path
    # (e.g. "data.modelName" -> "data.model", "metadata.env" -> "metadata.environment"); for
    # OTLP spans the keys are attribute names (e.g. "app.model" -> "gen_ai.request.model").
    # Units are not renamed away: base-format values may carry them ("1.5s", "2GB", "120/min").
    field_mappings: dict[str, str] = {}
    # Pin the wire format of this source's topic instead of detecting it per message.
    wire_format: WireFormat = "auto"
    # Money fields arrive in this unit of their currency (cents = 1/100, micros = 1/1,000,000).
    cost_unit: CostUnit = "usd"
    # Currency code -> USD per unit; merged over DEFAULT_CURRENCY_RATES.
    currency_rates: dict[str, Annotated[float, Meta(gt=0)]] = {}
    # Overrides NormalizationSettings.mode for this source.
    mode: Mode | None = None


class SourcesNormalization(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    telemetry: SourceNormalization = msgspec.field(default_factory=SourceNormalization)
    security: SourceNormalization = msgspec.field(default_factory=SourceNormalization)
    cost: SourceNormalization = msgspec.field(default_factory=SourceNormalization)
    governance: SourceNormalization = msgspec.field(default_factory=SourceNormalization)
    registry: SourceNormalization = msgspec.field(default_factory=SourceNormalization)
    policy: SourceNormalization = msgspec.field(default_factory=SourceNormalization)

    def get(self, source: str) -> SourceNormalization:
        return getattr(self, source)


class LimitSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """What is too big to be true: past these an input is a dead letter naming the limit, so one
    poisoned message cannot multiply into every series or overflow the store. Every wire value
    is also bounded by the schema (counts <= 2^53, finite numbers), whatever these say."""

    # Bytes of one input message (a whole OTLP export request counts as one).
    max_message_bytes: Annotated[int, Meta(gt=0)] = 4 * 1024 * 1024
    # Characters of a model, provider or operation name of an LLM call (series keys).
    max_name_length: Annotated[int, Meta(gt=0, le=65_536)] = 256
    # Duration of one LLM call.
    max_latency_ms: Annotated[float, Meta(gt=0)] = 86_400_000.0
    # Tokens of one LLM call, per kind.
    max_tokens: Annotated[int, Meta(gt=0, le=2**53)] = 100_000_000


class NormalizationSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """strict: reject anything invalid. lenient: fix what is unambiguous (numeric strings,
    short semver, enum case/aliases, missing id or time from the message itself) and count a
    warning; reject the rest."""

    mode: Mode = "strict"
    sources: SourcesNormalization = msgspec.field(default_factory=SourcesNormalization)
    # Duplicates (same event id) are dropped when seen again within this much event time.
    dedup_window_s: Annotated[int, Meta(gt=0)] = 300
    # Upper bound on remembered event ids (~150 bytes each); the oldest go first beyond it.
    dedup_max_entries: Annotated[int, Meta(gt=0)] = 1_000_000
    # Both limits below are measured from the message's Kafka timestamp (so a replay judges
    # exactly as the first run did), or from the hub's clock for input without one (files,
    # the generator).
    # Event times further ahead than this are impossible.
    max_future_skew_s: Annotated[int, Meta(ge=0)] = 300
    # Event times older than this are impossible (raise it to load old archives from files).
    max_event_age_s: Annotated[int, Meta(gt=0)] = 30 * 86_400
    limits: LimitSettings = msgspec.field(default_factory=LimitSettings)
