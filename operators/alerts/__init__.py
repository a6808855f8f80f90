"""Budgets, alert rules and the alert state machine; notifications routed and rendered (the
webhook I/O is connectors/webhooks.py)."""
from operators.alerts.feed import Feeder
from operators.alerts.rules import Alerting
from operators.alerts.step import AlertState

__all__ = ["Alerting", "AlertState", "Feeder"]
