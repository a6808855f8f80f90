"""Value rules a type can't say: times to UTC epoch ms, unit strings, counts, versions, severities.

Each rule either returns the canonical value or raises `Reject` naming the field, so the
envelope code stays a straight line of calls.
"""
from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone
from typing import Any

import msgspec

from operators.normalize.batch import Batch
from operators.normalize.reasons import IMPOSSIBLE_TIMESTAMP, INVALID_FIELD, NEGATIVE_VALUE, Reject
from schemas.events import DEFAULT_SEVERITY, SCHEMA_VERSION, SEMVER_PATTERN, LlmRequest, Payload
from schemas.scalars import MAX_COUNT, MAX_MAGNITUDE
from schemas.vocabulary import SEVERITIES, SEVERITY_ALIASES

MS_LO, MS_HI = 100_000_000_000, 100_000_000_000_000  # epoch ms for 1973..5138
SEVERITY_SET = frozenset(SEVERITIES)
# Versions seen valid (grows up to 1024 entries), so the regex runs once per version.
KNOWN_VERSIONS: set[str] = {SCHEMA_VERSION}
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_MS = timedelta(milliseconds=1)
_NUMERIC = re.compile(r"^[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?$")
_SEMVER = re.compile(SEMVER_PATTERN)
_LOOSE_SEMVER = re.compile(r"^[vV]?(\d+)(?:\.(\d+))?(?:\.(\d+))?$")
_UNIT_VALUE = re.compile(r"^\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-zµ/_ ]*?)\s*$")

DURATION_UNITS: dict[str, float] = {
    "": 1.0, "ms": 1.0, "msec": 1.0, "millisecond": 1.0, "milliseconds": 1.0,
    "ns": 1e-6, "nanosecond": 1e-6, "nanoseconds": 1e-6,
    "us": 1e-3, "µs": 1e-3, "microsecond": 1e-3, "microseconds": 1e-3,
    "s": 1000.0, "sec": 1000.0, "secs": 1000.0, "second": 1000.0, "seconds": 1000.0,
    "m": 60_000.0, "min": 60_000.0, "mins": 60_000.0, "minute": 60_000.0, "minutes": 60_000.0,
    "h": 3_600_000.0, "hr": 3_600_000.0, "hrs": 3_600_000.0, "hour": 3_600_000.0, "hours": 3_600_000.0,
}
SIZE_UNITS: dict[str, float] = {  # KB = 1024 B, as the integration note's converter defines it
    "": 1.0, "b": 1.0, "byte": 1.0, "bytes": 1.0,
    "kb": 1024.0, "kib": 1024.0, "k": 1024.0,
    "mb": 1024.0**2, "mib": 1024.0**2, "m": 1024.0**2,
    "gb": 1024.0**3, "gib": 1024.0**3, "g": 1024.0**3,
    "tb": 1024.0**4, "tib": 1024.0**4, "t": 1024.0**4,
}
RATE_UNITS: dict[str, float] = {
    "": 1.0, "/s": 1.0, "/sec": 1.0, "/second": 1.0, "per_second": 1.0, "rps": 1.0, "tps": 1.0,
    "/min": 1 / 60, "/minute": 1 / 60, "per_minute": 1 / 60, "rpm": 1 / 60, "tpm": 1 / 60,
    "/h": 1 / 3600, "/hr": 1 / 3600, "/hour": 1 / 3600, "per_hour": 1 / 3600,
}
_UNIT_TABLES = {"duration": DURATION_UNITS, "size": SIZE_UNITS, "rate": RATE_UNITS}


# --- times ----------------------------------------------------------------------------------------


