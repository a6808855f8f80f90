"""The model price table and the per-call cost rule: shipped prices, name variants, price
changes over time, user files, and clear errors for bad files."""
from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

import pytest

from config.cost import DEFAULT_PRICES, ModelPrice, ModelSettings, load_prices
from config.errors import HubError
from operators.cost import PriceTable, TokenKinds, call_cost
from operators.normalize.model_names import ModelNames


def ms(day: str) -> int:
    return int(dt.datetime.fromisoformat(day).replace(tzinfo=dt.timezone.utc).timestamp() * 1000)


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return PriceTable(load_prices([]), ModelNames(ModelSettings()))


def test_shipped_table_names_each_price_once() -> None:
    keys = Counter((p.provider, m, p.effective_from) for p in load_prices([]) for m in p.models)
    assert keys and not [k for k, n in keys.items() if n > 1]
    assert "Source:" in DEFAULT_PRICES.read_text()


@pytest.mark.parametrize("provider, model, canonical_input", [
    ("openai", "gpt-4o-mini-2024-07-18", 0.15),
    ("openai", "openai/gpt-4o-mini", 0.15),
    ("azure.ai.openai", "gpt-4o-mini", 0.15),
    ("aws.bedrock", "us.anthropic.claude-3-5-sonnet-20240620-v1:0", 3.00),
    ("aws.bedrock", "anthropic.claude-3-5-haiku-20241022-v1:0", 0.80),
    ("gcp.vertex_ai", "claude-3-5-sonnet-v2@20241022", 3.00),
    ("gcp.gemini", "models/gemini-1.5-pro-002", 1.25),
    ("mistral_ai", "mistral-large-2411", 2.00),
    ("anthropic", "claude-sonnet-4-5-20250929", 3.00),
])
def test_variants_find_their_model(table: PriceTable, provider: str, model: str, canonical_input: float) -> None:
    rates = table.rates(provider, model, ms("2025-11-01"))
    assert rates is not None, model
    assert rates.input * 1e6 == pytest.approx(canonical_input)


def test_price_follows_the_event_time(table: PriceTable) -> None:
    assert table.rates("openai", "o3", ms("2025-05-01")).output * 1e6 == pytest.approx(40.0)
    assert table.rates("openai", "o3-2025-04-16", ms("2025-07-01")).output * 1e6 == pytest.approx(8.0)
    assert table.rates("openai", "o3", ms("2024-01-01")) is None  # before its first price


def test_a_dated_snapshot_with_its_own_entry_wins_over_its_family(table: PriceTable) -> None:
    assert table.rates("openai", "gpt-4o-2024-05-13", ms("2025-01-01")).input * 1e6 == pytest.approx(5.0)
    assert table.rates("openai", "gpt-4o-2024-08-06", ms("2025-01-01")).input * 1e6 == pytest.approx(2.5)


def test_unknown_models_are_not_priced(table: PriceTable) -> None:
    assert table.rates("acme", "acme-llm-7b", ms("2025-01-01")) is None
    assert table.rates("openai", "", ms("2025-01-01")) is None


def test_a_user_file_adds_models_and_overrides_prices(tmp_path: Path) -> None:
    user = tmp_path / "prices.toml"
    user.write_text('[[price]]\nprovider = "openai"\nmodels = ["gpt-4o-mini"]\neffective_from = 2024-07-18\n'
                    'input = 0.2\noutput = 0.8\n\n'
                    '[[price]]\nprovider = "acme"\nmodels = ["acme-llm"]\neffective_from = 2025-01-01\n'
                    'input = 1\noutput = 2\nreasoning = 3\n')
    table = PriceTable(load_prices([str(user)]), ModelNames(ModelSettings()))
    assert table.rates("openai", "gpt-4o-mini", ms("2025-01-01")).input * 1e6 == pytest.approx(0.2)
    acme = table.rates("acme", "acme-llm-2025-03-01", ms("2025-06-01"))
    assert (acme.output * 1e6, acme.reasoning * 1e6, acme.cached_input * 1e6) == pytest.approx((2, 3, 1))


@pytest.mark.parametrize("body, words", [
    ('[[price]]\nprovider = "x"\nmodels = ["m"]\neffective_from = 2025-01-01\ninput = -1\noutput = 1\n', "input"),
    ('[[price]]\nprovider = "x"\nmodels = []\neffective_from = 2025-01-01\ninput = 1\noutput = 1\n', "models"),
    ('[[price]]\nprovider = "x"\nmodel = "m"\n', "model"),
    ("[[price]\n", "not TOML"),
])
def test_a_bad_price_file_fails_with_one_line_naming_file_and_field(tmp_path: Path, body: str, words: str) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(body)
    with pytest.raises(HubError) as err:
        load_prices([str(bad)])
    message = str(err.value)
    assert "\n" not in message and str(bad) in message and words in message


def test_missing_price_file_is_named() -> None:
    with pytest.raises(HubError, match="nope.toml"):
        load_prices(["/nonexistent/nope.toml"])


def test_each_token_is_priced_once_at_its_kind() -> None:
    price = ModelPrice(provider="p", models=["m"], effective_from=dt.date(2025, 1, 1), input=3, cached_input=0.3,
                       cache_write=3.75, output=15, reasoning=20)
    table = PriceTable([price], ModelNames(ModelSettings()))
    rates = table.rates("p", "m", ms("2025-02-01"))
    # OTel counting: 10k input of which 4k cache reads and 1k cache writes; 2k output of which 500 reasoning.
    otel = call_cost(rates, 10_000, 2_000, cached=4_000, cache_write=1_000, reasoning=500)
    expected = (5_000 * 3 + 4_000 * 0.3 + 1_000 * 3.75 + 1_500 * 15 + 500 * 20) / 1e6
    assert otel == pytest.approx(expected)
    separate = call_cost(rates, 5_000, 1_500, cached=4_000, cache_write=1_000, reasoning=500,
                         kinds=TokenKinds(input_includes_cached=False, output_includes_reasoning=False))
    assert separate == pytest.approx(expected)
    assert call_cost(rates, 100, 0, cached=400) == pytest.approx(400 * 0.3 / 1e6)  # never negative


def test_config_refuses_a_bad_fold_pattern_or_price_file_at_start() -> None:
    from config.settings import ConfigError, load_config

    with pytest.raises(ConfigError, match=r"models: fold pattern '\(x'"):
        load_config(environ={"HUB_MODELS__FOLD": '["(x"]'})
    with pytest.raises(ConfigError, match="cost.price_files: price file /nonexistent/p.toml"):
        load_config(environ={"HUB_COST__PRICE_FILES": '["/nonexistent/p.toml"]'})
