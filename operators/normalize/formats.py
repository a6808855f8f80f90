"""What each accepted wire format looks like: how to tell them apart and how they name things.

Three formats arrive, often interleaved in one topic: the hub envelope (snake_case), the
integration note's base event schema (camelCase, `data` + `metadata`) and OTLP traces (JSON
or protobuf). Producers write a fixed key order, so the first JSON key names the format;
anything else falls back to probing for a key that only one envelope has.
"""
from __future__ import annotations

import re
from typing import Any

from schemas.events import UNIT_FIELDS

FIRST_KEY_FORMAT: dict[bytes, str] = {
    **{k.encode(): "hub" for k in ("event_id", "event_type", "event_time", "schema_version", "correlation_id",
                                   "parent_event_id", "severity", "environment", "region", "tags", "payload")},
    **{k.encode(): "base" for k in ("eventId", "eventType", "timestamp", "version", "data", "metadata")},
    b"resourceSpans": "otlp_json",
}
_PROBES = ((b'"resourceSpans"', "otlp_json"), (b'"eventType"', "base"), (b'"event_type"', "hub"))
# The tag key of each JSON envelope, and the fields whose errors may mean the probe guessed wrong.
TAG_KEYS = {"hub": b'"event_type"', "base": b'"eventType"'}
TAG_FIELDS = ("event_type", "eventType", "")

# base-format metadata key -> the envelope field it fills (any other key becomes a tag)
BASE_METADATA = {
    "region": "region", "environment": "environment", "env": "environment",
    "correlationId": "correlation_id", "correlation_id": "correlation_id", "traceId": "correlation_id",
    "parentEventId": "parent_event_id", "parent_event_id": "parent_event_id",
    "severity": "severity", "level": "severity",
}


def detect_format(v: bytes) -> str | None:
    """Wire format of one message from its first JSON key (or first byte for protobuf).

    >>> detect_format(b'{"event_id": "e1", "event_type": "telemetry.request"}')
    'hub'
    >>> detect_format(b'{"eventId": "e1", "eventType": "llm.request"}')
    'base'
    >>> detect_format(b' {"resourceSpans": []}'), detect_format(b"\\n\\x00"), detect_format(b"[1]")
    ('otlp_json', 'otlp_proto', None)
    """
    if not v:
        return None
    c = v[0]
    if c == 0x7B:  # "{"
        i = 1
    elif c == 0x0A:  # protobuf field 1 (resource_spans), length-delimited
        return "otlp_proto"
    else:
        s = v.lstrip()
        if s[:1] != b"{":
            return None
        i = len(v) - len(s) + 1
    n = len(v)
    while i < n and v[i] in b" \t\r\n":
        i += 1
    if i < n and v[i] == 0x22:
        j = v.find(b'"', i + 1)
        fmt = FIRST_KEY_FORMAT.get(v[i + 1:j]) if j > 0 else None
        if fmt is not None:
            return fmt
    for probe, fmt in _PROBES:
        if probe in v:
            return fmt
    return None


def obj_id(obj: dict[str, Any], fmt: str) -> str:
    """The event id of an untyped JSON envelope, so its dead letter can name the event."""
    v = obj.get("event_id" if fmt == "hub" else "eventId")
    return v if type(v) is str else ""


def camel(name: str) -> str:
    """snake_case field name -> the base format's camelCase."""
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def camel_path(message: str) -> str:
    """Rewrite the `$.snake_name` path of a msgspec message into the base format's camelCase."""
    return re.sub(r"`\$([^`]*)`", lambda mt: "`$" + ".".join(camel(p) for p in mt.group(1).split(".")) + "`",
                  message)


# payload class -> ((field, unit kind, camelCase wire name), ...) for the base format's unit strings
BASE_UNIT_FIELDS: dict[type, tuple[tuple[str, str, str], ...]] = {
    cls: tuple((f, u, camel(f)) for f, u in fields.items() if u != "money") for cls, fields in UNIT_FIELDS.items()
}
