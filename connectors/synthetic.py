"""Realistic multi-model LLM platform traffic, as the raw messages producers would send.

Deterministic for a seed, so a resumed or repeated run regenerates the same bytes. The mix
follows what a platform sees: mostly request telemetry (hub envelopes, some OTLP/JSON batches
with current or legacy GenAI attribute names, some base-format metrics), then cost records that
follow the requests they price, policy decisions, security findings, governance and registry
events; plus a small fraction of bad inputs and exact duplicates, so dead-letter and dedup paths
run too. Latencies and token counts are log-normal per model; errors cluster in a few types.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import random
from bisect import bisect
from itertools import accumulate

import msgspec


@dataclass(frozen=True)
class _Model:
    name: str
    provider: str
    weight: float
    latency_ms: float  # median total latency
    in_price: float  # USD per 1M input tokens
    out_price: float  # USD per 1M output tokens
    operation: str = "chat"


MODELS = (
    _Model("gpt-4o", "openai", 0.22, 900.0, 2.5, 10.0),
    _Model("gpt-4o-mini", "openai", 0.26, 450.0, 0.15, 0.6),
    _Model("claude-3-5-sonnet-20241022", "anthropic", 0.16, 1100.0, 3.0, 15.0),
    _Model("claude-3-5-haiku-20241022", "anthropic", 0.10, 520.0, 0.8, 4.0),
    _Model("gemini-1.5-pro", "gcp.gemini", 0.07, 1000.0, 1.25, 5.0),
    _Model("llama-3.1-70b-instruct", "aws.bedrock", 0.06, 1300.0, 0.99, 0.99),
    _Model("mistral-large-2411", "mistral_ai", 0.04, 850.0, 2.0, 6.0),
    _Model("text-embedding-3-small", "openai", 0.09, 80.0, 0.02, 0.0, "embeddings"),
)
TEAMS = ("search", "support-bot", "code-assist", "analytics", "marketing")
TEAM_ENDPOINTS = {
    "search": ("/v1/search/answer", "/v1/embeddings"),
    "support-bot": ("/v1/chat/completions", "/v1/chat/summarize"),
    "code-assist": ("/v1/code/complete", "/v1/chat/completions"),
    "analytics": ("/v1/batch/classify", "/v1/embeddings"),
    "marketing": ("/v1/content/generate",),
}
ENVIRONMENTS = ("prod", "prod", "prod", "staging")
REGIONS = ("us-east-1", "us-east-1", "eu-west-1", "ap-southeast-1")
ERRORS = (("rate_limit_exceeded", 0.45), ("timeout", 0.25), ("server_error", 0.2), ("context_length_exceeded", 0.1))
FINISH = ("stop", "stop", "stop", "length", "tool_calls")
THREATS = ("prompt_injection", "jailbreak", "data_exfiltration", "toxic_content")
PII = ("email", "phone_number", "credit_card", "ssn", "ip_address")
POLICIES = (("pol-rate-limit", "Rate limit", "rateLimit"), ("pol-pii", "No PII in prompts", "dataPrivacy"),
            ("pol-content", "Content policy", "contentPolicy"), ("pol-budget", "Team budget", "costControl"))
FRAMEWORKS = ("SOC2", "GDPR", "HIPAA", "ISO27001")

# Share of messages per kind (before bad inputs and duplicates are mixed in).
MIX = (
    ("request_hub", 0.60), ("request_otlp", 0.06), ("telemetry_base", 0.06), ("cost", 0.11),
    ("policy", 0.07), ("security", 0.05), ("governance", 0.03), ("registry", 0.02),
)
_MODEL_CUM = list(accumulate(m.weight for m in MODELS))
_BAD_KINDS = ("truncated", "unknown_type", "negative_tokens", "missing_model", "future_time", "not_utf8",
              "json_array", "bad_severity")

_enc = msgspec.json.Encoder()
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def generate(n: int, seed: int, start_ms: int, rate_per_s: float, *, bad_fraction: float = 0.005,
             duplicate_fraction: float = 0.005) -> list[bytes]:
    """`n` raw messages (JSON bytes) whose event times start at `start_ms` at ~`rate_per_s`.

    An OTLP message carries several spans, so `n` messages yield somewhat more than `n` events.
    `bad_fraction` of messages are invalid in one of several ways; `duplicate_fraction` are
    byte-exact re-sends of an earlier message (same event id).
    """
    if n <= 0:
        return []
    return _Generator(seed, start_ms, rate_per_s).run(n, bad_fraction, duplicate_fraction)


class _Generator:
    # random.Random, not numpy: these are scalar draws, where numpy's per-call cost dominates.
    def __init__(self, seed: int, start_ms: int, rate_per_s: float) -> None:
        self.rng = random.Random(seed)
        self.start_ms = start_ms
        self.step_ms = 1000.0 / rate_per_s if rate_per_s > 0 else 0.0
        self.recent: list[tuple[str, _Model, str, int, int, int, str]] = []  # requests cost events follow

    def run(self, n: int, bad_fraction: float, duplicate_fraction: float) -> list[bytes]:
        rng = self.rng
        kinds = [k for k, _ in MIX]
        kind_cum = list(accumulate(w for _, w in MIX))
        model_cum = list(accumulate(m.weight for m in MODELS))
        out: list[bytes] = []
        for i in range(n):
            # Event time: steady rate, a little jitter, a few events arriving minutes late.
            t = int(self.start_ms + i * self.step_ms + rng.gauss(0.0, 150.0))
            if rng.random() < 0.004:
                t -= int(rng.uniform(30_000, 180_000))
            r = rng.random()
            if r < duplicate_fraction and out:
                out.append(out[rng.randrange(max(0, len(out) - 2000), len(out))])
                continue
            if r < duplicate_fraction + bad_fraction:
                out.append(self.bad(t))
                continue
            kind = kinds[bisect(kind_cum, rng.random() * kind_cum[-1])]
            model = MODELS[min(bisect(model_cum, rng.random() * model_cum[-1]), len(MODELS) - 1)]
            team = self.pick(TEAMS)
            out.append(getattr(self, kind)(t, model, team))
        return out

    # --- ids and shared bits ------------------------------------------------------------------------

    def uuid(self) -> str:
        h = f"{self.rng.getrandbits(128):032x}"
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"

    def hex(self, nbytes: int) -> str:
        return f"{self.rng.getrandbits(nbytes * 8):0{nbytes * 2}x}"

    def pick(self, seq: tuple):  # type: ignore[no-untyped-def]
        return seq[int(self.rng.random() * len(seq))]

    def endpoint(self, team: str) -> str:
        return self.pick(TEAM_ENDPOINTS[team])

    def request_sample(self, model: _Model) -> dict:
        rng = self.rng
        latency = model.latency_ms * rng.lognormvariate(0.0, 0.45)
        inp = int(rng.lognormvariate(6.3, 0.9)) + 5
        out = 0 if model.operation == "embeddings" else int(rng.lognormvariate(5.3, 0.8)) + 1
        cached = int(inp * rng.uniform(0.2, 0.9)) if rng.random() < 0.3 else 0
        ttft = None if model.operation == "embeddings" else latency * rng.uniform(0.12, 0.4)
        error = None
        if rng.random() < 0.025:
            error = rng.choices([e for e, _ in ERRORS], [w for _, w in ERRORS])[0]
            out = 0
            ttft = None
            if error == "timeout":
                latency = 30_000 * rng.uniform(1.0, 1.05)
        return {"latency": round(latency, 3), "ttft": None if ttft is None else round(ttft, 3), "in": inp,
                "out": out, "cached": cached, "error": error}

    def remember(self, trace: str, model: _Model, team: str, t: int, inp: int, out: int, env: str) -> None:
        self.recent.append((trace, model, team, t, inp, out, env))
        if len(self.recent) > 64:
            del self.recent[:32]

    def time_value(self, t: int) -> int | float | str:
        """Hub producers mostly send epoch ms; some ISO strings with offsets, epoch s or us."""
        u = self.rng.random()
        if u < 0.88:
            return t
        if u < 0.94:
            return _iso(t, offset_h=self.pick((0, 1, 2, -5, 9)))
        if u < 0.97:
            return t / 1000.0
        return t * 1000

    # --- message kinds ------------------------------------------------------------------------------

    def request_hub(self, t: int, model: _Model, team: str) -> bytes:
        s = self.request_sample(model)
        trace = self.hex(16)
        env = self.pick(ENVIRONMENTS)
        payload: dict = {"model": model.name, "provider": model.provider, "operation": model.operation,
                         "latency_ms": s["latency"], "input_tokens": s["in"], "output_tokens": s["out"],
                         "total_tokens": s["in"] + s["out"], "is_error": s["error"] is not None,
                         "request_id": f"req-{self.hex(8)}"}
        if s["ttft"] is not None:
            payload["time_to_first_token_ms"] = s["ttft"]
        if s["cached"]:
            payload["cached_input_tokens"] = s["cached"]
        if s["error"]:
            payload["error_type"] = s["error"]
        else:
            payload["finish_reason"] = self.pick(FINISH) if model.operation == "chat" else ""
            payload["response_model"] = model.name
        self.remember(trace, model, team, t, s["in"], s["out"], env)
        return _enc.encode({
            "event_id": self.uuid(), "event_type": "telemetry.request", "event_time": self.time_value(t),
            "source": "telemetry", "schema_version": "1.0.0", "correlation_id": trace,
            "severity": "error" if s["error"] else "info", "environment": env, "region": self.pick(REGIONS),
            "tags": {"team": team, "endpoint": self.endpoint(team), "service.name": f"{team}-api"},
            "payload": payload,
        })

    def request_otlp(self, t: int, model: _Model, team: str) -> bytes:
        """One Collector batch: a few spans of one service, LLM calls plus a non-LLM HTTP span."""
        legacy = self.rng.random() < 0.4
        spans = []
        trace = self.hex(16)
        root = self.hex(8)
        env = self.pick(ENVIRONMENTS)
        spans.append(_span(trace, root, "", f"POST {self.endpoint(team)}", t, t + 1500,
                           [_kv("http.route", self.endpoint(team)), _kv("http.response.status_code", 200)], False))
        for k in range(self.rng.randrange(1, 5)):
            m = MODELS[min(bisect(_MODEL_CUM, self.rng.random() * _MODEL_CUM[-1]), len(MODELS) - 1)]
            s = self.request_sample(m)
            st = t + 5 + k * 3
            attrs = [_kv("server.address", "api." + m.provider.split(".")[0] + ".com")]
            if legacy:
                attrs += [_kv("gen_ai.system", m.provider), _kv("llm.model_name", m.name),
                          _kv("llm.request.type", m.operation),
                          _kv("gen_ai.usage.prompt_tokens", s["in"]),
                          _kv("gen_ai.usage.completion_tokens", s["out"]),
                          _kv("llm.usage.total_tokens", s["in"] + s["out"])]
            else:
                attrs += [_kv("gen_ai.provider.name", m.provider), _kv("gen_ai.request.model", m.name),
                          _kv("gen_ai.response.model", m.name), _kv("gen_ai.operation.name", m.operation),
                          _kv("gen_ai.usage.input_tokens", s["in"]), _kv("gen_ai.usage.output_tokens", s["out"])]
                if s["cached"]:
                    attrs.append(_kv("gen_ai.usage.cache_read.input_tokens", s["cached"]))
                attrs.append(_kv("gen_ai.response.id", f"resp-{self.hex(8)}"))
            if s["error"]:
                attrs.append(_kv("error.type", s["error"]))
            else:
                attrs.append(_kv("gen_ai.response.finish_reasons", [self.pick(FINISH)]))
            attrs.append(_kv("team", team))
            span_id = self.hex(8)
            spans.append(_span(trace, span_id, root, f"{m.operation} {m.name}", st, st + int(s["latency"]),
                               attrs, s["error"] is not None))
            self.remember(trace, m, team, st, s["in"], s["out"], env)
        resource = [_kv("service.name", f"{team}-api"), _kv("deployment.environment.name", env),
                    _kv("cloud.region", self.pick(REGIONS)), _kv("telemetry.sdk.language", "python")]
        scope = {"name": "opentelemetry.instrumentation.openai_v2" if not legacy else "openllmetry", "version": "0.1"}
        return _enc.encode({"resourceSpans": [{"resource": {"attributes": resource},
                                               "scopeSpans": [{"scope": scope, "spans": spans}]}]})

    def telemetry_base(self, t: int, model: _Model, team: str) -> bytes:
        u = self.rng.random()
        s = self.request_sample(model)
        if u < 0.35:
            et, data = "telemetry.latency", {
                "model": model.name, "provider": model.provider, "requestId": f"req-{self.hex(8)}",
                "latencyMs": f"{s['latency'] / 1000:.3f}s" if self.rng.random() < 0.3 else s["latency"],
                "breakdown": {"queueMs": round(s["latency"] * 0.05, 3),
                              **({"timeToFirstTokenMs": s["ttft"]} if s["ttft"] is not None else {})}}
        elif u < 0.6:
            et, data = "telemetry.tokens", {"model": model.name, "provider": model.provider,
                                            "inputTokens": s["in"], "outputTokens": s["out"]}
        elif u < 0.8:
            rpm = self.rng.uniform(50, 3000)
            et, data = "telemetry.throughput", {
                "model": model.name, "provider": model.provider, "requestsPerSecond": f"{rpm:.1f}/min",
                "tokensPerSecond": round(rpm / 60 * 700, 2), "concurrentRequests": self.rng.randrange(1, 80),
                "windowMs": "1m"}
        elif u < 0.9:
            total = self.rng.randrange(200, 5000)
            et, data = "telemetry.error", {"model": model.name, "provider": model.provider,
                                           "errorType": "rate_limit_exceeded", "errorCode": "429",
                                           "failedRequests": int(total * self.rng.uniform(0.001, 0.05)),
                                           "totalRequests": total}
        else:
            et, data = "telemetry.performance", {
                "model": model.name, "provider": model.provider, "windowMs": 300_000,
                "requestCount": self.rng.randrange(100, 10_000),
                "successRate": round(self.rng.uniform(0.95, 1.0), 4),
                "p95LatencyMs": round(model.latency_ms * 2.1, 1),
                "qualityScore": round(self.rng.uniform(0.7, 0.95), 3)}
        return self.base(et, "observatory", t, data, {"team": team, "region": self.pick(REGIONS)})

    def cost(self, t: int, model: _Model, team: str) -> bytes:
        u = self.rng.random()
        if u < 0.8 and self.recent:
            trace, m, team, rt, inp, out, env = self.recent[self.rng.randrange(len(self.recent))]
            usd = (inp * m.in_price + out * m.out_price) / 1e6
            payload = {"model": m.name, "provider": m.provider, "input_tokens": inp, "output_tokens": out,
                       "total_cost": round(usd, 8), "currency": "USD"}
            if self.rng.random() < 0.15:  # an EU billing account reports in euros
                payload["total_cost"] = round(usd / 1.08, 8)
                payload["currency"] = "EUR"
            return _enc.encode({
                "event_id": self.uuid(), "event_type": "cost.tokens", "event_time": rt + 20, "source": "cost",
                "correlation_id": trace, "environment": env, "tags": {"team": team}, "payload": payload})
        if u < 0.9:
            return self.base("cost.api", "costops", t, {
                "provider": model.provider, "service": "image-generation", "requestCount": self.rng.randrange(1, 40),
                "totalCost": round(self.rng.uniform(0.01, 2.0), 4), "currency": "USD"}, {"team": team})
        if u < 0.97:
            return self.base("cost.resource", "costops", t, {
                "resourceType": "gpu", "resourceId": f"gpu-node-{self.rng.randrange(1, 12)}",
                "model": "llama-3.1-70b-instruct", "durationMs": "1h", "gpuCount": 8, "memoryBytes": "640GB",
                "utilization": round(self.rng.uniform(0.3, 0.95), 3),
                "totalCost": round(self.rng.uniform(20, 40), 2)}, {"team": team})
        limit = self.pick((5000.0, 10000.0, 25000.0))
        return self.base("cost.budget", "costops", t, {
            "budgetId": f"budget-{team}", "budgetName": f"{team} monthly", "scope": team, "period": "monthly",
            "limit": limit, "spent": round(limit * self.rng.uniform(0.8, 1.05), 2), "threshold": 0.8},
            {"team": team, "severity": "high"})

    def policy(self, t: int, model: _Model, team: str) -> bytes:
        u = self.rng.random()
        pid, pname, ptype = self.pick(POLICIES)
        user = f"user-{self.rng.randrange(1, 500)}"
        if u < 0.72:
            denied = self.rng.random() < 0.04
            return self.base("policy.evaluated", "policy-engine", t, {
                "evaluationId": f"eval-{self.hex(8)}", "policyId": pid, "policyName": pname, "model": model.name,
                "userId": user, "decision": "denied" if denied else "allowed",
                "evaluationMs": round(self.rng.lognormvariate(1.0, 0.5), 3), "rulesEvaluated": 12},
                {"team": team})
        if u < 0.85:
            return self.base("violation.detected", "policy-engine", t, {
                "violationId": f"vio-{self.hex(4)}", "policyId": pid, "assetId": model.name, "model": model.name,
                "violationType": ptype, "severity": self.pick(("low", "medium", "high", "critical")),
                "description": f"{pname} violated"}, {"userId": user, "team": team})
        if u < 0.95:
            return self.base("compliance.verified", "policy-engine", t, {
                "policyId": pid, "assetId": model.name, "framework": self.pick(FRAMEWORKS),
                "complianceRate": round(self.rng.uniform(0.9, 1.0), 4)}, {"team": team})
        if u < 0.98:
            return self.base("policy.updated", "policy-engine", t, {
                "policyId": pid, "policyName": pname, "changeType": "updated", "enforcementMode": "active",
                "changedBy": "governance-bot"}, {})
        return self.base("audit.logged", "policy-engine", t, {
            "actor": user, "action": "override", "resource": pid, "outcome": "success", "policyId": pid}, {})

    def security(self, t: int, model: _Model, team: str) -> bytes:
        u = self.rng.random()
        ip = f"203.0.113.{self.rng.randrange(1, 255)}"
        if u < 0.4:
            return self.base("security.threat", "sentinel", t, {
                "threatId": f"thr-{self.hex(4)}", "threatType": self.pick(THREATS), "model": model.name,
                "assetId": model.name, "sourceIp": ip, "confidence": round(self.rng.uniform(0.5, 1.0), 3),
                "actionTaken": "blocked", "severity": self.pick(("medium", "high", "critical"))}, {"team": team})
        if u < 0.75:
            ok = self.rng.random() < 0.93
            return self.base("security.auth", "sentinel", t, {
                "kind": "authentication", "outcome": "success" if ok else "failure", "method": "api_key",
                "userId": f"user-{self.rng.randrange(1, 500)}", "sourceIp": ip,
                **({} if ok else {"reason": "invalid api key", "severity": "low"})}, {"team": team})
        if u < 0.9:
            return self.base("security.privacy", "sentinel", t, {
                "dataType": self.pick(PII), "action": "redacted", "model": model.name, "recordsAffected": 1},
                {"team": team})
        if u < 0.96:
            return self.base("security.vulnerability", "sentinel", t, {
                "vulnerabilityId": f"vuln-{self.hex(4)}", "cveId": "CVE-2024-3094", "component": "xz-utils",
                "assetId": "inference-gateway", "cvssScore": 10.0, "severity": "critical"}, {})
        return self.base("security.compliance", "sentinel", t, {
            "framework": self.pick(FRAMEWORKS), "controlId": "CC6.1", "assetId": model.name,
            "description": "prompt logs retained beyond policy"}, {"team": team})

    def governance(self, t: int, model: _Model, team: str) -> bytes:
        u = self.rng.random()
        if u < 0.45:
            et, payload = "governance.compliance", {
                "framework": self.pick(FRAMEWORKS), "passed": self.rng.random() < 0.9,
                "control_id": f"C-{self.rng.randrange(1, 40)}", "asset_id": model.name,
                "score": round(self.rng.uniform(0.6, 1.0), 3)}
        elif u < 0.75:
            et, payload = "governance.audit", {
                "actor": f"user-{self.rng.randrange(1, 500)}", "action": "export_report",
                "resource_type": "dashboard", "resource_id": "compliance-weekly", "outcome": "success"}
        elif u < 0.9:
            pid, pname, ptype = self.pick(POLICIES)
            et, payload = "governance.violation", {
                "policy_id": pid, "policy_name": pname, "violation_type": ptype, "asset_id": model.name,
                "model": model.name}
        else:
            et, payload = "governance.lineage", {
                "source_asset_id": "dataset-support-tickets-2024", "target_asset_id": f"{model.name}-ft",
                "operation": "fine_tune", "records": self.rng.randrange(10_000, 500_000),
                "size_bytes": self.rng.randrange(10**8, 10**10), "contains_pii": False}
        return _enc.encode({"event_id": self.uuid(), "event_type": et, "event_time": t, "source": "governance",
                            "tags": {"team": team}, "payload": payload})

    def registry(self, t: int, model: _Model, team: str) -> bytes:
        u = self.rng.random()
        base = {"assetId": model.name, "assetName": model.name, "assetType": "model", "owner": f"{team}-ml",
                "category": "embedding-model" if model.operation == "embeddings" else "language-model",
                "provider": model.provider, "tags": ["production"]}
        if u < 0.3:
            return self.base("asset.registered", "registry", t, {**base, "version": "1.0.0"}, {})
        if u < 0.55:
            return self.base("asset.updated", "registry", t, {**base, "version": "1.0.0",
                                                              "changedFields": ["owner"]}, {})
        if u < 0.75:
            return self.base("version.published", "registry", t, {**base, "version": "1.1.0",
                                                                  "previousVersion": "1.0.0"}, {})
        if u < 0.9:
            return self.base("version.promoted", "registry", t, {**base, "version": "1.1.0",
                                                                 "fromStage": "staging", "toStage": "production"}, {})
        if u < 0.96:
            return self.base("version.retired", "registry", t, {**base, "version": "0.9.0", "reason": "superseded"}, {})
        return self.base("asset.deprecated", "registry", t, {**base, "reason": "replaced",
                                                             "replacementAssetId": "gpt-4o"}, {})

    def base(self, event_type: str, source: str, t: int, data: dict, metadata: dict) -> bytes:
        return _enc.encode({"eventId": self.uuid(), "eventType": event_type, "source": source,
                            "timestamp": _iso(t), "version": "1.0.0", "data": data, "metadata": metadata})

    def bad(self, t: int) -> bytes:
        kind = self.pick(_BAD_KINDS)
        model = MODELS[0]
        good = self.request_hub(t, model, "search")
        if kind == "truncated":
            return good[: len(good) // 2]
        if kind == "not_utf8":
            return b'{"event_id": "\xff\xfe", "event_type": "telemetry.request"}'
        if kind == "json_array":
            return b"[" + good + b"]"
        obj = msgspec.json.decode(good)
        if kind == "unknown_type":
            obj["event_type"] = "telemetry.bogus"
        elif kind == "negative_tokens":
            obj["payload"]["input_tokens"] = -self.rng.randrange(1, 500)
        elif kind == "missing_model":
            del obj["payload"]["model"]
        elif kind == "future_time":
            obj["event_time"] = t + 86_400_000 * 3
        elif kind == "bad_severity":
            obj["severity"] = "apocalyptic"
        return _enc.encode(obj)


def _kv(key: str, value: object) -> dict:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}  # int64 is a string in OTLP/JSON
    if isinstance(value, float):
        return {"key": key, "value": {"doubleValue": value}}
    if isinstance(value, list):
        return {"key": key, "value": {"arrayValue": {"values": [{"stringValue": str(v)} for v in value]}}}
    return {"key": key, "value": {"stringValue": str(value)}}


def _span(trace: str, span_id: str, parent: str, name: str, start_ms: int, end_ms: int, attrs: list,
          failed: bool) -> dict:
    span = {"traceId": trace, "spanId": span_id, "name": name, "kind": 3 if parent else 2,
            "startTimeUnixNano": str(start_ms * 1_000_000), "endTimeUnixNano": str(end_ms * 1_000_000),
            "attributes": attrs, "status": {"code": 2, "message": "upstream error"} if failed else {}}
    if parent:
        span["parentSpanId"] = parent
    return span


def _iso(ms: int, offset_h: int = 0) -> str:
    tz = timezone(timedelta(hours=offset_h))
    dt = (_EPOCH + timedelta(milliseconds=ms)).astimezone(tz)
    s = dt.isoformat(timespec="milliseconds")
    return s.replace("+00:00", "Z")
