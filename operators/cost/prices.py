"""The versioned model price table: (provider, model, event time) -> USD per token, by kind."""
from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Iterable

import msgspec

from config.cost import ModelPrice
from operators.normalize.model_names import ModelNames

_PER_TOKEN = 1e-6
_EPOCH = dt.date(1970, 1, 1)


class Rates(msgspec.Struct, frozen=True, gc=False):
    """USD per token of each kind, with the defaults of the price file already applied."""

    input: float
    cached_input: float
    cache_write: float
    output: float
    reasoning: float

    @classmethod
    def per_million(cls, input: float, output: float, cached_input: float | None = None,
                    cache_write: float | None = None, reasoning: float | None = None) -> Rates:
        """From USD per 1M tokens, with the price file's defaults for the kinds left out."""
        return cls(input * _PER_TOKEN, (input if cached_input is None else cached_input) * _PER_TOKEN,
                   (input if cache_write is None else cache_write) * _PER_TOKEN, output * _PER_TOKEN,
                   (output if reasoning is None else reasoning) * _PER_TOKEN)


class PriceTable:
    """Prices by model name, each a timeline of (effective from, rates).

    A name is tried as sent, then folded step by step (ModelNames.candidates), so a dated
    snapshot with its own entry wins over its family. The provider only chooses between
    providers that list the same name: a model hosted elsewhere (Bedrock, Azure) is priced at
    its maker's list price.

    >>> from config.cost import ModelSettings
    >>> table = PriceTable([
    ...     ModelPrice(provider="openai", models=["gpt-4o"], effective_from=dt.date(2024, 5, 13), input=5, output=15),
    ...     ModelPrice(provider="openai", models=["gpt-4o"], effective_from=dt.date(2024, 10, 1), input=2.5,
    ...                cached_input=1.25, output=10)], ModelNames(ModelSettings()))
    >>> july, november = 1_720_000_000_000, 1_731_000_000_000
    >>> table.rates("openai", "gpt-4o-2024-08-06", july).input * 1e6
    5.0
    >>> table.rates("azure.ai.openai", "openai/gpt-4o", november).cached_input * 1e6
    1.25
    >>> table.rates("openai", "gpt-2", november) is None
    True
    """

    MAX_RESOLVED = 100_000

    def __init__(self, prices: Iterable[ModelPrice], names: ModelNames) -> None:
        self.names = names
        # name -> provider -> sorted [(from_ms, Rates)]
        self._by_name: dict[str, dict[str, list[tuple[int, Rates]]]] = {}
        self._resolved: dict[tuple[str, str], tuple[list[int], list[Rates]] | None] = {}
        for p in prices:
            self.add(p)

    def add(self, price: ModelPrice) -> None:
        """Later additions win over earlier ones with the same effective date (user files)."""
        rates = Rates.per_million(price.input, price.output, price.cached_input, price.cache_write, price.reasoning)
        for model in price.models:
            self.add_at(price.provider, model, (price.effective_from - _EPOCH).days * 86_400_000, rates)

    def add_at(self, provider: str, model: str, start_ms: int, rates: Rates) -> None:
        """One model's rates from `start_ms` on (a price file entry, a price change event)."""
        timeline = self._by_name.setdefault(model.lower(), {}).setdefault(self.names.provider(provider), [])
        at = bisect.bisect_left(timeline, start_ms, key=lambda e: e[0])
        if at < len(timeline) and timeline[at][0] == start_ms:
            timeline[at] = (start_ms, rates)
        else:
            timeline.insert(at, (start_ms, rates))
        self._resolved.clear()

    def rates(self, provider: str, model: str, at_ms: int) -> Rates | None:
        """None when the model is not priced, or the call is older than its first price."""
        key = (provider, model)
        timeline = self._resolved.get(key, False)
        if timeline is False:
            if len(self._resolved) >= self.MAX_RESOLVED:
                self._resolved.clear()
            timeline = self._resolved[key] = self._timeline(provider, model)
        if not timeline:
            return None
        starts, rates = timeline
        if at_ms >= starts[-1]:  # the current price: most calls
            return rates[-1]
        at = bisect.bisect_right(starts, at_ms) - 1
        return rates[at] if at >= 0 else None

    def _timeline(self, provider: str, model: str) -> tuple[list[int], list[Rates]] | None:
        """(effective starts, rates) of the entry this provider and model resolve to."""
        for name in self.names.candidates(model):
            by_provider = self._by_name.get(name)
            if by_provider:
                own = by_provider.get(self.names.provider(provider))
                if own is None and len(by_provider) == 1:
                    own = next(iter(by_provider.values()))
                if own is not None:
                    return [start for start, _ in own], [rates for _, rates in own]
        return None
