"""Canonical model and provider names: what series are keyed by and prices are looked up with.

Instrumentations report the same model as `gpt-4o-mini-2024-07-18`, `openai/gpt-4o-mini` or
Bedrock's `us.anthropic.claude-3-5-sonnet-20240620-v1:0`; folding them keeps one series (and one
price) per model. The folds are configuration (`[models]`), applied in order.
"""
from __future__ import annotations

import re
from collections.abc import Iterator

from config.cost import ModelSettings


class ModelNames:
    """Folds names with a bounded cache (few distinct names, millions of calls).

    >>> names = ModelNames(ModelSettings())
    >>> names.canonical("us.anthropic.claude-3-5-sonnet-20240620-v1:0")
    'claude-3-5-sonnet'
    >>> names.canonical("openai/gpt-4o-mini-2024-07-18"), names.canonical("models/gemini-1.5-pro-002")
    ('gpt-4o-mini', 'gemini-1.5-pro')
    >>> list(names.candidates("GPT-4o-2024-05-13"))
    ['gpt-4o-2024-05-13', 'gpt-4o']
    >>> names.provider("az.ai.openai"), names.provider("Anthropic")
    ('openai', 'anthropic')
    """

    MAX_CACHED = 100_000

    def __init__(self, settings: ModelSettings) -> None:
        self.folds = [re.compile(f) for f in settings.fold]
        self.aliases = {k.lower(): v for k, v in settings.aliases.items()}
        self.provider_aliases = {k.lower(): v for k, v in settings.provider_aliases.items()}
        self._canonical: dict[str, str] = {}

    def candidates(self, name: str) -> Iterator[str]:
        """The name as sent (lower-cased, or its alias), then after each fold that changes it."""
        current = name.strip().lower()
        alias = self.aliases.get(current)
        if alias is not None:
            yield alias
            return
        yield current
        for fold in self.folds:
            folded = fold.sub("", current)
            if folded != current and folded:
                current = folded
                yield self.aliases.get(current, current)

    def canonical(self, name: str) -> str:
        if not name:
            return name
        cached = self._canonical.get(name)
        if cached is None:
            *_, cached = self.candidates(name)
            if len(self._canonical) < self.MAX_CACHED:
                self._canonical[name] = cached
        return cached

    def provider(self, name: str) -> str:
        low = name.strip().lower()
        return self.provider_aliases.get(low, low)
