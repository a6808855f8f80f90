"""Governance payloads (LLM-Governance-Dashboard): policy violations, audit trail, compliance checks, lineage."""
from __future__ import annotations

from typing import ClassVar

from schemas.payloads.base import Payload
from schemas.scalars import Count, Ratio, SizeBytes


class GovernanceViolation(Payload, tag="governance.violation"):
    """A governance policy was violated."""

    SOURCE: ClassVar[str] = "governance"
    policy_id: str
    violation_id: str = ""
    policy_name: str = ""
    rule_id: str = ""
    violation_type: str = ""
    asset_id: str = ""
    model: str = ""
    user_id: str = ""
    action_taken: str = ""
    description: str = ""


class AuditTrail(Payload, tag="governance.audit"):
    """Who did what to which resource, for the audit trail."""

    SOURCE: ClassVar[str] = "governance"
    actor: str
    action: str
    audit_id: str = ""
    resource_type: str = ""
    resource_id: str = ""
    outcome: str = "success"
    ip: str = ""
    details: dict[str, str] = {}


class ComplianceCheck(Payload, tag="governance.compliance"):
    """A compliance control was checked; `passed` says how it went."""

    SOURCE: ClassVar[str] = "governance"
    framework: str
    passed: bool
    check_id: str = ""
    control_id: str = ""
    asset_id: str = ""
    model: str = ""
    score: Ratio | None = None
    findings: Count | None = None
    description: str = ""


class DataLineage(Payload, tag="governance.lineage"):
    """Data moved between assets (dataset -> fine-tune -> model), for lineage graphs."""

    SOURCE: ClassVar[str] = "governance"
    source_asset_id: str
    target_asset_id: str
    lineage_id: str = ""
    operation: str = ""
    pipeline_id: str = ""
    records: Count | None = None
    size_bytes: SizeBytes | None = None
    contains_pii: bool | None = None
