"""Event-time 1-minute windows per series, summarized with mergeable log-bucket histograms."""
from operators.windows import sketch
from operators.windows.aggregator import MetricValues, WindowAggregator
from operators.windows.extract import extract

__all__ = ["MetricValues", "WindowAggregator", "extract", "sketch"]
