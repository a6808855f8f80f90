"""What each accepted wire format looks like: how to tell them apart and how they name things.

Formats arrive, often interleaved in one topic: the hub envelope (snake_case), the
integration note's base event schema (camelCase, `data` + `metadata`) and OTLP traces, metrics
or logs (JSON or protobuf). Producers write a fixed key order, so the first JSON key names the
format (`resourceSpans` / `resourceMetrics` / `resourceLogs` for OTLP/JSON); anything else falls
back to probing for a key that only one envelope has.

OTLP protobuf requests all start with the same wire tag (field 1, the repeated resource_*), so
the bytes' first tag cannot tell traces, metrics and logs apart. Pin the topic's
`wire_format` (`otlp_proto`, `otlp_metrics_proto`, `otlp_logs_proto`) to skip guessing; in
`auto`, `proto_kind` walks to the first span / metric / log record and judges it by fields only
one of them has (a span's fixed64 start/end times at fields 7/8 or varint kind at 6, a log
record's fixed64 times at fields 1/11 or varint severity at 2, a metric's length-delimited data
at fields 5/7/9/10/11). A message it cannot place (no such field, or no element at all) is taken
for traces, as before metrics and logs were accepted. The probe costs ~3 µs per message (a
3-span trace message takes ~60 µs to normalize); a pinned topic does not pay it.
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
    b"resourceMetrics": "otlp_metrics_json",
    b"resourceLogs": "otlp_logs_json",
}
_PROBES = ((b'"resourceSpans"', "otlp_json"), (b'"resourceMetrics"', "otlp_metrics_json"),
           (b'"resourceLogs"', "otlp_logs_json"), (b'"eventType"', "base"), (b'"event_type"', "hub"))
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
    >>> detect_format(b'{"resourceMetrics": []}'), detect_format(b'{"resourceLogs": []}')
    ('otlp_metrics_json', 'otlp_logs_json')
    """
    if not v:
        return None
    c = v[0]
    if c == 0x7B:  # "{"
        i = 1
    elif c == 0x0A:  # protobuf field 1 (resource_spans / _metrics / _logs), length-delimited
        return proto_kind(v)
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


# (field number, wire type) of a Span, a Metric or a LogRecord that the other two never have.
_PROTO_MARKS = {(4, 2): "otlp_proto", (7, 1): "otlp_proto", (8, 1): "otlp_proto", (6, 0): "otlp_proto", (15, 2): "otlp_proto",
                (1, 1): "otlp_logs_proto", (11, 1): "otlp_logs_proto", (2, 0): "otlp_logs_proto",
                (6, 2): "otlp_logs_proto", (8, 5): "otlp_logs_proto",
                (5, 2): "otlp_metrics_proto", (7, 2): "otlp_metrics_proto", (9, 2): "otlp_metrics_proto",
                (10, 2): "otlp_metrics_proto", (11, 2): "otlp_metrics_proto"}
# Fields 5, 9, 10 and 11 are length-delimited in a span or a log record too (name, attributes,
# span id, events), so they say "metric" only when no decisive field shows up in the element.
_WEAK = frozenset(((5, 2), (9, 2), (10, 2), (11, 2)))


def _varint_rest(v: bytes, i: int, first: int) -> tuple[int, int]:
    """A varint whose first byte (`first`, already read) has its continuation bit set."""
    x, shift = first & 0x7F, 7
    while True:
        c = v[i]
        i += 1
        x |= (c & 0x7F) << shift
        if c < 0x80:
            return x, i
        shift += 7


def _fields(v: bytes, i: int, end: int):
    """(field number, wire type, payload start, payload end) of each field in v[i:end]; stops at
    anything that is not well-formed protobuf (IndexError past the end of v)."""
    while i < end:
        key = v[i]
        i += 1
        if key > 0x7F:  # one-byte varints inline: the common case, and the probe is on the hot path
            key, i = _varint_rest(v, i, key)
        wt = key & 7
        if wt == 2:
            n = v[i]
            i += 1
            if n > 0x7F:
                n, i = _varint_rest(v, i, n)
            j = i + n
        elif wt == 0:
            j = i
            while v[j] > 0x7F:
                j += 1
            j += 1
        elif wt == 1:
            j = i + 8
        elif wt == 5:
            j = i + 4
        else:
            return
        if j > end:
            return
        yield key >> 3, wt, i, j
        i = j


def _first(v: bytes, i: int, end: int, number: int) -> tuple[int, int] | None:
    for f, wt, a, b in _fields(v, i, end):
        if f == number and wt == 2:
            return a, b
    return None


def proto_kind(v: bytes) -> str:
    """Which OTLP request a protobuf message is, from its first span / metric / log record.

    >>> span = b"\\x0a\\x10" + bytes(16) + b"\\x39" + bytes(8)   # trace_id, start_time_unix_nano
    >>> metric = b"\\x0a\\x01m\\x4a\\x00"                       # name, histogram
    >>> log = b"\\x59" + bytes(8)                                 # observed_time_unix_nano
    >>> wrap = lambda el: (lambda s: b"\\x0a" + bytes([len(s)]) + s)(b"\\x12" + bytes([len(el) + 2]) + b"\\x12"
    ...                                                        + bytes([len(el)]) + el)
    >>> proto_kind(wrap(span)), proto_kind(wrap(metric)), proto_kind(wrap(log)), proto_kind(b"\\n\\x00")
    ('otlp_proto', 'otlp_metrics_proto', 'otlp_logs_proto', 'otlp_proto')
    """
    try:
        span = _first(v, 0, len(v), 1)  # the first resource_*
        scope = span and _first(v, span[0], span[1], 2)  # its first scope_*
        element = scope and _first(v, scope[0], scope[1], 2)  # its first span / metric / log record
        if not element:
            return "otlp_proto"
        weak = None
        for f, wt, _, _ in _fields(v, element[0], element[1]):
            kind = _PROTO_MARKS.get((f, wt))
            if kind is not None:
                if (f, wt) not in _WEAK:
                    return kind
                weak = weak or kind
        return weak or "otlp_proto"
    except IndexError:
        return "otlp_proto"


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
