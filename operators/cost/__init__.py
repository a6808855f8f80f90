"""What an LLM call cost: the versioned price table and the per-call cost rule."""
from operators.cost.calls import TokenKinds, call_cost
from operators.cost.prices import PriceTable, Rates
from operators.cost.pricer import Pricer

__all__ = ["PriceTable", "Pricer", "Rates", "TokenKinds", "call_cost"]
