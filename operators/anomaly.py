"""Kept for external evaluations that import `operators.anomaly.AnomalyDetectorBank`."""
from operators.detect.bank import AnomalyDetectorBank

__all__ = ["AnomalyDetectorBank"]
