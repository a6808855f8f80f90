"""The wire formats the synthetic generator writes, and the incidents it injects on demand.

This module imports nothing heavy, so the CLI can offer its choices without loading protobuf.
Incidents are the trouble the hub exists to find.

Each one changes what a stretch of the traffic says, not how much of it there is, so a run
still holds exactly the events asked for. Latency and cost incidents scale the calls that are
drawn anyway (the rest of the traffic stays byte-identical); bursts and cascades take the
place of ordinary messages. Each event they add carries a correlation id naming the incident,
so the correlator (and a person with SQL) can tell them apart.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from connectors.synthetic_wire import Message

# Wire formats: "mix" is the generator's realistic blend (every source); "hub" and "base" write every
# source in that one envelope; the OTLP formats carry LLM calls only (the telemetry source):
# trace batches (JSON or protobuf) or GenAI client metrics (protobuf or JSON), where one "event"
# is one call the histograms summarize.
FORMATS = ("mix", "hub", "base", "otlp-json", "otlp-proto", "otlp-metrics", "otlp-metrics-json")
TELEMETRY_ONLY = frozenset({"otlp-json", "otlp-proto", "otlp-metrics", "otlp-metrics-json"})

# Incident kind -> (what it targets, default target, formats that can carry it).
INCIDENTS: dict[str, tuple[str, str, frozenset[str]]] = {
    "latency-spike": ("model", "gpt-4o", frozenset(FORMATS)),
    "cost-surge": ("team", "marketing", frozenset(FORMATS)),
    "security-burst": ("model", "gpt-4o-mini", frozenset(FORMATS) - TELEMETRY_ONLY),
    "policy-violation-cascade": ("team", "support-bot", frozenset(FORMATS) - TELEMETRY_ONLY),
}
SPIKE_FACTOR = 8.0  # latency-spike: the target model answers this many times slower
SURGE_FACTOR = 12  # cost-surge: the target team's calls use this many times the tokens
BURST_SHARE = 0.3  # security-burst: this share of messages become threats on the target
CASCADE_SHARE = 0.08  # policy-violation-cascade: this share of messages start a 4-event cascade
BOTNET = tuple(f"198.51.100.{i}" for i in range(7, 15))


def threat_burst(gen: Any, t: int, model: str, team: str) -> Message:
    """One of many blocked attacks on `model` from a handful of addresses."""
    rng = gen.rng
    return gen.base("security.threat", "sentinel", t, {
        "threatId": f"thr-{gen.hex(4)}", "threatType": gen.pick(("prompt_injection", "jailbreak")),
        "model": model, "assetId": model, "sourceIp": gen.pick(BOTNET),
        "confidence": round(rng.uniform(0.9, 1.0), 3), "actionTaken": "blocked",
        "severity": gen.pick(("high", "critical"))},
        {"team": team, "correlationId": f"incident-security-burst-{model}"})


def violation_cascade(gen: Any, t: int, team: str, model: str) -> list[Message]:
    """A denied request -> policy violation -> governance violation -> PII finding, each the
    causal parent of the next (parent event id) and all sharing one correlation id."""
    ids = [gen.uuid() for _ in range(4)]
    corr = f"incident-policy-cascade-{gen.hex(6)}"
    user = f"user-{gen.rng.randrange(1, 500)}"
    meta = {"team": team, "correlationId": corr}
    denied = gen.base("policy.evaluated", "policy-engine", t, {
        "evaluationId": f"eval-{gen.hex(8)}", "policyId": "pol-pii", "policyName": "No PII in prompts",
        "model": model, "userId": user, "decision": "denied", "evaluationMs": 2.5, "rulesEvaluated": 12},
        meta, event_id=ids[0])
    violation = gen.base("violation.detected", "policy-engine", t + 40, {
        "violationId": f"vio-{gen.hex(4)}", "policyId": "pol-pii", "assetId": model, "model": model,
        "violationType": "dataPrivacy", "severity": "high", "description": "PII in prompt"},
        {**meta, "userId": user, "parentEventId": ids[0]}, event_id=ids[1])
    governance = gen.hub({
        "event_id": ids[2], "event_type": "governance.violation", "event_time": t + 90, "source": "governance",
        "correlation_id": corr, "parent_event_id": ids[1], "severity": "high", "tags": {"team": team},
        "payload": {"policy_id": "pol-pii", "policy_name": "No PII in prompts", "violation_type": "dataPrivacy",
                    "asset_id": model, "model": model}})
    finding = gen.base("security.privacy", "sentinel", t + 150, {
        "dataType": gen.pick(("email", "ssn", "credit_card")), "action": "redacted", "model": model,
        "recordsAffected": gen.rng.randrange(1, 50), "severity": "critical"},
        {**meta, "parentEventId": ids[2]}, event_id=ids[3])
    return [denied, violation, governance, finding]
