"""Outbound feeds: hourly usage per team and model (CostOps), and the window bookkeeping the
feeds and compliance reports share (when a window is whole, what to re-emit)."""
from operators.feeds.book import Horizon, WindowBook
from operators.feeds.usage import UsageBook

__all__ = ["Horizon", "UsageBook", "WindowBook"]
