"""Why an input became a dead letter: stable reason codes and sentences a human can act on.

Dashboards and the dead_letters table group by the codes, so they never change meaning; the
sentences come from msgspec's validation messages, rewritten to name the field and the rule.
"""
from __future__ import annotations

import re

from schemas.raw import DeadLetter

MALFORMED_JSON = "malformed_json"
MALFORMED_PROTOBUF = "malformed_protobuf"
UNKNOWN_FORMAT = "unknown_format"
UNKNOWN_EVENT_TYPE = "unknown_event_type"
UNKNOWN_SOURCE = "unknown_source"
MISSING_FIELD = "missing_field"
INVALID_FIELD = "invalid_field"
NEGATIVE_VALUE = "negative_value"
IMPOSSIBLE_TIMESTAMP = "impossible_timestamp"
INTERNAL_ERROR = "internal_error"
# Past a [normalization.limits] size or range: too big to be true.
OVERSIZED = "oversized"
REASON_CODES = (MALFORMED_JSON, MALFORMED_PROTOBUF, UNKNOWN_FORMAT, UNKNOWN_EVENT_TYPE, UNKNOWN_SOURCE,
                MISSING_FIELD, INVALID_FIELD, NEGATIVE_VALUE, IMPOSSIBLE_TIMESTAMP, INTERNAL_ERROR, OVERSIZED)

# A msgspec validation message: "<what> - at `$.<path>`"; lenient fixes parse the same shape.
AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
MISSING = re.compile(r"^Object missing required field `(?P<name>[^`]*)`")
_INVALID_TAG = re.compile(r"^Invalid value '(?P<value>.*)'$", re.S)


class Reject(Exception):
    """One input can't become an event; carries the dead-letter code, field and reason.

    Raised deep in a rule, caught once per message, so rules need not return verdicts.
    """

    def __init__(self, code: str, field: str, reason: str) -> None:
        self.code, self.field, self.reason = code, field, reason


def explain(message: str, fmt: str, prefix: str = "") -> tuple[str, str, str]:
    """msgspec validation message -> (reason code, field path, sentence for a human).

    >>> explain("Object missing required field `model` - at `$.payload`", "hub")
    ('missing_field', 'payload.model', "required field 'payload.model' is missing")
    >>> explain("Expected `int` >= 0 - at `$.payload.input_tokens`", "hub")[:2]
    ('negative_value', 'payload.input_tokens')
    """
    mt = AT.match(message)
    msg = mt.group("msg") if mt else message
    path = (mt.group("path") or "") if mt else ""
    path = path[1:] if path.startswith(".") else path
    if prefix:
        path = f"{prefix}.{path}" if path else prefix
    miss = MISSING.match(msg)
    if miss:
        field = f"{path}.{miss.group('name')}" if path else miss.group("name")
        if field in ("event_type", "eventType"):
            return MISSING_FIELD, field, f"required field '{field}' is missing (it says which kind of event this is)"
        return MISSING_FIELD, field, f"required field '{field}' is missing"
    inv = _INVALID_TAG.match(msg)
    if inv and path in ("event_type", "eventType"):
        return UNKNOWN_EVENT_TYPE, path, (f"unknown event type '{inv.group('value')[:80]}'; accepted types are "
                                          f"published by `hub schema export`")
    if msg.startswith("Expected `") and (">= 0" in msg) and "<=" not in msg:
        return NEGATIVE_VALUE, path, f"'{path}' must not be negative"
    if not path and msg.startswith("Expected `object`"):
        return UNKNOWN_FORMAT, "", f"message is not a JSON object ({msg[0].lower()}{msg[1:]})"
    if msg.startswith("Invalid enum value"):
        return INVALID_FIELD, path, f"'{path}': {msg[0].lower()}{msg[1:]} (not one of the allowed values)"
    where = f"'{path}': " if path else ""
    return INVALID_FIELD, path, f"{where}{msg[0].lower()}{msg[1:]}" if msg else f"{where}invalid value"


def reason_code(dead_letter: DeadLetter) -> str:
    """The short code of a dead letter (kept for callers written against older letters).

    >>> reason_code(DeadLetter(raw=b"{", reason="message is not valid JSON", code="malformed_json"))
    'malformed_json'
    """
    return dead_letter.code