def epoch_to_ms(value: Any, field: str = "event_time") -> int:
    """Epoch number in s, ms, us or ns (told apart by magnitude) -> epoch ms, floored.

    >>> epoch_to_ms(1_700_000_000), epoch_to_ms(1_700_000_000_123), epoch_to_ms(1_700_000_000_123_456_789)
    (1700000000000, 1700000000123, 1700000000123)
    >>> try:
    ...     epoch_to_ms(-5)
    ... except Reject as r:
    ...     print(r.code, r.field)
    impossible_timestamp event_time
    """
    if type(value) is bool or not isinstance(value, (int, float)) or not (0 < value < 9.3e18):
        raise Reject(IMPOSSIBLE_TIMESTAMP, field, f"{field} {str(value)[:40]} is not a plausible epoch time")
    if value < 1e11:  # seconds (up to year 5138)
        return math.floor(value * 1000 + 1e-3) if type(value) is float else value * 1000
    if value < 1e14:  # milliseconds
        return math.floor(value) if type(value) is float else value
    if value < 1e17:  # microseconds
        return int(value // 1000)
    return int(value // 1_000_000)  # nanoseconds


def time_ms(value: Any, field: str, lenient: bool, st: Batch) -> int:
    """Any accepted time value -> epoch ms UTC (before skew correction)."""
    if type(value) is str:
        s = value.strip()
        if s[4:5] != "-" and _NUMERIC.match(s):  # "YYYY-..." is never a number
            value = float(s) if ("." in s or "e" in s or "E" in s) else int(s)
        else:
            try:
                dt = datetime.fromisoformat(s)
            except ValueError:
                raise Reject(INVALID_FIELD, field, f"{field} '{value[:64]}' is neither an ISO-8601 date-time "
                             "nor an epoch number") from None
            if dt.tzinfo is None:
                if not lenient:
                    raise Reject(INVALID_FIELD, field, f"{field} '{value[:64]}' has no UTC offset; add 'Z' or "
                                 "'+HH:MM' (lenient mode assumes UTC)")
                st.warn("timestamp_assumed_utc")
                dt = dt.replace(tzinfo=timezone.utc)
            try:
                return (dt - _EPOCH) // _ONE_MS
            except OverflowError:
                raise Reject(IMPOSSIBLE_TIMESTAMP, field, f"{field} '{value[:64]}' is out of range") from None
    return epoch_to_ms(value, field)


def check_time_range(ms: int, field: str, st: Batch) -> None:
    """Reject an event time outside the batch's plausible range (callers test the range first)."""
    if ms > st.hi:
        raise Reject(IMPOSSIBLE_TIMESTAMP, field, f"{field} {_iso(ms)} is {(ms - st.ref) / 1000:.0f}s in the "
                     f"future (allowed: {st.max_future // 1000}s)")
    if ms < st.lo:
        raise Reject(IMPOSSIBLE_TIMESTAMP, field, f"{field} {_iso(ms)} is older than the oldest allowed "
                     f"event age ({st.max_age // 86_400_000} days)")


def _iso(ms: int) -> str:
    try:
        return (_EPOCH + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    except OverflowError:
        return str(ms)


def nanos(value: int | str, field: str) -> int:
    """OTLP nanosecond timestamp (an int64 string in OTLP/JSON) -> int."""
    if type(value) is int:
        return value
    try:
        return int(value)
    except (TypeError, ValueError):
        raise Reject(INVALID_FIELD, field, f"{field} '{str(value)[:40]}' is not an integer of nanoseconds") from None


# --- units ----------------------------------------------------------------------------------------


def parse_unit(value: str, unit: str, field: str) -> float:
    """'1.5s' -> 1500.0 (duration, ms); '2KB' -> 2048.0 (size, bytes); '120/min' -> 2.0 (rate, /s).

    >>> parse_unit("1.5s", "duration", "latency"), parse_unit("2KB", "size", "memory")
    (1500.0, 2048.0)
    >>> parse_unit("120 rpm", "rate", "throughput")
    2.0
    >>> try:
    ...     parse_unit("3 parsecs", "duration", "latency")
    ... except Reject as r:
    ...     print(r.code, r.field)
    invalid_field latency
    """
    mt = _UNIT_VALUE.match(value)
    if not mt:
        raise Reject(INVALID_FIELD, field, f"'{field}' value '{value[:40]}' is not a number with a {unit} unit")
    number = float(mt.group(1))
    suffix = mt.group(2).replace(" ", "").lower()
    table = _UNIT_TABLES[unit]
    factor = table.get(suffix)
    if factor is None and unit == "rate" and not suffix.startswith("/"):
        factor = table.get("/" + suffix)
    if factor is None:
        raise Reject(INVALID_FIELD, field, f"'{field}' has unknown {unit} unit '{mt.group(2)}' "
                     f"(known: {', '.join(k for k in table if k)})")
    if number < 0:
        raise Reject(NEGATIVE_VALUE, field, f"'{field}' must not be negative")
    out = number * factor
    if not out <= UNIT_CAP[unit]:  # also inf and NaN
        raise Reject(INVALID_FIELD, field, f"'{field}' value '{value[:40]}' is out of range")
    return out


# The schema's bounds for a canonical value of each unit: what a converted wire value must meet.
UNIT_CAP = {"duration": MAX_MAGNITUDE, "rate": MAX_MAGNITUDE, "size": 2**63 - 1}


def convert_unit_strings(data: Any, fields: tuple[tuple[str, str, str], ...], prefix: str) -> None:
    """Base-format unit strings ('1.5s', '2GB', '120/min') -> canonical numbers, in place."""
    for name, unit, label in fields:
        v = getattr(data, name)
        if v is None:
            continue
        if type(v) is str:
            v = parse_unit(v, unit, prefix + label)
        elif not 0 <= v <= UNIT_CAP[unit]:  # a plain number skips the schema's bounds: check them here
            raise Reject(NEGATIVE_VALUE if v < 0 else INVALID_FIELD, prefix + label,
                         f"'{prefix + label}' must be between 0 and {UNIT_CAP[unit]:.0e} {unit} units, got {v!r:.40}")
        elif unit != "size":
            continue
        if unit == "size":
            v = int(round(v))
        setattr(data, name, v)


# --- counts, versions, severities -------------------------------------------------------------------


def count(value: Any, key: str, lenient: bool, st: Batch) -> int | None:
    """A token count from an OTLP attribute: a non-negative int64 (lenient: an integral float)."""
    if value is None:
        return None
    if type(value) is int:
        if value < 0:
            raise Reject(NEGATIVE_VALUE, key, f"token count '{key}' must not be negative (got {value})")
        if value > MAX_COUNT:
            raise Reject(INVALID_FIELD, key, f"token count '{key}' is implausibly large ({str(value)[:30]})")
        return value
    if type(value) is float and value.is_integer() and lenient:
        st.warn("integral_float")
        return count(int(value), key, lenient, st)
    raise Reject(INVALID_FIELD, key, f"token count '{key}' must be an integer, got {json_kind(value)}")


def check_version(version: str, field: str, lenient: bool, st: Batch) -> str:
    """Semantic version check (cached for versions seen valid); lenient pads '1.2' / 'v1.2.3'."""
    if _SEMVER.match(version):
        if len(KNOWN_VERSIONS) < 1024:
            KNOWN_VERSIONS.add(version)
        return version
    loose = _LOOSE_SEMVER.match(version.strip())
    if lenient and loose:
        st.warn("padded_schema_version")
        return ".".join(g or "0" for g in loose.groups())
    raise Reject(INVALID_FIELD, field, f"{field} '{version[:40]}' is not a semantic version (MAJOR.MINOR.PATCH)")


def canonical_severity(given: str, payload: Payload) -> str:
    """A severity level or alias ('warning', 'ERROR'...) -> canonical level; none given -> the
    payload's default."""
    if not given:
        if type(payload) is LlmRequest and payload.is_error:
            return "high"
        return DEFAULT_SEVERITY[type(payload)]
    sev = SEVERITY_ALIASES.get(given) or SEVERITY_ALIASES.get(given.strip().lower())
    if sev is None:
        raise Reject(INVALID_FIELD, "severity", f"severity '{given[:64]}' is not a known level; use one of "
                     f"{', '.join(SEVERITIES)} (or trace, warning, error, fatal...)")
    return sev


# --- strings --------------------------------------------------------------------------------------


def text(value: Any) -> str:
    """An optional attribute value as a string field ("" when absent)."""
    if value is None:
        return ""
    return value if type(value) is str else tag_str(value)


def tag_str(value: Any) -> str:
    """A scalar or structure as a tag value: JSON spelling for booleans and structures."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    return msgspec.json.encode(value).decode()


def json_kind(value: Any) -> str:
    """The JSON name of a decoded value's kind, for messages."""
    return {dict: "object", list: "array", str: "string", int: "integer", float: "number", bool: "boolean",
            type(None): "null"}.get(type(value), type(value).__name__)
