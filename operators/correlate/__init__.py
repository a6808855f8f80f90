"""Anomalies and noteworthy events grouped into incidents, with a root-cause guess."""
from operators.correlate.correlator import Correlator
from operators.correlate.domains import domain_of
from operators.correlate.records import incident_edges, should_alert
from operators.correlate.signals import is_signal, signal_from_anomaly, signals_from_columns

__all__ = ["Correlator", "domain_of", "incident_edges", "is_signal", "should_alert", "signal_from_anomaly",
           "signals_from_columns"]
