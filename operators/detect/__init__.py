"""Anomalies found online per series (the detector bank) and the flow's detection step."""
from operators.detect.bank import AnomalyDetectorBank
from operators.detect.step import DetectionState

__all__ = ["AnomalyDetectorBank", "DetectionState"]
