"""Compliance reports per hour and day, per asset and team, from policy evaluations and violations."""
from operators.compliance.reports import ComplianceBook

__all__ = ["ComplianceBook"]
