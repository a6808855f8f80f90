"""Realistic multi-model LLM platform traffic, as the raw messages producers would send.

Deterministic for a seed, so a resumed or repeated run regenerates the same bytes. The mix
follows what a platform sees: mostly request telemetry (hub envelopes, some OTLP/JSON batches
with current or legacy GenAI attribute names, some base-format metrics), then cost records that
follow the requests they price, policy decisions, security findings, governance and registry
events; plus a small fraction of bad inputs and exact duplicates, so dead-letter and dedup paths
run too. Latencies and token counts are log-normal per model; errors cluster in a few types.

`fmt` writes the same traffic in one wire format instead of the mix (see `FORMATS`), and
`incidents` injects the trouble the hub exists to find (see `synthetic_incidents.INCIDENTS`).
`generate_messages` counts events, not messages: an OTLP batch holds several calls, so counting
messages would overshoot (`--events 50000` once stored 53,888 events).
"""
from __future__ import annotations

from dataclasses import dataclass

import random
from bisect import bisect
from itertools import accumulate

import msgspec

from connectors.synthetic_incidents import BURST_SHARE, CASCADE_SHARE, FORMATS, SPIKE_FACTOR, SURGE_FACTOR
from connectors.synthetic_incidents import TELEMETRY_ONLY, threat_burst, violation_cascade
from connectors.synthetic_wire import Call, Message, base_to_hub, hub_to_base, iso as _iso, kv as _kv
from connectors.synthetic_wire import metrics_request, span as _span, traces_to_proto
from schemas.events import SOURCE_OF_TYPE


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


def generate(n: int, seed: int, start_ms: int, rate_per_s: float, *, bad_fraction: float = 0.005,
             duplicate_fraction: float = 0.005) -> list[bytes]:
    """`n` raw messages (JSON bytes) whose event times start at `start_ms` at ~`rate_per_s`.

    An OTLP message carries several spans, so `n` messages yield somewhat more than `n` events
    (`generate_messages` counts events instead). `bad_fraction` of messages are invalid in one of
    several ways; `duplicate_fraction` are byte-exact re-sends of an earlier message (same event id).
    """
    if n <= 0:
        return []
    gen = _Generator(seed, start_ms, rate_per_s)
    return [m.value for m in gen.run(n, False, bad_fraction, duplicate_fraction)]


def generate_messages(events: int, seed: int, start_ms: int, rate_per_s: float, *, fmt: str = "mix",
                      incidents: dict[str, str] | None = None, bad_fraction: float = 0.005,
                      duplicate_fraction: float = 0.005, proto_share: float = 0.0) -> list[Message]:
    """Messages that hold exactly `events` events the hub will store (bad inputs and re-sends come
    on top, holding none), event times from `start_ms` at `rate_per_s` events per second.

    `incidents` (kind -> target, see `synthetic_incidents.INCIDENTS`) are active for the whole call; `proto_share` of
    the mix's OTLP batches are written as protobuf.
    """
    if events <= 0:
        return []
    if fmt.startswith("otlp-metrics"):
        duplicate_fraction = 0.0  # a re-sent delta export counts twice anywhere: nothing to dedup on
    gen = _Generator(seed, start_ms, rate_per_s, fmt, incidents or {}, proto_share)
    return gen.run(events, True, bad_fraction, duplicate_fraction)


class Traffic:
    """Generated traffic for a long-running producer (`hub produce`): one generator kept across
    calls, so cost records keep following the requests they price, re-sends can repeat a message
    of an earlier call, and a cascade started at the end of one call goes on in the next."""

    def __init__(self, seed: int, fmt: str = "mix", *, bad_fraction: float = 0.0, duplicate_fraction: float = 0.0,
                 proto_share: float = 0.0) -> None:
        self.gen = _Generator(seed, 0, 1.0, fmt, {}, proto_share)
        self.bad_fraction = bad_fraction
        self.duplicate_fraction = 0.0 if fmt.startswith("otlp-metrics") else duplicate_fraction

    def next(self, events: int, start_ms: int, rate_per_s: float,
             incidents: dict[str, str] | None = None) -> list[Message]:
        """Messages holding exactly `events` events, event times from `start_ms` at `rate_per_s`."""
        if events <= 0:
            return []
        self.gen.clock(start_ms, rate_per_s, incidents or {})
        return self.gen.run(events, True, self.bad_fraction, self.duplicate_fraction)


