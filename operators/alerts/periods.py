"""Budget periods (day, week from Monday, month) as epoch-ms bounds in a time zone.

Boundaries are local midnights, so a day in a zone with daylight saving time is 23 or 25 hours
long on the switch days; spend is assigned to the period its minute falls in.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _midnight(d: date, zone: ZoneInfo) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=zone).timestamp() * 1000)


@lru_cache(maxsize=4096)
def period_bounds(ms: int, period: str, timezone: str) -> tuple[int, int]:
    """[start, end) in epoch ms of the period holding `ms` (cached: called per minute, not per event).

    >>> day = period_bounds(1_764_547_200_000, "day", "UTC")   # 2025-12-01T00:00Z
    >>> day == (1_764_547_200_000, 1_764_547_200_000 + 86_400_000)
    True
    >>> start, end = period_bounds(1_764_547_200_000, "day", "America/New_York")   # 19:00 the day before
    >>> datetime.fromtimestamp(start / 1000, ZoneInfo("America/New_York")).isoformat()
    '2025-11-30T00:00:00-05:00'
    >>> start, end = period_bounds(1_761_436_800_000, "day", "Europe/Berlin")   # 2025-10-26, 25 hours
    >>> (end - start) / 3_600_000
    25.0
    >>> [datetime.fromtimestamp(b / 1000, ZoneInfo("UTC")).date().isoformat()
    ...  for b in period_bounds(1_764_547_200_000, "week", "UTC") + period_bounds(1_764_547_200_000, "month", "UTC")]
    ['2025-12-01', '2025-12-08', '2025-12-01', '2026-01-01']
    """
    zone = _zone(timezone)
    local = datetime.fromtimestamp(ms / 1000, zone).date()
    if period == "day":
        first, after = local, local + timedelta(days=1)
    elif period == "week":
        first = local - timedelta(days=local.weekday())
        after = first + timedelta(days=7)
    else:
        first = local.replace(day=1)
        after = (first + timedelta(days=32)).replace(day=1)
    return _midnight(first, zone), _midnight(after, zone)


def period_label(start_ms: int, timezone: str) -> str:
    """The local date a period starts on, for alert labels and messages.

    >>> period_label(1_764_547_200_000, "Asia/Tokyo")
    '2025-12-01'
    """
    return datetime.fromtimestamp(start_ms / 1000, _zone(timezone)).date().isoformat()
