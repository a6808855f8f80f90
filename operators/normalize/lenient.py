"""The slow path's edits to an untyped JSON object: field mappings, and lenient mode's fixes.

Lenient mode fixes only what is unambiguous, one msgspec complaint at a time: enum spellings,
numbers that should be strings, integral floats, a missing id or time taken from the message
itself. Each fix is counted as a warning by the caller.
"""
from __future__ import annotations

import hashlib
import re
from typing import Any

from operators.normalize.reasons import AT, MISSING
from operators.normalize.values import tag_str
from schemas.raw import RawMessage

# Lenient mode maps these enum spellings (per field, snake_case name) onto the canonical value.
ENUM_ALIASES: dict[str, dict[str, str]] = {
    "decision": {"allow": "allowed", "permit": "allowed", "permitted": "allowed", "pass": "allowed",
                 "deny": "denied", "reject": "denied", "rejected": "denied", "block": "denied", "blocked": "denied",
                 "warn": "warned", "warning": "warned"},
    "outcome": {"succeeded": "success", "successful": "success", "ok": "success", "allowed": "success",
                "failed": "failure", "fail": "failure", "error": "failure", "denied": "failure"},
    "kind": {"authn": "authentication", "authz": "authorization", "auth": "authentication"},
    "action": {"detect": "detected", "redact": "redacted", "block": "blocked", "leak": "leaked"},
    "change_type": {"create": "created", "update": "updated", "delete": "deleted", "modified": "updated"},
}

_PATH_PART = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")


def fix(obj: dict[str, Any], message: str, m: RawMessage, now: int, fixes: list[str]) -> bool:
    """Fix, in place, the one problem msgspec reported if the fix is unambiguous; say if it did.

    >>> obj, fixes = {"payload": {"decision": "Deny"}}, []
    >>> fix(obj, "Invalid enum value 'Deny' - at `$.payload.decision`", RawMessage(b""), 0, fixes)
    True
    >>> obj["payload"]["decision"], fixes
    ('denied', ['enum_alias'])
    """
    mt = AT.match(message)
    if not mt:
        return False
    msg, path = mt.group("msg"), mt.group("path") or ""
    parts = [(a if a else (int(b) if b.isdigit() else b)) for a, b in _PATH_PART.findall(path)]
    parent: Any = obj
    for part in parts[:-1]:
        if part == "...":
            return False
        try:
            parent = parent[part]
        except (KeyError, IndexError, TypeError):
            return False
    miss = MISSING.match(msg)
    if miss:
        name = miss.group("name")
        if parts and parts[-1] != "...":
            try:
                parent = parent[parts[-1]]
            except (KeyError, IndexError, TypeError):
                return False
        if not isinstance(parent, dict):
            return False
        if not parts and name in ("event_id", "eventId"):
            parent[name] = "gen-" + hashlib.blake2b(m.value, digest_size=16).hexdigest()
            fixes.append("generated_event_id")
            return True
        if not parts and name in ("event_time", "timestamp"):
            parent[name] = m.timestamp_ms if m.timestamp_ms > 0 else now
            fixes.append("time_from_broker" if m.timestamp_ms > 0 else "time_from_ingest")
            return True
        return False
    if not parts:
        return False
    last = parts[-1]
    if last == "...":
        # a dict value (tags/metadata): stringify scalars that should have been strings
        if msg.startswith("Expected `str`") and isinstance(parent, dict):
            changed = False
            for k, v in parent.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    parent[k] = tag_str(v)
                    changed = True
            if changed:
                fixes.append("stringified_tag")
            return changed
        return False
    try:
        value = parent[last]
    except (KeyError, IndexError, TypeError):
        return False
    if msg.startswith("Invalid enum value") and type(value) is str:
        name = _snake(str(last))
        low = value.strip().lower()
        fixed = ENUM_ALIASES.get(name, {}).get(low, low)
        if fixed != value:
            parent[last] = fixed
            fixes.append("enum_alias")
            return True
        return False
    if msg.startswith("Expected `str`") and isinstance(value, (int, float)) and not isinstance(value, bool):
        parent[last] = tag_str(value)
        fixes.append("stringified_number")
        return True
    if msg.startswith("Expected `int`") and type(value) is float and value.is_integer():
        parent[last] = int(value)
        fixes.append("integral_float")
        return True
    return False


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def apply_mappings(obj: dict[str, Any], mappings: dict[str, str]) -> None:
    """Move values from source paths to canonical paths (both dotted), in place.

    >>> obj = {"data": {"modelName": "gpt-4o"}}
    >>> apply_mappings(obj, {"data.modelName": "data.model"})
    >>> obj
    {'data': {'model': 'gpt-4o'}}
    """
    for src, dst in mappings.items():
        parent: Any = obj
        *head, last = src.split(".")
        for part in head:
            parent = parent.get(part) if isinstance(parent, dict) else None
        if not isinstance(parent, dict) or last not in parent:
            continue
        value = parent.pop(last)
        node = obj
        *dhead, dlast = dst.split(".")
        for part in dhead:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[dlast] = value
