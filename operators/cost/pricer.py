"""Cost for every LLM call of a batch: the cost it reports, else tokens x the price table."""
from __future__ import annotations

from config.cost import CostSettings
from operators.cost.calls import TokenKinds, call_cost
from operators.cost.prices import PriceTable, Rates
from schemas.events import Event, LlmRequest, PriceChange


class Pricer:
    """Sets `cost_usd` and `cost_source` on each LLM call, in place, before columns are built.

    The response model is priced first (it names the snapshot that ran), then the request model.
    A call with no token counts at all stays `unknown` rather than costing 0.

    >>> import datetime as dt
    >>> from config.cost import ModelPrice, ModelSettings
    >>> from operators.normalize.model_names import ModelNames
    >>> from schemas.events import new_event
    >>> price = ModelPrice(provider="openai", models=["gpt-4o-mini"], effective_from=dt.date(2024, 7, 18),
    ...                    input=0.15, cached_input=0.075, output=0.6)
    >>> pricer = Pricer(PriceTable([price], ModelNames(ModelSettings())), CostSettings())
    >>> calls = [LlmRequest(model="gpt-4o-mini", latency_ms=900, provider="openai", input_tokens=1000,
    ...                     output_tokens=200, cached_input_tokens=400),
    ...          LlmRequest(model="gpt-4o-mini", latency_ms=50, cost_usd=0.25),
    ...          LlmRequest(model="in-house-llm", latency_ms=70, input_tokens=10)]
    >>> events = [new_event(f"e{i}", 1_763_546_340_000, c) for i, c in enumerate(calls)]
    >>> pricer.price(events)
    >>> [(round(c.cost_usd * 1e6, 3) if c.cost_usd is not None else None, c.cost_source) for c in calls]
    [(240.0, 'inferred'), (250000.0, 'reported'), (None, 'unknown')]
    """

    def __init__(self, table: PriceTable, settings: CostSettings) -> None:
        self.table = table
        self.kinds = TokenKinds(settings.input_includes_cached, settings.output_includes_reasoning)

    def learn(self, changes: list[tuple[int, PriceChange]]) -> None:
        """Price changes (effective time in ms, change), e.g. those stored before a restart."""
        for start_ms, c in changes:
            self.table.add_at(c.provider, c.model, start_ms, Rates.per_million(
                c.input, c.output, c.cached_input, c.cache_write, c.reasoning))

    def price(self, events: list[Event]) -> None:
        """Price changes in the batch first (they apply by event time), then every LLM call."""
        self.learn([(e.event_time_ms, e.payload) for e in events if type(e.payload) is PriceChange])
        rates_of = self.table.rates
        for e in events:
            p = e.payload
            if type(p) is not LlmRequest:
                continue
            if p.cost_usd is not None:
                p.cost_source = "reported"
                continue
            if p.input_tokens is None and p.output_tokens is None:
                p.cost_source = "unknown"
                continue
            rates = (p.response_model and rates_of(p.provider, p.response_model, e.event_time_ms)) or \
                rates_of(p.provider, p.model, e.event_time_ms)
            if rates is None:
                p.cost_source = "unknown"
                continue
            p.cost_usd = call_cost(rates, p.input_tokens, p.output_tokens, p.cached_input_tokens,
                                   p.cache_write_tokens, p.reasoning_tokens, self.kinds)
            p.cost_source = "inferred"
