"""Constrained scalar types: the range, format and unit rules of event fields, in one place.

Validation rules that a type can say live on the types themselves, where msgspec checks them
in C while decoding and `msgspec.json.schema` publishes them to producers: range =
`Meta(ge/le)`, length = `Meta(min/max_length)`. Formats (semver, currency codes) are published
as schema patterns but checked by the normalizer.

Units are canonical: durations in ms, sizes in bytes, money in USD, rates per second. Types
carrying a convertible unit say so in `Meta.extra["unit"]`; `schemas.events.UNIT_FIELDS` reads
that back per payload field so the normalizer can convert wire values.
"""
from __future__ import annotations

from typing import Annotated

from msgspec import Meta

SEMVER_PATTERN = r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$"

# Upper bounds are backstops that keep every value storable (UInt64, finite Float64): a wire
# value past them is a dead letter naming the field, never an overflow in the store's writer.
# Tighter, configurable plausibility limits are the normalizer's ([normalization] limits).
MAX_COUNT = 2**53  # exact in a float64, so sums and histograms stay exact
MAX_MAGNITUDE = 1e15
DurationMs = Annotated[float, Meta(ge=0, le=MAX_MAGNITUDE, description="Duration in milliseconds.",
                                   extra={"unit": "duration"})]
SizeBytes = Annotated[int, Meta(ge=0, le=2**63 - 1, description="Size in bytes.", extra={"unit": "size"})]
PerSecond = Annotated[float, Meta(ge=0, le=MAX_MAGNITUDE, description="Rate per second.", extra={"unit": "rate"})]
Money = Annotated[float, Meta(ge=0, le=MAX_MAGNITUDE, description="Amount in `currency` (USD once normalized).",
                              extra={"unit": "money"})]
Count = Annotated[int, Meta(ge=0, le=MAX_COUNT)]
Ratio = Annotated[float, Meta(ge=0, le=1, description="Fraction between 0 and 1.")]
EventId = Annotated[str, Meta(min_length=1, max_length=256)]
# Format rules that the normalizer checks itself (a regex in the decoder costs ~0.4 us per
# field, more than the rest of the decode); the exported JSON Schema still states them.
Currency = Annotated[str, Meta(extra_json_schema={"pattern": "^[A-Za-z]{3}$"},
                               description="ISO 4217 code; USD once normalized.")]
SchemaVersion = Annotated[str, Meta(extra_json_schema={"pattern": SEMVER_PATTERN},
                                    description="Semantic version of the event schema.")]
