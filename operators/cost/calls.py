"""The cost of one LLM call from its token counts: each token priced once, at its kind's rate."""
from __future__ import annotations

import msgspec

from operators.cost.prices import Rates


class TokenKinds(msgspec.Struct, frozen=True, gc=False):
    """How a source counts: per OpenTelemetry GenAI, input includes cache reads and cache
    writes and output includes reasoning; Anthropic's own API reports them separately."""

    input_includes_cached: bool = True
    output_includes_reasoning: bool = True


def call_cost(rates: Rates, input_tokens: int | None, output_tokens: int | None, cached: int | None = None,
              cache_write: int | None = None, reasoning: int | None = None,
              kinds: TokenKinds = TokenKinds()) -> float:
    """USD for one call. Cached and cache-write tokens are taken out of the input count (when it
    includes them) and priced at their own rates; reasoning likewise out of the output count.
    A count smaller than its parts (inconsistent input) never goes negative.

    >>> r = Rates(input=2.5e-6, cached_input=1.25e-6, cache_write=2.5e-6, output=10e-6, reasoning=10e-6)
    >>> round(call_cost(r, 1000, 500), 6)                # 1000 x 2.5 + 500 x 10 per 1M
    0.0075
    >>> round(call_cost(r, 1000, 500, cached=400), 6)    # 600 x 2.5 + 400 x 1.25 + 500 x 10
    0.007
    >>> round(call_cost(r, 600, 500, cached=400, kinds=TokenKinds(input_includes_cached=False)), 6)
    0.007
    """
    cached, cache_write, reasoning = cached or 0, cache_write or 0, reasoning or 0
    plain_in = input_tokens or 0
    if kinds.input_includes_cached:
        plain_in = max(plain_in - cached - cache_write, 0)
    plain_out = output_tokens or 0
    if kinds.output_includes_reasoning:
        plain_out = max(plain_out - reasoning, 0)
    return (plain_in * rates.input + cached * rates.cached_input + cache_write * rates.cache_write
            + plain_out * rates.output + reasoning * rates.reasoning)
