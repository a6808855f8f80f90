"""Price changes the store has kept (table `model_prices`, filled from cost.price events), for the
price table of a starting flow."""
from __future__ import annotations

from clickhouse_connect.driver.client import Client

from schemas.events import PriceChange


def stored_price_changes(client: Client) -> list[tuple[int, PriceChange]]:
    """(effective time in epoch ms, change), oldest first; amounts already in USD per 1M tokens.
    Empty on a store not migrated this far."""
    if not client.command("EXISTS TABLE model_prices"):
        return []
    rows = client.query(
        "SELECT toUnixTimestamp64Milli(effective_from), provider, model, input, output, cached_input, cache_write, "
        "reasoning FROM model_prices FINAL ORDER BY effective_from, event_id").result_rows
    return [(at, PriceChange(provider=provider, model=model, input=inp, output=out, cached_input=cached,
                             cache_write=write, reasoning=reasoning))
            for at, provider, model, inp, out, cached, write, reasoning in rows]
