"""Per-payload rules a type can't say: cross-field consistency and money to USD.

`CHECKS` maps a payload class to its rule; each rule fixes the payload in place (derived
totals, USD amounts, a dropped inconsistent value in lenient mode) or raises `Reject`.
"""
from __future__ import annotations

from typing import Any, Callable

from operators.normalize.batch import Batch
from operators.normalize.reasons import INVALID_FIELD, OVERSIZED, Reject
from operators.normalize.sources import SourceRules
from schemas.events import (
    UNIT_FIELDS,
    ApiCost,
    BudgetAlert,
    ErrorOccurred,
    Latency,
    LlmRequest,
    PriceChange,
    ResourceConsumption,
    TokenCost,
    TokenUsage,
)

_MONEY_FIELDS: dict[type, tuple[str, ...]] = {
    cls: tuple(f for f, u in fields.items() if u == "money") for cls, fields in UNIT_FIELDS.items()
}


def _convert_money(p: Any, rt: SourceRules, st: Batch, prefix: str) -> None:
    """Money fields in the source's unit and the payload's currency -> USD."""
    cur = p.currency
    if cur != "USD":
        cur = cur.upper()
    rate = rt.rates.get(cur)
    if rate is None:
        raise Reject(INVALID_FIELD, prefix + "currency", f"no USD rate configured for currency '{p.currency}' "
                     f"(normalization.sources.{rt.name}.currency_rates)")
    factor = rate * rt.money_factor
    if factor != 1.0:
        for name in _MONEY_FIELDS[type(p)]:
            v = getattr(p, name)
            if v is not None:
                setattr(p, name, v * factor)
    p.currency = "USD"


# LlmRequest fields [normalization.limits] bounds, as the hub and base formats name them.
CALL_FIELDS = {"model": "model", "provider": "provider", "operation": "operation", "response_model": "response_model",
               "latency": "latency_ms", "input": "input_tokens", "output": "output_tokens",
               "cached": "cached_input_tokens", "cache_write": "cache_write_tokens", "reasoning": "reasoning_tokens",
               "total": "total_tokens"}


def check_call_limits(p: LlmRequest, rt: SourceRules, fields: dict[str, str], prefix: str = "") -> None:
    """An LLM call past [normalization.limits] is too big to be true: its names would become
    series keys, its numbers sums and percentiles. (Sums bound every part: one comparison each
    clears the common case; the detailed pass runs only to name what is too big.)"""
    lim = rt.limits
    if (len(p.model) + len(p.provider) + len(p.operation) + len(p.response_model) <= lim.max_name_length
            and p.latency_ms <= lim.max_latency_ms
            and (p.input_tokens or 0) + (p.output_tokens or 0) + (p.cached_input_tokens or 0)
            + (p.cache_write_tokens or 0) + (p.reasoning_tokens or 0) + (p.total_tokens or 0) <= lim.max_tokens):
        return
    n = lim.max_name_length
    for key, value in (("model", p.model), ("provider", p.provider), ("operation", p.operation),
                       ("response_model", p.response_model)):
        if len(value) > n:
            raise Reject(OVERSIZED, prefix + fields[key], f"{fields[key]} is {len(value):,} characters long; the "
                         f"limit is {n} (normalization.limits.max_name_length)")
    if p.latency_ms > lim.max_latency_ms:
        raise Reject(OVERSIZED, prefix + fields["latency"], f"a call lasting {p.latency_ms:,.0f} ms is implausible; "
                     f"the limit is {lim.max_latency_ms:,.0f} ms (normalization.limits.max_latency_ms)")
    t = lim.max_tokens
    for key, value in (("input", p.input_tokens), ("output", p.output_tokens), ("cached", p.cached_input_tokens),
                       ("cache_write", p.cache_write_tokens), ("reasoning", p.reasoning_tokens),
                       ("total", p.total_tokens)):
        if value is not None and value > t:
            raise Reject(OVERSIZED, prefix + fields[key], f"{value:,} {fields[key]} in one call is implausible; "
                         f"the limit is {t:,} (normalization.limits.max_tokens)")


def check_llm_request(p: LlmRequest, rt: SourceRules, st: Batch, prefix: str) -> None:
    """Total tokens derived when missing; TTFT within latency; an error type means an error;
    nothing past [normalization.limits]."""
    check_call_limits(p, rt, CALL_FIELDS, prefix)
    if p.total_tokens is None and (p.input_tokens is not None or p.output_tokens is not None):
        p.total_tokens = (p.input_tokens or 0) + (p.output_tokens or 0)
    ttft = p.time_to_first_token_ms
    if ttft is not None and ttft > p.latency_ms:
        if not rt.lenient:
            raise Reject(INVALID_FIELD, prefix + "time_to_first_token_ms",
                         f"time to first token ({ttft} ms) exceeds the total latency ({p.latency_ms} ms)")
        st.warn("dropped_inconsistent_ttft")
        p.time_to_first_token_ms = None
    if p.error_type and not p.is_error:
        p.is_error = True


def _check_latency(p: Latency, rt: SourceRules, st: Batch, prefix: str) -> None:
    b = p.breakdown
    if b is not None and b.time_to_first_token_ms is not None and b.time_to_first_token_ms > p.latency_ms:
        if not rt.lenient:
            raise Reject(INVALID_FIELD, prefix + "breakdown.time_to_first_token_ms",
                         f"time to first token ({b.time_to_first_token_ms} ms) exceeds the total latency "
                         f"({p.latency_ms} ms)")
        st.warn("dropped_inconsistent_ttft")
        b.time_to_first_token_ms = None


def _check_tokens(p: TokenUsage, rt: SourceRules, st: Batch, prefix: str) -> None:
    if p.total_tokens is None and (p.input_tokens is not None or p.output_tokens is not None):
        p.total_tokens = (p.input_tokens or 0) + (p.output_tokens or 0)


def _check_error(p: ErrorOccurred, rt: SourceRules, st: Batch, prefix: str) -> None:
    if p.total_requests is not None and p.total_requests < p.failed_requests:
        raise Reject(INVALID_FIELD, prefix + "total_requests",
                     f"total_requests ({p.total_requests}) is less than failed_requests ({p.failed_requests})")


CHECKS: dict[type, Callable[[Any, SourceRules, Batch, str], None]] = {
    LlmRequest: check_llm_request,
    Latency: _check_latency,
    TokenUsage: _check_tokens,
    ErrorOccurred: _check_error,
    TokenCost: _convert_money,
    ApiCost: _convert_money,
    ResourceConsumption: _convert_money,
    BudgetAlert: _convert_money,
    PriceChange: _convert_money,
}
