"""Security payloads (LLM-Sentinel): threats, vulnerabilities, compliance breaches, auth, privacy."""
from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from msgspec import Meta

from schemas.payloads.base import Payload
from schemas.scalars import Count, Ratio


class ThreatDetected(Payload, tag="security.threat"):
    """A detected attack or abuse (prompt injection, jailbreak, data exfiltration...)."""

    SOURCE: ClassVar[str] = "security"
    threat_type: str
    threat_id: str = ""
    model: str = ""
    asset_id: str = ""
    user_id: str = ""
    source_ip: str = ""
    confidence: Ratio | None = None
    action_taken: str = ""
    description: str = ""


class VulnerabilityFound(Payload, tag="security.vulnerability"):
    """A vulnerability in a model, dependency or endpoint."""

    SOURCE: ClassVar[str] = "security"
    vulnerability_id: str
    cve_id: str = ""
    component: str = ""
    asset_id: str = ""
    cvss_score: Annotated[float, Meta(ge=0, le=10)] | None = None
    status: str = "open"
    description: str = ""


class ComplianceViolation(Payload, tag="security.compliance"):
    """A breach of a compliance framework control (GDPR, SOC 2, HIPAA...) seen by Sentinel."""

    SOURCE: ClassVar[str] = "security"
    framework: str
    violation_id: str = ""
    control_id: str = ""
    asset_id: str = ""
    model: str = ""
    user_id: str = ""
    description: str = ""
    remediation: str = ""


class AuthDecision(Payload, tag="security.auth"):
    """An authentication or authorization decision."""

    SOURCE: ClassVar[str] = "security"
    kind: Literal["authentication", "authorization"]
    outcome: Literal["success", "failure"]
    user_id: str = ""
    method: str = ""
    resource: str = ""
    asset_id: str = ""
    source_ip: str = ""
    reason: str = ""


class PrivacyFinding(Payload, tag="security.privacy"):
    """Personal data detected, redacted, blocked or leaked in prompts or responses."""

    SOURCE: ClassVar[str] = "security"
    data_type: str
    action: Literal["detected", "redacted", "blocked", "leaked"] = "detected"
    model: str = ""
    asset_id: str = ""
    user_id: str = ""
    records_affected: Count | None = None
    description: str = ""
