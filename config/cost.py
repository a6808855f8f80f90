"""Cost settings and the model price files (`[cost]`, `[models]`; prices in config/prices.toml).

Loading price files is configuration: they are read and validated at start like the config
file, and a bad entry fails with one line naming the file and the entry. The operators get
plain `ModelPrice` records and never read files.
"""
from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from config.errors import HubError

DEFAULT_PRICES = Path(__file__).with_name("prices.toml")
UsdPerMillion = Annotated[float, Meta(ge=0, le=1_000_000)]

# Folded away before a model name is looked up or used as a series: provider prefixes
# (`openai/`, `models/`, Bedrock's `us.anthropic.`), host version tags (`-v1:0`, `@20241022`)
# and release dates (`-2024-07-18`, `-20241022`, `-0613`, `-001`). Applied in order.
DEFAULT_FOLDS: list[str] = [
    r"^.*/",
    r"^(?:us|eu|apac|au|jp|ca|global|us-gov)\.(?=[a-z0-9-]+\.)",
    r"^(?:anthropic|meta|mistral|amazon|cohere|ai21|deepseek|openai|qwen|writer)\.",
    r"-v\d+:\d+$",
    r"@[0-9a-z.-]+$",
    r"-\d{4}-\d{2}-\d{2}$",
    r"-20\d{6}$",
    r"-\d{4}$",
    r"-\d{3}$",
    r"-latest$",
]

# Provider names instrumentations use -> the provider that sets the price.
DEFAULT_PROVIDER_ALIASES: dict[str, str] = {
    "azure.ai.openai": "openai", "az.ai.openai": "openai", "azure": "openai", "azure_openai": "openai",
    "gcp.gemini": "google", "gcp.vertex_ai": "google", "gcp.gen_ai": "google", "vertex_ai": "google",
    "vertexai": "google", "gemini": "google", "google_genai": "google", "google.genai": "google",
    "mistral_ai": "mistral", "mistralai": "mistral",
}


class ModelPrice(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """One price of one or more models, USD per 1M tokens, from `effective_from` (UTC) on."""

    provider: str
    models: Annotated[list[str], Meta(min_length=1)]
    effective_from: dt.date
    input: UsdPerMillion
    output: UsdPerMillion
    cached_input: UsdPerMillion | None = None
    cache_write: UsdPerMillion | None = None
    reasoning: UsdPerMillion | None = None


class PriceFile(msgspec.Struct, forbid_unknown_fields=True):
    price: list[ModelPrice] = []


class ModelSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """How model names become canonical (series keys and price lookups); request and response
    model are kept as sent in the events table."""

    # Regexes removed from the lower-cased name, in order (see DEFAULT_FOLDS).
    fold: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_FOLDS))
    # Exact canonical names for what folding cannot know: name (lower-case) -> canonical name.
    aliases: dict[str, str] = {}
    provider_aliases: dict[str, str] = msgspec.field(default_factory=lambda: dict(DEFAULT_PROVIDER_ALIASES))

    def __post_init__(self) -> None:
        for pattern in self.fold:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"fold pattern {pattern!r} is not a regular expression: {exc}") from None


class CostSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Where cost comes from, so no call is paid twice.

    Every LLM call gets `cost_usd` in the events table: the cost it reports, or else tokens x
    the price table at its event time (`cost_source` reported | inferred | unknown). Which rows
    the `cost_usd` metric sums is `count_from`:
    - "calls": LLM calls (reported or inferred); per-request cost events (cost.tokens,
      cost.api) are stored but not summed, since they restate those calls.
    - "cost_events": the cost source's per-request records are the bill; LLM calls keep their
      inferred cost in the events table for comparison but are not summed.
    Resource costs (cost.resource) have no LLM call behind them and are summed either way.
    """

    count_from: Literal["calls", "cost_events"] = "calls"
    # Extra price files, later ones win over earlier ones and over the shipped table.
    price_files: list[str] = []
    # OpenTelemetry GenAI: input tokens include cache reads and writes, output tokens include
    # reasoning. Sources whose counts exclude them (Anthropic's own API) set these false.
    input_includes_cached: bool = True
    output_includes_reasoning: bool = True


def load_prices(extra_files: list[str]) -> list[ModelPrice]:
    """The shipped table, then each user file in order (later entries win on the same date)."""
    prices: list[ModelPrice] = []
    for path in [DEFAULT_PRICES, *map(Path, extra_files)]:
        try:
            prices += msgspec.toml.decode(path.read_bytes(), type=PriceFile).price
        except OSError as exc:
            raise HubError(f"price file {path}: {exc.strerror or exc}") from None
        except msgspec.ValidationError as exc:
            raise HubError(f"price file {path}: {exc}") from None
        except msgspec.DecodeError as exc:
            raise HubError(f"price file {path}: not TOML ({exc})") from None
    return prices
