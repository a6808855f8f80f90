"""Source modules: what producers call them, and each one's settings compiled for the hot path."""
from __future__ import annotations

from config.normalization import DEFAULT_CURRENCY_RATES, LimitSettings, SourceNormalization
from operators.normalize.batch import Batch
from operators.normalize.reasons import INVALID_FIELD, UNKNOWN_SOURCE, Reject
from schemas.vocabulary import SOURCES

SOURCE_ALIASES: dict[str, str] = {
    **{s: s for s in SOURCES},
    "observatory": "telemetry", "llm-observatory": "telemetry", "otel": "telemetry", "opentelemetry": "telemetry",
    "sentinel": "security", "llm-sentinel": "security",
    "costops": "cost", "cost-ops": "cost", "llm-costops": "cost",
    "governance-dashboard": "governance", "llm-governance-dashboard": "governance", "llm-governance": "governance",
    "llm-registry": "registry",
    "policy-engine": "policy", "llm-policy-engine": "policy",
}
COST_UNIT_FACTOR = {"usd": 1.0, "cents": 0.01, "micros": 1e-6}


class SourceRules:
    """Per-source settings compiled for the hot path.

    >>> rules = SourceRules("cost", SourceNormalization(cost_unit="cents"), "strict")
    >>> rules.lenient, rules.money_factor, rules.rates["USD"]
    (False, 0.01, 1.0)
    """

    __slots__ = ("name", "skew", "lenient", "fmt", "mappings", "money_factor", "rates", "limits")

    def __init__(self, name: str, cfg: SourceNormalization, default_mode: str,
                 limits: LimitSettings = LimitSettings()) -> None:
        self.name = name
        self.limits = limits
        self.skew = cfg.clock_skew_ms
        self.lenient = (cfg.mode or default_mode) == "lenient"
        self.fmt = cfg.wire_format
        self.mappings = dict(cfg.field_mappings)
        self.money_factor = COST_UNIT_FACTOR[cfg.cost_unit]
        self.rates = {k.upper(): float(v) for k, v in {**DEFAULT_CURRENCY_RATES, **cfg.currency_rates}.items()}
        self.rates["USD"] = 1.0


def check_source(given: str, src: str, event_type: str, lenient: bool, st: Batch) -> None:
    """The envelope's `source` must name (an alias of) the module its event type belongs to;
    lenient mode trusts the event type and warns."""
    mod = SOURCE_ALIASES.get(given)
    if mod is None:
        mod = SOURCE_ALIASES.get(given.strip().lower().replace("_", "-"))
    if mod == src:
        return
    if lenient:
        st.warn("source_from_event_type")
        return
    if mod is None:
        raise Reject(UNKNOWN_SOURCE, "source", f"source '{given}' is not a known module; expected one of "
                     f"{', '.join(SOURCES)} (or observatory, sentinel, costops, policy-engine)")
    raise Reject(INVALID_FIELD, "source", f"source '{given}' is the {mod} module, but event type "
                 f"'{event_type}' belongs to the {src} module")
