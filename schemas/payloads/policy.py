"""Policy-engine payloads (LLM-Policy-Engine): evaluations, violations, verifications, policy changes, audit."""
from __future__ import annotations

from typing import ClassVar, Literal

from schemas.payloads.base import Payload
from schemas.scalars import Count, DurationMs, Ratio


class PolicyEvaluated(Payload, tag="policy.evaluated"):
    """A policy decision on a request; `decision` is allowed, denied or warned."""

    SOURCE: ClassVar[str] = "policy"
    policy_id: str
    decision: Literal["allowed", "denied", "warned"]
    evaluation_id: str = ""
    policy_name: str = ""
    asset_id: str = ""
    model: str = ""
    user_id: str = ""
    evaluation_ms: DurationMs | None = None
    rules_evaluated: Count | None = None


class ViolationDetected(Payload, tag="violation.detected"):
    """The policy engine found a violation."""

    SOURCE: ClassVar[str] = "policy"
    policy_id: str
    violation_id: str = ""
    violation_type: str = ""
    asset_id: str = ""
    model: str = ""
    user_id: str = ""
    action_taken: str = ""
    description: str = ""


class ComplianceVerified(Payload, tag="compliance.verified"):
    """A request or asset was verified compliant with a policy."""

    SOURCE: ClassVar[str] = "policy"
    policy_id: str
    evaluation_id: str = ""
    asset_id: str = ""
    model: str = ""
    framework: str = ""
    compliance_rate: Ratio | None = None
    description: str = ""


class PolicyUpdated(Payload, tag="policy.updated"):
    """A policy was created, changed or deleted."""

    SOURCE: ClassVar[str] = "policy"
    policy_id: str
    change_type: Literal["created", "updated", "deleted"] = "updated"
    policy_name: str = ""
    policy_type: str = ""
    version: str = ""
    enforcement_mode: str = ""
    changed_by: str = ""


class AuditLogged(Payload, tag="audit.logged"):
    """An audit record written by the policy engine."""

    SOURCE: ClassVar[str] = "policy"
    actor: str
    action: str
    audit_id: str = ""
    resource: str = ""
    outcome: str = ""
    policy_id: str = ""
    details: dict[str, str] = {}
