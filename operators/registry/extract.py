"""What the registry step takes from a batch's event columns: registry events, compliance facts,
and the violation and audit records of the governance feeds.

Runs per batch on the shard's worker; a batch without registry, policy or governance events
(every telemetry partition's) costs one set() over its source column. Only those events are
looked at one by one, and only their payloads are decoded again.
"""
from __future__ import annotations

from typing import Union

import msgspec
import numpy as np

from operators.windows.extract import COMPLIANCE_TYPES, COMPLIANT, VIOLATION_TYPES
from schemas.assets import RegistryChange
from schemas.events import EVENT_TYPES
from schemas.feeds import AuditEntry, ViolationReport
from schemas.items import ComplianceFacts, GovernanceBatch
from schemas.payloads.registry import AssetPayload
from schemas.rows import COLUMN_NAMES

_COL = {name: i for i, name in enumerate(COLUMN_NAMES)}
SOURCES = frozenset(("registry", "policy", "governance"))
REGISTRY_TYPES = frozenset(t for t, p in EVENT_TYPES.items() if issubclass(p, AssetPayload))
AUDIT_TYPES = frozenset(("governance.audit", "audit.logged"))
_registry = msgspec.json.Decoder(Union[tuple(EVENT_TYPES[t] for t in sorted(REGISTRY_TYPES))])  # type: ignore[misc]
_plain = msgspec.json.Decoder(dict)


def governance_batch(columns: list[list] | None, violations: bool = False, audit: bool = False
                     ) -> GovernanceBatch | None:
    """Registry events and compliance facts of a batch (and violation/audit records when their
    feeds are on); None when the batch has none.

    >>> from operators.shard.columns import to_columns
    >>> from schemas.events import PolicyEvaluated, ViolationDetected, AssetRegistered, LlmRequest, new_event
    >>> events = [new_event("r1", 5, AssetRegistered(asset_id="m-1", asset_name="gpt-4o", owner="ml")),
    ...           new_event("p1", 6, PolicyEvaluated(policy_id="pol", decision="denied", model="gpt-4o")),
    ...           new_event("v1", 7, ViolationDetected(policy_id="pol", violation_type="pii", asset_id="m-1"),
    ...                     severity="high", tags={"team": "a"}),
    ...           new_event("t1", 8, LlmRequest(model="gpt-4o", latency_ms=1.0))]
    >>> g = governance_batch(to_columns(events), violations=True)
    >>> [c.payload.owner for c in g.registry], g.facts.kind, g.facts.asset, [v.violation_type for v in g.violations]
    (['ml'], [0, 2], ['gpt-4o', 'm-1'], ['pii'])
    """
    if columns is None:
        return None
    source = columns[_COL["source"]]
    if not SOURCES.intersection(source):
        return None
    src = np.array(source, dtype=object)
    rows = np.flatnonzero((src == "registry") | (src == "policy") | (src == "governance")).tolist()
    col = {name: columns[i] for name, i in _COL.items()}
    etype, times, payload = col["event_type"], col["event_time"], col["payload"]
    out = GovernanceBatch(registry=[], violations=[], audit=[])
    facts = ComplianceFacts([], [], [], [], [], [])
    for i in rows:
        t = etype[i]
        if t in REGISTRY_TYPES:
            out.registry.append(RegistryChange(event_id=col["event_id"][i], time_ms=times[i], event_type=t,
                                               payload=_registry.decode(payload[i])))
            continue
        if t in COMPLIANCE_TYPES:
            kind = 1 if col["outcome"][i].lower() in COMPLIANT else 0
        elif t in VIOLATION_TYPES:
            kind = 2
            if violations:
                out.violations.append(_violation(col, i))
        else:
            if audit and t in AUDIT_TYPES:
                out.audit.append(_audit(col, i))
            continue
        facts.time_ms.append(times[i])
        facts.kind.append(kind)
        facts.asset.append(col["asset_id"][i] or col["model"][i])
        facts.team.append(col["team"][i])
        facts.violation_type.append(col["category"][i])
        facts.severity.append(col["severity"][i])
    if facts.time_ms:
        out.facts = facts
    if not (out.registry or out.facts or out.violations or out.audit):
        return None
    return out


def _violation(col: dict[str, list], i: int) -> ViolationReport:
    p = _plain.decode(col["payload"][i])
    return ViolationReport(
        id=col["event_id"][i], time_ms=col["event_time"][i], source=col["source"][i], event_type=col["event_type"][i],
        policy_id=col["policy_id"][i], violation_id=p.get("violation_id", ""), violation_type=col["category"][i],
        severity=col["severity"][i], asset_id=col["asset_id"][i], model=col["model"][i], team=col["team"][i],
        user_id=p.get("user_id", ""), action_taken=p.get("action_taken", ""), description=p.get("description", ""),
        correlation_id=col["correlation_id"][i])


def _audit(col: dict[str, list], i: int) -> AuditEntry:
    p = _plain.decode(col["payload"][i])
    return AuditEntry(
        id=col["event_id"][i], time_ms=col["event_time"][i], source=col["source"][i], event_type=col["event_type"][i],
        actor=p.get("actor", ""), action=p.get("action", ""), resource=p.get("resource_id") or p.get("resource", ""),
        resource_type=p.get("resource_type", ""), outcome=p.get("outcome", ""), policy_id=p.get("policy_id", ""),
        details=p.get("details", {}), correlation_id=col["correlation_id"][i])