class _Generator:
    # random.Random, not numpy: these are scalar draws, where numpy's per-call cost dominates.
    def __init__(self, seed: int, start_ms: int, rate_per_s: float, fmt: str = "mix",
                 incidents: dict[str, str] | None = None, proto_share: float = 0.0) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
        self.rng = random.Random(seed)
        self.recent: list[tuple[str, _Model, str, int, int, int, str]] = []  # requests cost events follow
        self.history: list[Message] = []  # the last messages of earlier runs, for re-sends
        self.fmt = fmt
        self.proto_share = proto_share
        self.pending: list[Message] = []  # the rest of a policy-violation cascade
        self.cap = 1 << 30  # events the next message may hold at most
        self.clock(start_ms, rate_per_s, incidents or {})

    def clock(self, start_ms: int, rate_per_s: float, incidents: dict[str, str]) -> None:
        """Where event times start and how fast they advance; which incidents are on."""
        self.start_ms = start_ms
        self.step_ms = 1000.0 / rate_per_s if rate_per_s > 0 else 0.0
        self.spike = incidents.get("latency-spike")
        self.surge = incidents.get("cost-surge")
        self.burst = incidents.get("security-burst")
        self.cascade = incidents.get("policy-violation-cascade")

    def run(self, n: int, by_events: bool, bad_fraction: float, duplicate_fraction: float) -> list[Message]:
        """Messages until `n` messages, or `n` events when `by_events` (event times then advance
        per event, so `rate_per_s` is an event rate)."""
        rng = self.rng
        kinds = [k for k, _ in MIX]
        kind_cum = list(accumulate(w for _, w in MIX))
        model_cum = list(accumulate(m.weight for m in MODELS))
        fmt = self.fmt
        out: list[Message] = []
        history = self.history
        done = 0
        while done < n:
            # Event time: steady rate, a little jitter, a few events arriving minutes late.
            t = int(self.start_ms + (done if by_events else len(out)) * self.step_ms + rng.gauss(0.0, 150.0))
            if rng.random() < 0.004:
                t -= int(rng.uniform(30_000, 180_000))
            if by_events:
                self.cap = n - done
            r = rng.random()
            if r < duplicate_fraction and (out or history):
                total = len(history) + len(out)
                j = rng.randrange(max(0, total - 2000), total)
                m = history[j] if j < len(history) else out[j - len(history)]
                m = Message(m.source, m.key, m.value, 0)
            elif r < duplicate_fraction + bad_fraction:
                m = self.bad(t)
            elif self.pending:
                m = self.pending.pop(0)
            elif self.burst and rng.random() < BURST_SHARE:
                m = threat_burst(self, t, self.burst, self.pick(TEAMS))
            elif self.cascade and rng.random() < CASCADE_SHARE:
                m, *self.pending = violation_cascade(self, t, self.cascade, self.pick(MODELS).name)
            else:
                kind = kinds[bisect(kind_cum, rng.random() * kind_cum[-1])]
                model = MODELS[min(bisect(model_cum, rng.random() * model_cum[-1]), len(MODELS) - 1)]
                team = self.pick(TEAMS)
                if fmt in TELEMETRY_ONLY:
                    kind = "metrics" if fmt.startswith("otlp-metrics") else "request_otlp"
                elif kind == "request_otlp" and fmt != "mix":
                    kind = "request_hub"
                m = getattr(self, kind)(t, model, team)
            out.append(m)
            done += m.events if by_events else 1
        self.history = (history + out)[-2000:]
        return out

    # --- how a message is written ---------------------------------------------------------------------

    def hub(self, obj: dict) -> Message:
        """A hub envelope (as the format asks: as is, or as a base event)."""
        payload = obj["payload"]
        key = payload.get("model") or payload.get("asset_id") or obj.get("tags", {}).get("team") or obj["event_id"]
        value = _enc.encode(hub_to_base(obj) if self.fmt == "base" else obj)
        return Message(obj["source"], key.encode(), value, 1)

    def base(self, event_type: str, source: str, t: int, data: dict, metadata: dict,
             event_id: str | None = None) -> Message:
        """A base event (as the format asks: as is, or as a hub envelope)."""
        obj = {"eventId": event_id or self.uuid(), "eventType": event_type, "source": source, "timestamp": _iso(t),
               "version": "1.0.0", "data": data, "metadata": metadata}
        key = data.get("model") or data.get("assetId") or metadata.get("team") or obj["eventId"]
        value = _enc.encode(base_to_hub(obj) if self.fmt == "hub" else obj)
        return Message(SOURCE_OF_TYPE[event_type], key.encode(), value, 1)

    def unit(self, text: str, canonical: float) -> str | float:
        """A base-format value with a unit ("1.2s", "640GB"), or its canonical number where the
        message will be a hub envelope (which takes canonical units only)."""
        return canonical if self.fmt == "hub" else text

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

    def request_sample(self, model: _Model, team: str) -> dict:
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
        # Incidents scale what was drawn (no extra draws: the rest of the traffic stays the same).
        if self.spike == model.name and error != "timeout":
            latency *= SPIKE_FACTOR
            ttft = None if ttft is None else ttft * SPIKE_FACTOR
        if self.surge == team:
            inp, out, cached = inp * SURGE_FACTOR, out * SURGE_FACTOR, cached * SURGE_FACTOR
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

    def request_hub(self, t: int, model: _Model, team: str) -> Message:
        s = self.request_sample(model, team)
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
        return self.hub({
            "event_id": self.uuid(), "event_type": "telemetry.request", "event_time": self.time_value(t),
            "source": "telemetry", "schema_version": "1.0.0", "correlation_id": trace,
            "severity": "error" if s["error"] else "info", "environment": env, "region": self.pick(REGIONS),
            "tags": {"team": team, "endpoint": self.endpoint(team), "service.name": f"{team}-api"},
            "payload": payload,
        })

    def request_otlp(self, t: int, model: _Model, team: str) -> Message:
        """One Collector batch: a few spans of one service, LLM calls plus a non-LLM HTTP span."""
        legacy = self.rng.random() < 0.4
        spans = []
        trace = self.hex(16)
        root = self.hex(8)
        env = self.pick(ENVIRONMENTS)
        spans.append(_span(trace, root, "", f"POST {self.endpoint(team)}", t, t + 1500,
                           [_kv("http.route", self.endpoint(team)), _kv("http.response.status_code", 200)], False))
        calls = min(self.rng.randrange(1, 5), self.cap)
        for k in range(calls):
            m = MODELS[min(bisect(_MODEL_CUM, self.rng.random() * _MODEL_CUM[-1]), len(MODELS) - 1)]
            s = self.request_sample(m, team)
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
        obj = {"resourceSpans": [{"resource": {"attributes": resource},
                                  "scopeSpans": [{"scope": scope, "spans": spans}]}]}
        proto = self.fmt == "otlp-proto" or (self.proto_share > 0 and self.rng.random() < self.proto_share)
        # Keyed by service, as the Collector's exporter partitions by resource.
        return Message("telemetry", f"{team}-api".encode(), traces_to_proto(obj) if proto else _enc.encode(obj), calls)

    def metrics(self, t: int, model: _Model, team: str) -> Message:
        """One SDK metrics export of a service: GenAI client histograms over a few dozen calls."""
        rng = self.rng
        n = min(rng.randrange(5, 40), self.cap)
        calls = []
        for _ in range(n):
            m = MODELS[min(bisect(_MODEL_CUM, rng.random() * _MODEL_CUM[-1]), len(MODELS) - 1)]
            s = self.request_sample(m, team)
            calls.append(Call(m.name, m.provider, m.operation, "api." + m.provider.split(".")[0] + ".com",
                              s["latency"], s["in"], s["out"], s["error"]))
        end = t + int(n * self.step_ms) + 1
        resource = {"service.name": f"{team}-api", "team": team, "deployment.environment.name": self.pick(ENVIRONMENTS),
                    "cloud.region": self.pick(REGIONS), "telemetry.sdk.language": "python"}
        value = metrics_request(resource, calls, t * 1_000_000, end * 1_000_000, self.fmt == "otlp-metrics")
        return Message("telemetry", f"{team}-api".encode(), value, n)

    def telemetry_base(self, t: int, model: _Model, team: str) -> Message:
        u = self.rng.random()
        s = self.request_sample(model, team)
        if u < 0.35:
            et, data = "telemetry.latency", {
                "model": model.name, "provider": model.provider, "requestId": f"req-{self.hex(8)}",
                "latencyMs": self.unit(f"{s['latency'] / 1000:.3f}s", round(s["latency"] / 1000, 3) * 1000)
                if self.rng.random() < 0.3 else s["latency"],
                "breakdown": {"queueMs": round(s["latency"] * 0.05, 3),
                              **({"timeToFirstTokenMs": s["ttft"]} if s["ttft"] is not None else {})}}
        elif u < 0.6:
            et, data = "telemetry.tokens", {"model": model.name, "provider": model.provider,
                                            "inputTokens": s["in"], "outputTokens": s["out"]}
        elif u < 0.8:
            rpm = self.rng.uniform(50, 3000)
            et, data = "telemetry.throughput", {
                "model": model.name, "provider": model.provider,
                "requestsPerSecond": self.unit(f"{rpm:.1f}/min", round(rpm, 1) / 60),
                "tokensPerSecond": round(rpm / 60 * 700, 2), "concurrentRequests": self.rng.randrange(1, 80),
                "windowMs": self.unit("1m", 60_000)}
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

    def cost(self, t: int, model: _Model, team: str) -> Message:
        u = self.rng.random()
        if u < 0.8 and self.recent:
            trace, m, team, rt, inp, out, env = self.recent[self.rng.randrange(len(self.recent))]
            usd = (inp * m.in_price + out * m.out_price) / 1e6
            payload = {"model": m.name, "provider": m.provider, "input_tokens": inp, "output_tokens": out,
                       "total_cost": round(usd, 8), "currency": "USD"}
            if self.rng.random() < 0.15:  # an EU billing account reports in euros
                payload["total_cost"] = round(usd / 1.08, 8)
                payload["currency"] = "EUR"
            return self.hub({
                "event_id": self.uuid(), "event_type": "cost.tokens", "event_time": rt + 20, "source": "cost",
                "correlation_id": trace, "environment": env, "tags": {"team": team}, "payload": payload})
        if u < 0.9:
            return self.base("cost.api", "costops", t, {
                "provider": model.provider, "service": "image-generation", "requestCount": self.rng.randrange(1, 40),
                "totalCost": round(self.rng.uniform(0.01, 2.0), 4), "currency": "USD"}, {"team": team})
        if u < 0.97:
            return self.base("cost.resource", "costops", t, {
                "resourceType": "gpu", "resourceId": f"gpu-node-{self.rng.randrange(1, 12)}",
                "model": "llama-3.1-70b-instruct", "durationMs": self.unit("1h", 3_600_000), "gpuCount": 8,
                "memoryBytes": self.unit("640GB", 640 * 1024**3),
                "utilization": round(self.rng.uniform(0.3, 0.95), 3),
                "totalCost": round(self.rng.uniform(20, 40), 2)}, {"team": team})
        limit = self.pick((5000.0, 10000.0, 25000.0))
        return self.base("cost.budget", "costops", t, {
            "budgetId": f"budget-{team}", "budgetName": f"{team} monthly", "scope": team, "period": "monthly",
            "limit": limit, "spent": round(limit * self.rng.uniform(0.8, 1.05), 2), "threshold": 0.8},
            {"team": team, "severity": "high"})

    def policy(self, t: int, model: _Model, team: str) -> Message:
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

    def security(self, t: int, model: _Model, team: str) -> Message:
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

    def governance(self, t: int, model: _Model, team: str) -> Message:
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
        return self.hub({"event_id": self.uuid(), "event_type": et, "event_time": t, "source": "governance",
                         "tags": {"team": team}, "payload": payload})

    def registry(self, t: int, model: _Model, team: str) -> Message:
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

    def bad(self, t: int) -> Message:
        """An input the hub must dead-letter, in the format's own encoding where it has one."""
        if self.fmt in TELEMETRY_ONLY:
            if self.fmt in ("otlp-proto", "otlp-metrics"):  # claims more bytes than follow
                return Message("telemetry", b"bad", b"\x0a\xff\xff\xff\xff\x0f" + self.rng.randbytes(12), 0)
            head = b'{"resourceSpans"' if self.fmt == "otlp-json" else b'{"resourceMetrics"'
            return Message("telemetry", b"bad", head + b': [{"resource": {"attributes": [', 0)
        kind = self.pick(_BAD_KINDS)
        model = MODELS[0]
        fmt, self.fmt = self.fmt, "mix"  # the mutations below edit a hub envelope
        try:
            good = self.request_hub(t, model, "search").value
        finally:
            self.fmt = fmt
        return Message("telemetry", model.name.encode(), self._spoil(kind, good, t), 0)

    def _spoil(self, kind: str, good: bytes, t: int) -> bytes:
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
