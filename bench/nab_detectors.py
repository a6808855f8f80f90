"""Factories for the NAB harness (../shared/anomaly-bench/nab_eval.py --detector bench.nab_detectors:NAME).

Each factory returns a fresh object with score(timestamp, value) -> float in [0, 1] that feeds one
series of `operators.anomaly.AnomalyDetectorBank` with the default settings.

  bank_score   AnomalyDetectorBank.score_value (the calibrated anomaly likelihood)
  bank_alerts  AnomalyDetectorBank.update_value: the highest score of the alerts at that point, else 0
"""
from __future__ import annotations

import datetime as dt

from operators.anomaly import AnomalyDetectorBank
from schemas.metrics import SeriesKey

_KEY = SeriesKey("nab")


def _ms(ts: dt.datetime) -> int:
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=dt.timezone.utc)
    return int(ts.timestamp() * 1000)


class _BankScore:
    def __init__(self, settings=None) -> None:
        self.bank = AnomalyDetectorBank(settings)

    def score(self, timestamp: dt.datetime, value: float) -> float:
        return self.bank.score_value(_KEY, _ms(timestamp), value)


class _BankAlerts:
    def __init__(self) -> None:
        self.bank = AnomalyDetectorBank()

    def score(self, timestamp: dt.datetime, value: float) -> float:
        found = self.bank.update_value(_KEY, _ms(timestamp), value)
        return max((a.score for a in found), default=0.0)


def bank_score() -> _BankScore:
    return _BankScore()


def bank_alerts() -> _BankAlerts:
    return _BankAlerts()
