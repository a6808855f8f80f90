"""Record what real OpenAI instrumentations emit, as OTLP fixtures for the hub's tests.

A dev tool, not part of the hub: its packages are pinned in
``scripts/genai_fixtures/requirements.txt`` and installed into a throwaway venv
(``.hub/genai-venv``, by ``uv venv`` + ``uv pip install -r``), never into the project's own deps.

What it does:

1. Starts a fake OpenAI-compatible HTTP server on 127.0.0.1 (stdlib ``http.server`` in a
   thread) that stands in for the remote API: ``/v1/chat/completions`` (JSON, and SSE with
   ``stream_options.include_usage``), ``/v1/embeddings``, and scripted failures (HTTP 500,
   HTTP 429 with a JSON error body, a dropped connection, a stream cut mid-way). It answers
   each request from the fixed SCENARIO below and logs what it answered.
2. Runs SCENARIO with the real ``openai`` client once per instrumentation, each in its own
   process (they patch the same client), with ``opentelemetry-instrumentation-httpx`` enabled
   too (as auto-instrumentation would), so HTTP client spans appear as they do in real apps.
3. Exports the spans as the Collector's Kafka exporter would put them on a topic: batches of
   up to BATCH_SPANS spans (in end order) encoded as ``ExportTraceServiceRequest`` by
   ``opentelemetry-exporter-otlp-proto-common``, one request per Kafka message, written as
   - ``tests/data/genai/<name>.otlp.jsonl``: OTLP/JSON, one request per line (protobuf JSON
     mapping, lowerCamelCase, enums as integers, 64-bit integers as strings, and trace/span
     ids as hex, as the OTLP spec's JSON encoding requires, not protobuf's base64);
   - ``tests/data/genai/<name>.otlp.pb.lp``: the same requests as binary protobuf,
     length-prefixed: each message is a 4-byte big-endian unsigned length, then that many bytes.
4. Writes ``tests/data/genai/expected.json``: ground truth from the fake server's own log.
5. Writes ``tests/data/genai/README.md``: versions, scenario, how to regenerate, and what
   each instrumentation's spans carry (an inventory computed from the recorded spans).

Run it with any Python 3.10+ (it re-runs itself in the venv):

    python scripts/record_genai_spans.py            # all instrumentations
    python scripts/record_genai_spans.py --only openllmetry
    python scripts/record_genai_spans.py --verify   # only decode and check the fixtures

Trace and span ids come from a generator seeded per service, so a re-run changes only the
timestamps and durations.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import random
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "scripts" / "genai_fixtures" / "requirements.txt"
VENV = ROOT / ".hub" / "genai-venv"
OUT = ROOT / "tests" / "data" / "genai"
BATCH_SPANS = 8
API_KEY = "sk-fixture-not-a-real-key"
PREFERRED_PORT = 48231

# name -> service.name, the instrumentation's package, its instrumentor, env for its process.
INSTRUMENTATIONS: dict[str, dict] = {
    "otel_openai_v2": {
        "service": "svc-otel-v2",
        "package": "opentelemetry-instrumentation-openai-v2",
        "instrumentor": "opentelemetry.instrumentation.openai_v2:OpenAIInstrumentor",
        "env": {},
        "about": "OpenTelemetry's official instrumentation, defaults (content capture off)",
    },
    "openllmetry": {
        "service": "svc-openllmetry",
        "package": "opentelemetry-instrumentation-openai",
        "instrumentor": "opentelemetry.instrumentation.openai:OpenAIInstrumentor",
        "env": {},
        "about": "Traceloop's OpenLLMetry instrumentation, defaults (content capture on)",
    },
    "openinference": {
        "service": "svc-openinference",
        "package": "openinference-instrumentation-openai",
        "instrumentor": "openinference.instrumentation.openai:OpenAIInstrumentor",
        "env": {},
        "about": "Arize's OpenInference instrumentation, defaults (content capture on)",
    },
}
# Packages whose versions the README lists.
VERSION_PACKAGES = ("openai", "httpx2", "opentelemetry-api", "opentelemetry-sdk",
                    "opentelemetry-exporter-otlp-proto-common", "opentelemetry-proto", "protobuf",
                    "opentelemetry-instrumentation-httpx", "opentelemetry-instrumentation-openai-v2",
                    "opentelemetry-util-genai", "opentelemetry-instrumentation-openai",
                    "opentelemetry-semantic-conventions-ai", "openinference-instrumentation-openai",
                    "openinference-instrumentation", "openinference-semantic-conventions")

# What the fake API answers for a requested model.
RESPONSE_MODEL = {
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-4o": "gpt-4o-2024-08-06",
    "o3-mini": "o3-mini-2025-01-31",
    "o4-mini": "o4-mini-2025-04-16",
    "text-embedding-3-small": "text-embedding-3-small",
}


def _step(sid: str, api: str, model: str, *, outcome: str = "ok", usage: tuple = (0, 0, 0, 0),
          details: bool = True, stream: bool = False, include_usage: bool = True,
          aio: bool = False, parent: bool = True, n: int = 1, tools: bool = False,
          inputs: int = 1, params: dict | None = None) -> dict:
    """One call of the scenario. usage = (prompt, completion, cached, reasoning) tokens the server
    reports when the call succeeds; cached is part of prompt and reasoning part of completion, as in
    OpenAI's usage. details=False leaves out prompt/completion_tokens_details, as some
    OpenAI-compatible servers do. outcome: ok | http_500 | http_429 | drop (connection closed
    before any response) | stream_drop (a stream cut after two chunks)."""
    return {"id": sid, "api": api, "model": model, "outcome": outcome, "usage": usage,
            "details": details, "stream": stream, "include_usage": include_usage, "aio": aio,
            "parent": parent, "n": n, "tools": tools, "inputs": inputs, "params": params or {}}


SCENARIO: list[dict] = [
    _step("chat_basic_1", "chat", "gpt-4o-mini", usage=(23, 41, 0, 0)),
    _step("chat_basic_2", "chat", "gpt-4o-mini", usage=(57, 12, 0, 0),
          params={"temperature": 0.2, "max_tokens": 64, "top_p": 0.9}),
    _step("chat_basic_3", "chat", "gpt-4o", usage=(96, 150, 0, 0), params={"seed": 7}),
    _step("chat_cached", "chat", "gpt-4o-mini", usage=(2048, 88, 1536, 0)),
    _step("chat_no_details", "chat", "gpt-4o", usage=(310, 95, 0, 0), details=False),
    _step("chat_reasoning", "chat", "o3-mini", usage=(120, 640, 0, 512),
          params={"reasoning_effort": "low", "max_completion_tokens": 2000}),
    _step("chat_reasoning_cached", "chat", "o4-mini", usage=(1800, 900, 1024, 768),
          params={"max_completion_tokens": 4000}),
    _step("chat_n2", "chat", "gpt-4o-mini", usage=(30, 60, 0, 0), n=2, params={"temperature": 1.0}),
    _step("chat_tool_call", "chat", "gpt-4o-mini", usage=(150, 22, 0, 0), tools=True),
    _step("stream_basic", "chat", "gpt-4o-mini", usage=(19, 7, 0, 0), stream=True),
    _step("stream_cached", "chat", "gpt-4o", usage=(1200, 33, 1024, 0), stream=True),
    _step("stream_reasoning", "chat", "o3-mini", usage=(80, 300, 0, 256), stream=True),
    _step("stream_no_usage", "chat", "gpt-4o-mini", usage=(15, 6, 0, 0), stream=True,
          include_usage=False),
    _step("embeddings_single", "embeddings", "text-embedding-3-small", usage=(8, 0, 0, 0)),
    _step("embeddings_batch", "embeddings", "text-embedding-3-small", usage=(24, 0, 0, 0), inputs=3),
    _step("err_500", "chat", "gpt-4o-mini", outcome="http_500"),
    _step("err_429", "chat", "gpt-4o-mini", outcome="http_429"),
    _step("err_drop", "chat", "gpt-4o", outcome="drop"),
    _step("err_stream_500", "chat", "gpt-4o-mini", outcome="http_500", stream=True),
    _step("err_stream_drop", "chat", "gpt-4o-mini", outcome="stream_drop", stream=True),
    _step("err_embeddings_429", "embeddings", "text-embedding-3-small", outcome="http_429"),
    _step("chat_after_errors", "chat", "gpt-4o-mini", usage=(64, 16, 0, 0)),
    _step("async_chat", "chat", "gpt-4o-mini", usage=(44, 18, 0, 0), aio=True, parent=False),
    _step("async_chat_cached", "chat", "gpt-4o", usage=(1500, 40, 1280, 0), aio=True, parent=False),
    _step("async_stream", "chat", "gpt-4o-mini", usage=(52, 9, 0, 0), stream=True, aio=True,
          parent=False),
    _step("async_embeddings", "embeddings", "text-embedding-3-small", usage=(5, 0, 0, 0), aio=True,
          parent=False),
    _step("async_err_500", "chat", "gpt-4o-mini", outcome="http_500", aio=True, parent=False),
    _step("async_err_drop", "chat", "gpt-4o-mini", outcome="drop", aio=True, parent=False),
]


# --------------------------------------------------------------------------- the fake API


def _answer_text(step: dict, choice: int = 0) -> str:
    return f"Answer {choice} for {step['id']}, from the fake API."


def _usage_body(step: dict) -> dict:
    prompt, completion, cached, reasoning = step["usage"]
    if step["api"] == "embeddings":
        return {"prompt_tokens": prompt, "total_tokens": prompt}
    usage = {"prompt_tokens": prompt, "completion_tokens": completion,
             "total_tokens": prompt + completion}
    if step["details"]:
        usage["prompt_tokens_details"] = {"cached_tokens": cached, "audio_tokens": 0}
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning, "audio_tokens": 0,
                                              "accepted_prediction_tokens": 0,
                                              "rejected_prediction_tokens": 0}
    return usage


ERROR_BODIES = {
    "http_500": (500, {"error": {"message": "The server had an error while processing your request. "
                                            "Sorry about that!", "type": "server_error",
                                 "param": None, "code": None}}),
    "http_429": (429, {"error": {"message": "Rate limit reached for requests. Limit: 500 / min. "
                                            "Please try again in 120ms.", "type": "requests",
                                 "param": None, "code": "rate_limit_exceeded"}}),
}


class FakeOpenAI(ThreadingHTTPServer):
    """Answers each request with the next step of SCENARIO for the current service, checks that
    the request is the one the step makes, and logs what it answered."""

    daemon_threads = True

    def __init__(self) -> None:
        try:  # a fixed port keeps URLs in the spans the same from run to run
            super().__init__(("127.0.0.1", PREFERRED_PORT), _Handler)
        except OSError:
            super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.log: list[dict] = []
        self.problems: list[str] = []
        self.service = ""
        self.cursor = 0

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)

    def begin(self, service: str) -> None:
        with self.lock:
            self.service, self.cursor = service, 0

    def next_step(self) -> tuple[str, int, dict | None]:
        with self.lock:
            seq = self.cursor
            self.cursor += 1
            return self.service, seq, SCENARIO[seq] if seq < len(SCENARIO) else None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeOpenAI

    def log_message(self, format: str, *args) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        service, seq, step = self.server.next_step()
        try:
            req = json.loads(body or b"{}")
        except ValueError:
            req = {}
        path = self.path.split("?")[0]
        want_path = "/v1/chat/completions" if step and step["api"] == "chat" else "/v1/embeddings"
        if step is None or path != want_path or req.get("model") != step["model"] \
                or bool(req.get("stream")) != step["stream"]:
            self.server.problems.append(f"{service} #{seq}: unexpected {path} {req.get('model')} "
                                        f"stream={req.get('stream')} for step {step and step['id']}")
            return self._json(400, {"error": {"message": "unexpected request", "type": "invalid_request_error",
                                              "param": None, "code": None}}, seq)
        include_usage = bool((req.get("stream_options") or {}).get("include_usage"))
        if step["stream"] and include_usage != step["include_usage"]:
            self.server.problems.append(f"{service} {step['id']}: include_usage={include_usage}")
        traceparent = self.headers.get("traceparent")
        record = {"service": service, "seq": seq, "step": step["id"], "path": path,
                  "operation": step["api"], "request_model": req.get("model"), "stream": step["stream"],
                  "include_usage": include_usage if step["stream"] else None,
                  "outcome": step["outcome"], "http_status": None, "response_model": None,
                  "usage": None, "traceparent": traceparent,
                  "trace_id": traceparent.split("-")[1] if traceparent else None}
        self.server.log.append(record)
        outcome = step["outcome"]
        if outcome in ERROR_BODIES:
            status, payload = ERROR_BODIES[outcome]
            record["http_status"] = status
            return self._json(status, payload, seq)
        if outcome == "drop":
            return self._drop()
        record["response_model"] = RESPONSE_MODEL[step["model"]]
        if step["api"] == "embeddings":
            record["http_status"] = 200
            record["usage"] = _usage_body(step)
            return self._json(200, self._embeddings(step, req), seq)
        created = int(time.time())
        key = f"{service}/{step['id']}".encode()
        cid = "chatcmpl-fx" + hashlib.sha1(key).hexdigest()[:24]
        if not step["stream"]:
            record["http_status"] = 200
            record["usage"] = _usage_body(step)
            return self._json(200, self._completion(step, cid, created), seq)
        record["http_status"] = 200
        if outcome == "ok" and include_usage:
            record["usage"] = _usage_body(step)
        return self._stream(step, cid, created, include_usage, seq, cut=outcome == "stream_drop")

    # -- bodies

    @staticmethod
    def _common(step: dict, cid: str, created: int, obj: str) -> dict:
        return {"id": cid, "object": obj, "created": created, "model": RESPONSE_MODEL[step["model"]],
                "service_tier": "default", "system_fingerprint": "fp_fx" + cid[-8:]}

    def _completion(self, step: dict, cid: str, created: int) -> dict:
        choices = []
        for i in range(step["n"]):
            message = {"role": "assistant", "content": _answer_text(step, i), "refusal": None,
                       "annotations": []}
            finish = "stop"
            if step["tools"]:
                message["content"] = None
                message["tool_calls"] = [{"id": "call_fx" + cid[-12:], "type": "function",
                                          "function": {"name": "get_weather",
                                                       "arguments": "{\"city\":\"Paris\"}"}}]
                finish = "tool_calls"
            choices.append({"index": i, "message": message, "logprobs": None, "finish_reason": finish})
        return {**self._common(step, cid, created, "chat.completion"), "choices": choices,
                "usage": _usage_body(step)}

    @staticmethod
    def _embeddings(step: dict, req: dict) -> dict:
        inputs = req.get("input")
        count = len(inputs) if isinstance(inputs, list) else 1
        data = []
        for i in range(count):
            vector = [round(((i + 1) * (k + 3) % 17) / 17 - 0.5, 4) for k in range(8)]
            if req.get("encoding_format") == "base64":
                packed = base64.b64encode(struct.pack("<8f", *vector)).decode()
                data.append({"object": "embedding", "index": i, "embedding": packed})
            else:
                data.append({"object": "embedding", "index": i, "embedding": vector})
        return {"object": "list", "data": data, "model": RESPONSE_MODEL[step["model"]],
                "usage": _usage_body(step)}

    # -- writing

    def _headers(self, status: int, ctype: str, seq: int, length: int | None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        service_hash = hashlib.sha1(self.server.service.encode()).hexdigest()[:20]
        self.send_header("x-request-id", f"req_fx{seq:04d}{service_hash}")
        self.send_header("openai-processing-ms", "42")
        if status == 429:
            self.send_header("retry-after-ms", "120")
            self.send_header("x-ratelimit-limit-requests", "500")
            self.send_header("x-ratelimit-remaining-requests", "0")
        if length is None:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(length))
        self.end_headers()

    def _json(self, status: int, payload: dict, seq: int) -> None:
        data = json.dumps(payload).encode()
        self._headers(status, "application/json", seq, len(data))
        self.wfile.write(data)
        self.wfile.flush()

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _stream(self, step: dict, cid: str, created: int, include_usage: bool, seq: int, cut: bool) -> None:
        self._headers(200, "text/event-stream; charset=utf-8", seq, None)
        base = self._common(step, cid, created, "chat.completion.chunk")

        def event(choices: list, usage: dict | None = None, last: bool = False) -> None:
            chunk = {**base, "choices": choices}
            if include_usage:
                chunk["usage"] = usage
            self._chunk(b"data: " + json.dumps(chunk).encode() + b"\n\n")

        event([{"index": 0, "delta": {"role": "assistant", "content": "", "refusal": None},
                "logprobs": None, "finish_reason": None}])
        words = _answer_text(step).split(" ")
        parts = [" ".join(words[:2]) + " ", " ".join(words[2:5]) + " ", " ".join(words[5:])]
        for i, part in enumerate(parts):
            event([{"index": 0, "delta": {"content": part}, "logprobs": None, "finish_reason": None}])
            if cut and i == 1:
                return self._drop()
        event([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}])
        if include_usage:
            event([], _usage_body(step))
        self._chunk(b"data: [DONE]\n\n")
        self._chunk(b"")


# --------------------------------------------------------------------------- the instrumented client (child process)


def run_child(name: str, port: int, workdir: Path) -> None:
    """Runs SCENARIO under one instrumentation and writes its OTLP files and a run report."""
    import importlib
    from importlib import metadata

    from opentelemetry import trace
    from opentelemetry.instrumentation.httpx import HTTPX2ClientInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
    from opentelemetry.sdk.trace.id_generator import IdGenerator

    spec = INSTRUMENTATIONS[name]

    class SeededIds(IdGenerator):
        def __init__(self, seed: str) -> None:
            self.rng = random.Random(seed)

        def generate_span_id(self) -> int:
            return self.rng.getrandbits(64) or 1

        def generate_trace_id(self) -> int:
            return self.rng.getrandbits(128) or 1

    class Keep(SpanExporter):
        def __init__(self) -> None:
            self.spans: list = []

        def export(self, spans):
            self.spans.extend(spans)
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            pass

    kept = Keep()
    provider = TracerProvider(resource=Resource.create({"service.name": spec["service"]}),
                              id_generator=SeededIds(spec["service"]))
    provider.add_span_processor(SimpleSpanProcessor(kept))
    trace.set_tracer_provider(provider)
    HTTPX2ClientInstrumentor().instrument(tracer_provider=provider)  # openai 3.x is on httpx2
    module, cls = spec["instrumentor"].split(":")
    getattr(importlib.import_module(module), cls)().instrument(tracer_provider=provider)

    import openai

    app = trace.get_tracer("fixture.app")
    base_url = f"http://127.0.0.1:{port}/v1"
    client = openai.OpenAI(base_url=base_url, api_key=API_KEY, max_retries=0, timeout=10)
    aclient = openai.AsyncOpenAI(base_url=base_url, api_key=API_KEY, max_retries=0, timeout=10)
    report: list[dict] = []
    loop = asyncio.new_event_loop()  # one loop for all async steps, as an async app has

    def kwargs_for(step: dict) -> dict:
        kw = {"model": step["model"]}
        if step["api"] == "embeddings":
            kw["input"] = ([f"fixture text {i} for {step['id']}" for i in range(step["inputs"])]
                           if step["inputs"] > 1 else f"fixture text for {step['id']}")
            return kw
        kw["messages"] = [{"role": "system", "content": "You are a terse assistant."},
                          {"role": "user", "content": f"Say something for {step['id']}."}]
        if step["n"] > 1:
            kw["n"] = step["n"]
        if step["tools"]:
            kw["tools"] = [{"type": "function", "function": {
                "name": "get_weather", "description": "Current weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                               "required": ["city"]}}}]
        if step["stream"]:
            kw["stream"] = True
            if step["include_usage"]:
                kw["stream_options"] = {"include_usage": True}
        kw.update(step["params"])
        return kw

    def call(step: dict) -> dict:
        api = client.embeddings if step["api"] == "embeddings" else client.chat.completions
        result = api.create(**kwargs_for(step))
        if step["stream"]:
            chunks = [c for c in result]
            return {"chunks": len(chunks)}
        return {"model": result.model}

    async def acall(step: dict) -> dict:
        api = aclient.embeddings if step["api"] == "embeddings" else aclient.chat.completions
        result = await api.create(**kwargs_for(step))
        if step["stream"]:
            chunks = [c async for c in result]
            return {"chunks": len(chunks)}
        return {"model": result.model}

    def run(step: dict) -> dict:
        try:
            got = loop.run_until_complete(acall(step)) if step["aio"] else call(step)
            return {"step": step["id"], "raised": None, **got}
        except Exception as exc:  # noqa: BLE001 - recording what the client raised is the point
            return {"step": step["id"], "raised": f"{type(exc).__module__}.{type(exc).__qualname__}"}

    for step in SCENARIO:
        if step["parent"]:
            with app.start_as_current_span("scenario step", attributes={"app.step": step["id"]}):
                report.append(run(step))
        else:
            report.append(run(step))
    loop.run_until_complete(aclient.close())
    loop.close()
    client.close()
    import gc

    gc.collect()
    provider.force_flush()
    provider.shutdown()

    from google.protobuf.json_format import MessageToDict
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    jsonl, pb = [], bytearray()
    spans = kept.spans
    for i in range(0, len(spans), BATCH_SPANS):
        request = encode_spans(spans[i:i + BATCH_SPANS])
        data = request.SerializeToString()
        pb += struct.pack(">I", len(data)) + data
        jsonl.append(json.dumps(otlp_json(request, MessageToDict), separators=(",", ":")))
    (workdir / f"{name}.otlp.jsonl").write_text("\n".join(jsonl) + "\n")
    (workdir / f"{name}.otlp.pb.lp").write_bytes(bytes(pb))
    versions = {}
    for pkg in VERSION_PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    (workdir / f"{name}.run.json").write_text(json.dumps(
        {"calls": report, "spans": len(spans), "requests": len(jsonl), "versions": versions}, indent=1))


_ID_KEYS = ("traceId", "spanId", "parentSpanId")


def _hex_ids(node):
    """protobuf's JSON mapping writes bytes as base64; OTLP/JSON wants trace/span ids as hex."""
    if isinstance(node, dict):
        return {k: (base64.b64decode(v).hex() if k in _ID_KEYS and isinstance(v, str) else _hex_ids(v))
                for k, v in node.items()}
    if isinstance(node, list):
        return [_hex_ids(v) for v in node]
    return node


def otlp_json(request, message_to_dict) -> dict:
    """An ExportTraceServiceRequest as OTLP/JSON: lowerCamelCase keys, enums as integers, ids as hex."""
    return _hex_ids(message_to_dict(request, use_integers_for_enums=True))


# --------------------------------------------------------------------------- verification and analysis


def read_pb(path: Path) -> list[bytes]:
    data, out, pos = path.read_bytes(), [], 0
    while pos < len(data):
        (size,) = struct.unpack_from(">I", data, pos)
        out.append(data[pos + 4:pos + 4 + size])
        pos += 4 + size
    if pos != len(data):
        raise ValueError(f"{path}: trailing bytes")
    return out


def verify(names: list[str]) -> dict[str, list[dict]]:
    """Decodes every JSON line and every protobuf message, checks the two files say the same,
    and returns the spans per instrumentation (as OTLP/JSON dicts, each with its resource/scope)."""
    from google.protobuf.json_format import MessageToDict
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    out = {}
    for name in names:
        lines = (OUT / f"{name}.otlp.jsonl").read_text().splitlines()
        docs = [json.loads(line) for line in lines]
        messages = read_pb(OUT / f"{name}.otlp.pb.lp")
        if len(docs) != len(messages):
            raise SystemExit(f"{name}: {len(docs)} JSON lines but {len(messages)} protobuf messages")
        spans = []
        for doc, raw in zip(docs, messages, strict=True):
            request = ExportTraceServiceRequest()
            request.ParseFromString(raw)
            if otlp_json(request, MessageToDict) != doc:
                raise SystemExit(f"{name}: a JSON line and its protobuf message differ")
            for rs in doc["resourceSpans"]:
                resource = {a["key"]: _value(a["value"]) for a in rs["resource"].get("attributes", [])}
                for ss in rs["scopeSpans"]:
                    for span in ss["spans"]:
                        for key in ("traceId", "spanId"):
                            if len(span[key]) not in (32, 16) or int(span[key], 16) == 0:
                                raise SystemExit(f"{name}: bad {key} {span[key]!r}")
                        spans.append({**span, "_scope": ss["scope"]["name"], "_resource": resource})
        out[name] = spans
        print(f"verified {name}: {len(docs)} requests, {len(spans)} spans", file=sys.stderr)
    return out


def _value(v: dict):
    if "stringValue" in v:
        return v["stringValue"]
    if "intValue" in v:
        return int(v["intValue"])
    if "doubleValue" in v:
        return v["doubleValue"]
    if "boolValue" in v:
        return v["boolValue"]
    if "arrayValue" in v:
        return [_value(x) for x in v["arrayValue"].get("values", [])]
    return json.dumps(v)


def attrs(span: dict) -> dict:
    return {a["key"]: _value(a["value"]) for a in span.get("attributes", [])}


def _tokens(usage: dict | None) -> list[int] | None:
    """[input, output, cached input, reasoning output] from an OpenAI usage object."""
    if not usage:
        return None
    return [usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0),
            (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0),
            (usage.get("completion_tokens_details") or {}).get("reasoning_tokens", 0)]


def expected(log: list[dict], names: list[str]) -> dict:
    """Ground truth per service, from what the fake server answered."""
    services = {}
    for name in names:
        service = INSTRUMENTATIONS[name]["service"]
        calls = [r for r in log if r["service"] == service]
        ok = [r for r in calls if r["outcome"] == "ok"]
        usage = [r["usage"] for r in ok if r["usage"]]

        def total(key: str, sub: str | None = None, usage: list[dict] = usage) -> int:
            if sub:
                return sum((u.get(key) or {}).get(sub, 0) for u in usage)
            return sum(u.get(key, 0) for u in usage)

        services[service] = {
            "instrumentation": name,
            "calls": len(calls),
            "failed_calls": len(calls) - len(ok),
            "failed_by_outcome": dict(sorted(Counter(r["outcome"] for r in calls if r["outcome"] != "ok").items())),
            "successful_calls": len(ok),
            "successful_calls_without_usage": len(ok) - len(usage),
            "streaming_calls": sum(r["stream"] for r in calls),
            "calls_by_operation": dict(sorted(Counter(r["operation"] for r in calls).items())),
            "input_tokens": total("prompt_tokens"),
            "output_tokens": total("completion_tokens"),
            "total_tokens": total("total_tokens"),
            "cached_input_tokens": total("prompt_tokens_details", "cached_tokens"),
            "reasoning_output_tokens": total("completion_tokens_details", "reasoning_tokens"),
            "request_models": dict(sorted(Counter(r["request_model"] for r in calls).items())),
            "response_models": dict(sorted(Counter(r["response_model"] for r in ok).items())),
            "calls_log": [{"seq": r["seq"], "step": r["step"], "operation": r["operation"],
                           "request_model": r["request_model"], "stream": r["stream"],
                           "outcome": r["outcome"], "http_status": r["http_status"],
                           "response_model": r["response_model"], "tokens": _tokens(r["usage"]),
                           "trace_id": r["trace_id"]} for r in calls],
        }
    return {
        "about": "Ground truth from the fake OpenAI server's log of what it answered (not from the spans), "
                 "per service.name. calls = HTTP requests the server received (the client runs with "
                 "max_retries=0, so one per client call). failed_calls = calls answered with HTTP 500/429, "
                 "a dropped connection, or a stream cut before its end. Token totals are over successful "
                 "calls only, as the server reported them in `usage`: input_tokens = sum of prompt_tokens "
                 "(cached_input_tokens are part of it), output_tokens = sum of completion_tokens "
                 "(reasoning_output_tokens are part of it). A stream requested without "
                 "stream_options.include_usage reports no usage (successful_calls_without_usage). "
                 "response_models counts successful calls; failed calls got no response model, except a "
                 "cut stream, whose chunks before the cut did carry it (see calls_log). calls_log has one entry "
                 "per call in order: tokens = [input, output, cached input, reasoning output] as reported "
                 "(null when no usage was reported), trace_id = the trace id of the W3C traceparent header "
                 "the request carried (every call's spans are in that trace).",
        "services": services,
    }


def dump_expected(exp: dict) -> str:
    """Indented JSON with each calls_log entry on one line."""
    logs = {s: e.pop("calls_log") for s, e in exp["services"].items()}
    for service, e in exp["services"].items():
        e["calls_log"] = f"@@{service}@@"
    text = json.dumps(exp, indent=1)
    for service, rows in logs.items():
        lines = ",\n   ".join(json.dumps(r, separators=(", ", ": ")) for r in rows)
        text = text.replace(f'"@@{service}@@"', "[\n   " + lines + "\n  ]")
        exp["services"][service]["calls_log"] = rows
    json.loads(text)
    return text + "\n"


# --------------------------------------------------------------------------- README


NON_LLM_SCOPES = ("fixture.app", "opentelemetry.instrumentation.httpx")


def _is_llm(span: dict) -> bool:
    return span["_scope"] not in NON_LLM_SCOPES


KIND = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}


def inventory(name: str, spans: list[dict], log: list[dict]) -> list[str]:
    """Markdown lines describing the recorded spans of one instrumentation."""
    service = INSTRUMENTATIONS[name]["service"]
    by_id = {s["spanId"]: s for s in spans}
    trace_step = {r["trace_id"]: r["step"] for r in log if r["service"] == service and r["trace_id"]}
    steps = {s["id"]: s for s in SCENARIO}

    def step_of(span: dict) -> dict | None:
        cur = span
        while cur is not None:
            a = attrs(cur)
            if "app.step" in a:
                return steps[a["app.step"]]
            cur = by_id.get(cur.get("parentSpanId", ""))
        sid = trace_step.get(span["traceId"])
        return steps.get(sid) if sid else None

    llm = [s for s in spans if _is_llm(s)]
    other = [s for s in spans if not _is_llm(s)]
    lines = [f"Spans: {len(spans)} in all, {len(llm)} from the instrumentation, "
             f"{len(other)} others.", ""]
    lines.append("| span | scope | kind | count |")
    lines.append("| --- | --- | --- | --- |")
    for (sname, scope, kind), count in sorted(Counter((s["name"], s["_scope"], KIND.get(s.get("kind", 0)))
                                                      for s in spans).items()):
        lines.append(f"| `{sname}` | `{scope}` | {kind} | {count} |")
    lines.append("")
    groups: dict[str, list[dict]] = {}
    unmatched = 0
    for span in llm:
        step = step_of(span)
        if step is None:
            unmatched += 1
            continue
        kind = ("embeddings" if step["api"] == "embeddings" else "chat stream" if step["stream"] else "chat")
        kind += " ok" if step["outcome"] == "ok" else f" failed ({step['outcome']})"
        groups.setdefault(kind, []).append(span)
    if unmatched:
        lines += [f"{unmatched} instrumentation spans could not be tied to a scenario step.", ""]
    lines.append("Attribute keys on the instrumentation's spans, by kind of call "
                 "(values shown when they are the same on every span of the kind):")
    lines.append("")
    for kind in sorted(groups):
        group = groups[kind]
        keys = sorted({k for s in group for k in attrs(s)})
        status = Counter(s.get("status", {}).get("code", 0) for s in group)
        events = sorted({e["name"] for s in group for e in s.get("events", [])})
        shown = []
        for key in keys:
            values = {json.dumps(attrs(s).get(key)) for s in group}
            if len(values) == 1 and len(next(iter(values))) <= 60:
                shown.append(f"`{key}`={next(iter(values))}")
            else:
                shown.append(f"`{key}`")
        status_txt = ", ".join(f"{ {0: 'UNSET', 1: 'OK', 2: 'ERROR'}[c]}×{n}" for c, n in sorted(status.items()))
        lines.append(f"- **{kind}** ({len(group)} spans; status {status_txt}"
                     + (f"; events {', '.join(events)}" if events else "") + "): " + ", ".join(shown))
    lines += ["", "Attribute keys on the other spans:", ""]
    for (sname, scope), group in sorted(_group(other, lambda s: (s["name"], s["_scope"])).items()):
        keys = sorted({k for s in group for k in attrs(s)})
        status = Counter(s.get("status", {}).get("code", 0) for s in group)
        status_txt = ", ".join(f"{ {0: 'UNSET', 1: 'OK', 2: 'ERROR'}[c]}×{n}" for c, n in sorted(status.items()))
        parents = Counter(by_id[s["parentSpanId"]]["_scope"] if s.get("parentSpanId") in by_id else "none (root)"
                          for s in group)
        lines.append(f"- `{sname}` ({scope}; status {status_txt}; parent scope "
                     + ", ".join(f"{p}×{n}" for p, n in sorted(parents.items())) + "): "
                     + ", ".join(f"`{k}`" for k in keys))
    lines.append("")
    return lines


def _group(items: list, key) -> dict:
    out: dict = {}
    for item in items:
        out.setdefault(key(item), []).append(item)
    return out


def write_readme(runs: dict[str, dict], spans: dict[str, list[dict]], log: list[dict], exp: dict,
                 notes: str) -> None:
    first = next(iter(runs.values()))
    sizes = {p.name: p.stat().st_size for p in sorted(OUT.iterdir()) if p.is_file() and p.name != "README.md"}
    out = ["# Spans from real OpenAI instrumentations", "",
           "Generated by `scripts/record_genai_spans.py` (do not edit by hand: edit the script's "
           "NOTES and re-run it). The calls were made by the real `openai` Python client against a "
           "local fake OpenAI-compatible server, once per instrumentation, each in its own process, "
           "with `opentelemetry-instrumentation-httpx` enabled beside it. "
           "`tests/test_real_instrumentations.py` runs them through the normalizer and the whole flow.", "",
           "## Files", "",
           "| file | bytes | what |", "| --- | --- | --- |"]
    for fname, size in sizes.items():
        what = ("OTLP/JSON: one ExportTraceServiceRequest per line (one Kafka message each)"
                if fname.endswith(".jsonl") else
                "the same requests as binary protobuf, each prefixed by its length (4 bytes, big-endian)"
                if fname.endswith(".pb.lp") else "ground truth from the fake server's log"
                if fname == "expected.json" else "")
        out.append(f"| `{fname}` | {size} | {what} |")
    out += ["",
            "Both stand for what the OpenTelemetry Collector's Kafka exporter publishes with "
            "`encoding: otlp_json` / `otlp_proto`, one `ExportTraceServiceRequest` per Kafka message: "
            "here the SDK's spans, in the order they ended, in "
            f"batches of up to {BATCH_SPANS}, each batch encoded by "
            "`opentelemetry-exporter-otlp-proto-common`'s `encode_spans` as one "
            "`ExportTraceServiceRequest` (resourceSpans > scopeSpans > spans; a batch may hold spans "
            "of several traces, and a trace may span batches). The JSON is protobuf's JSON mapping "
            "(`MessageToDict`, lowerCamelCase keys, default values left out, 64-bit integers such as "
            "`startTimeUnixNano` and `intValue` as strings) with the OTLP/JSON rules on top: enums as "
            "integers (`kind`, `status.code`) and `traceId`/`spanId`/`parentSpanId` as lowercase hex, "
            "not base64. To read the protobuf file:", "",
            "```python",
            "import struct",
            "from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest",
            "data, pos = open(path, 'rb').read(), 0",
            "while pos < len(data):",
            "    (n,) = struct.unpack_from('>I', data, pos)",
            "    request = ExportTraceServiceRequest.FromString(data[pos + 4:pos + 4 + n])",
            "    pos += 4 + n",
            "```", "",
            "Trace and span ids come from a generator seeded by the service name, and the fake server "
            f"listens on 127.0.0.1:{PREFERRED_PORT} when it is free, so regenerating changes little "
            "besides timestamps and durations (real, from the run's wall clock) and the resource's "
            "`service.instance.id` (a random UUID the SDK adds).", "",
            "## Versions", "",
            "Python " + first["python"] + "; the pins are in `scripts/genai_fixtures/requirements.txt`.", "",
            "| package | version |", "| --- | --- |"]
    out += [f"| {pkg} | {ver} |" for pkg, ver in first["versions"].items()]
    out += ["", "## Instrumentations", "", "| file prefix | service.name | package | setup |",
            "| --- | --- | --- | --- |"]
    for name in runs:
        spec = INSTRUMENTATIONS[name]
        env = ", ".join(f"`{k}={v}`" for k, v in spec["env"].items()) or "no env flags"
        out.append(f"| `{name}` | `{spec['service']}` | {spec['package']} | {spec['about']}; {env} |")
    out += ["", "Every process: `OpenAI(base_url=http://127.0.0.1:PORT/v1, max_retries=0)` and its async "
            "twin, `HTTPX2ClientInstrumentor().instrument()` (openai 3.x is built on httpx2) then the "
            "instrumentation's "
            "`OpenAIInstrumentor().instrument()`, an SDK `TracerProvider` whose resource is "
            "`service.name` plus what the SDK adds (`telemetry.sdk.*`, `service.instance.id`), and no OTEL_/TRACELOOP_/"
            "OPENINFERENCE_ variables other than those listed. No meter or logger provider is set, so "
            "the instrumentations' metrics and log events are not recorded.", "",
            "## Scenario", "",
            "The same calls in the same order for every instrumentation. Steps marked *parent* run "
            "inside an application span `scenario step` (scope `fixture.app`, attribute `app.step` = "
            "the step id); the async steps run without one, so their instrumentation span is a root "
            "span. Tokens are (prompt, completion, cached, reasoning) as the server reports them; "
            "`details: no` means the usage has no `*_tokens_details` objects.", "",
            "| # | step | client | API | model → response model | stream | outcome | usage | parent | "
            "client raised (per instrumentation when they differ) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for i, step in enumerate(SCENARIO):
        raised = {n: next(c["raised"] for c in runs[n]["calls"] if c["step"] == step["id"]) for n in runs}
        distinct = set(raised.values())
        raised_txt = ("" if distinct == {None} else
                      f"`{distinct.pop()}`" if len(distinct) == 1 else
                      "; ".join(f"{n}: `{v}`" for n, v in raised.items()))
        stream = ("yes" + ("" if step["include_usage"] else ", no include_usage")) if step["stream"] else ""
        usage = "" if step["outcome"] != "ok" else "none reported" if not step["include_usage"] else (
            f"{step['usage'][:1] if step['api'] == 'embeddings' else step['usage']}"
            + ("" if step["details"] else " details: no"))
        extra = " n=2" if step["n"] > 1 else " tools" if step["tools"] else ""
        answered = RESPONSE_MODEL[step["model"]] if step["outcome"] in ("ok", "stream_drop") else "-"
        out.append(f"| {i} | `{step['id']}` | {'async' if step['aio'] else 'sync'} | {step['api']}{extra} | "
                   f"{step['model']} → {answered} | "
                   f"{stream} | {step['outcome']} | {usage} | {'yes' if step['parent'] else ''} | {raised_txt} |")
    out += ["", "## Expected totals (per service; `expected.json`)", "",
            "| service | calls | failed | input | output | cached input | reasoning output | no usage |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for service, e in exp["services"].items():
        out.append(f"| `{service}` | {e['calls']} | {e['failed_calls']} | {e['input_tokens']} | "
                   f"{e['output_tokens']} | {e['cached_input_tokens']} | {e['reasoning_output_tokens']} | "
                   f"{e['successful_calls_without_usage']} |")
    out += ["", exp["about"], "",
            "## How to regenerate", "",
            "```sh",
            "python scripts/record_genai_spans.py           # venv in .hub/genai-venv, then all runs",
            "python scripts/record_genai_spans.py --verify  # decode and cross-check the files only",
            "```", "",
            "To move to newer versions, edit `scripts/genai_fixtures/requirements.in`, re-pin with the "
            "`uv pip compile` line at its top, re-run, and re-read the notes below against the "
            "inventory.", "",
            "## Observations", "", notes.strip(), "",
            "## Inventory (computed from the recorded spans)", ""]
    for name in runs:
        out += [f"### `{name}` (`{INSTRUMENTATIONS[name]['service']}`)", ""]
        out += inventory(name, spans[name], log)
    (OUT / "README.md").write_text("\n".join(out).rstrip() + "\n")


NOTES = """\
Written by hand for the versions above, from the inventory below (which is recomputed on every run).

| | `otel_openai_v2` | `openllmetry` | `openinference` |
| --- | --- | --- | --- |
| span names | `chat {request model}`, `embeddings {request model}` | `openai.chat`, `openai.embeddings` | `ChatCompletion`, `CreateEmbeddings` |
| span kind | CLIENT | CLIENT | INTERNAL |
| scope | chat: `opentelemetry.util.genai.handler`; embeddings: `opentelemetry.instrumentation.openai_v2` | `opentelemetry.instrumentation.openai.v1` | `openinference.instrumentation.openai` |
| what marks an LLM span | `gen_ai.operation.name` = `chat` / `embeddings` | `gen_ai.operation.name` = `chat` / `embeddings` | `openinference.span.kind` = `LLM` / `EMBEDDING` |
| provider | `gen_ai.provider.name`=`openai` | `gen_ai.provider.name`=`openai` | `llm.system`=`openai` (no `llm.provider`) |
| request model | `gen_ai.request.model` | `gen_ai.request.model` | no attribute of its own: only the `"model"` key inside the JSON string `llm.invocation_parameters` / `embedding.invocation_parameters` (and inside `input.value`) |
| response model | `gen_ai.response.model` | `gen_ai.response.model` | `llm.model_name` (chat) / `embedding.model_name` (embeddings): the *response* model, absent when no response came |
| input / output tokens | `gen_ai.usage.input_tokens` / `gen_ai.usage.output_tokens` (no total) | `gen_ai.usage.input_tokens` / `gen_ai.usage.output_tokens` / `gen_ai.usage.total_tokens` | `llm.token_count.prompt` / `llm.token_count.completion` / `llm.token_count.total` |
| cached input tokens | not recorded for chat completions (only its Responses-API path has `gen_ai.usage.cache_read.input_tokens`) | `gen_ai.usage.cache_read.input_tokens` (also `0` on embeddings) | `llm.token_count.prompt_details.cache_read` |
| reasoning tokens | not recorded | `gen_ai.usage.reasoning_tokens`, non-streaming calls only (missing on streams even when the usage chunk has it) | `llm.token_count.completion_details.reasoning` (streams too) |
| usage without `*_tokens_details` | input/output as usual | no cached/reasoning attributes at all | no `prompt_details.*`/`completion_details.*` |
| errors | status ERROR with the client's message; `error.type` = `"<class 'openai.RateLimitError'>"` on chat (the class object stringified, with an SDK warning), `"RateLimitError"` on embeddings; no exception event | status ERROR, `error.type` = class name (`RateLimitError`, `InternalServerError`, `APIConnectionError`), an `exception` event with stack trace | status ERROR, message `"RateLimitError: Error code: 429 - ..."`, an `exception` event; no `error.type` |
| success status | UNSET | UNSET, but OK on streams | OK |
| streaming | nothing marks it (streams lack `gen_ai.response.finish_reasons` and `openai.response.system_fingerprint`, that's all) | `gen_ai.is_streaming`=true, one `gen_ai.content.completion.chunk` event per chunk | a `First Token Stream Event` event; `"stream": true` inside `llm.invocation_parameters` |
| failed calls carry a response model? | no, except the cut stream (model and id from the chunks before the cut) | same | same (`llm.model_name`) |
| stream cut mid-way (`err_stream_drop`) | ERROR, `APIConnectionError`, response model, no usage | **status OK, no error attribute**, response model, partial output, no usage: looks like a success that reported no usage | ERROR + exception event, response model, partial output, no usage |
| stream without `include_usage` | no token attributes | no token attributes (no estimate) | no token attributes (no estimate) |
| finish reasons | `gen_ai.response.finish_reasons` (`tool_calls` as sent) | `gen_ai.response.finish_reasons` (`tool_calls` mapped to `tool_call`) | `llm.finish_reason` (one string, also for n=2) |
| content (defaults) | none (`OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT` unset) | `gen_ai.input.messages`, `gen_ai.output.messages`, `gen_ai.tool.definitions` (JSON strings; `TRACELOOP_TRACE_CONTENT=false` turns them off) | `input.value`/`output.value` (whole request/response JSON), `llm.input_messages.N.*`, `llm.output_messages.N.*`, `llm.tools.N.*`, embedding texts and vectors (`OPENINFERENCE_HIDE_*` turn them off) |
| other | `gen_ai.request.*` parameters, `gen_ai.response.id`, `openai.response.service_tier`; no `server.address` | `gen_ai.openai.api_base` (the base URL), `gen_ai.request.*`, `gen_ai.response.id`; injects `traceparent` into the request itself | `llm.invocation_parameters` (JSON string), `input.mime_type`/`output.mime_type` |

Token counts are `intValue` (so JSON strings, e.g. `"intValue":"2048"`), finish reasons `arrayValue`.

Non-LLM spans, the same for all three: one HTTP client span per HTTP request, `POST`, kind CLIENT, scope
`opentelemetry.instrumentation.httpx`, a child of the LLM span, with the old HTTP semconv (`http.method`,
`http.url`, `http.status_code`); status ERROR on 429/500 and on a dropped connection (then with an
`exception` event and no status code); for the cut stream it is UNSET with 200, since it ends when the
headers arrive. Plus the scenario's own `scenario step` spans (scope `fixture.app`, INTERNAL, root) for
the sync steps; the async steps' LLM spans are roots. The instrumentations' metrics and log events
are not in these files (no meter or logger provider was set).

Install gotchas met while pinning (why `requirements.in` pins more than the three packages):
`opentelemetry-instrumentation-openai-v2` 2.4b0 imports `httpx` without declaring it (openai 3.x is on
`httpx2`), and imports `opentelemetry.util.genai.instruments`, which `opentelemetry-util-genai` renamed in
1.2b0, so a plain install (util-genai 1.3b0) fails to import; 1.1b0 is pinned. With util-genai 1.0b0 and
later, `is_experimental_mode()` is always true, so `OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental`
changes nothing and the older semconv v1.30 attributes (`gen_ai.system` and friends) never appear: they
are not covered here. HTTP spans need `HTTPX2ClientInstrumentor`; `HTTPXClientInstrumentor` instruments
the old `httpx`, which openai 3.x no longer uses, and gives no spans. OpenInference's
`OPENINFERENCE_ENABLE_GENAI_SEMCONV` (off by default) would add `gen_ai.*` attributes; it is left off.
Not covered: the Responses API (`client.responses`), retries (`max_retries=0`), other providers.
"""


# --------------------------------------------------------------------------- orchestration


def venv_python() -> Path:
    return VENV / "bin" / "python"


def ensure_venv() -> None:
    stamp = VENV / ".requirements.sha256"
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if venv_python().exists() and stamp.exists() and stamp.read_text() == digest:
        return
    VENV.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["uv", "venv", "--quiet", "--allow-existing", "--python", "3.11", str(VENV)], check=True)
    subprocess.run(["uv", "pip", "install", "--quiet", "--python", str(venv_python()), "-r", str(REQUIREMENTS)],
                   check=True)
    stamp.write_text(digest)


def child_env(name: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OTEL_", "TRACELOOP_", "OPENINFERENCE_", "OPENAI_"))
           and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env.update(INSTRUMENTATIONS[name]["env"])
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env["PYTHONHASHSEED"] = "0"
    return env


def record(names: list[str]) -> None:
    server = FakeOpenAI()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    OUT.mkdir(parents=True, exist_ok=True)
    runs = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            for name in names:
                server.begin(INSTRUMENTATIONS[name]["service"])
                print(f"recording {name} ...", file=sys.stderr)
                subprocess.run([sys.executable, __file__, "--child", name, "--port", str(port),
                                "--workdir", str(work)], env=child_env(name), check=True, timeout=600)
                if server.cursor != len(SCENARIO):
                    raise SystemExit(f"{name}: the server saw {server.cursor} requests, "
                                     f"expected {len(SCENARIO)}")
                for suffix in (".otlp.jsonl", ".otlp.pb.lp"):
                    (OUT / f"{name}{suffix}").write_bytes((work / f"{name}{suffix}").read_bytes())
                runs[name] = json.loads((work / f"{name}.run.json").read_text())
                runs[name]["python"] = sys.version.split()[0]
    finally:
        server.shutdown()
        server.server_close()
    if server.problems:
        raise SystemExit("fake server problems:\n" + "\n".join(server.problems))
    if set(names) != set(INSTRUMENTATIONS):
        print("note: --only given, so expected.json and README.md were left as they were", file=sys.stderr)
        verify(names)
        return
    exp = expected(server.log, names)
    (OUT / "expected.json").write_text(dump_expected(exp))
    spans = verify(names)
    write_readme(runs, spans, server.log, exp, NOTES)
    print(f"wrote {OUT.relative_to(ROOT)}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", choices=sorted(INSTRUMENTATIONS),
                        help="record only this instrumentation (repeatable)")
    parser.add_argument("--verify", action="store_true", help="only decode and cross-check the fixtures")
    parser.add_argument("--child", choices=sorted(INSTRUMENTATIONS), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return run_child(args.child, args.port, args.workdir)
    if Path(sys.prefix).resolve() != VENV.resolve():
        ensure_venv()
        os.execv(str(venv_python()), [str(venv_python()), __file__, *sys.argv[1:]])
    if args.verify:
        verify(list(INSTRUMENTATIONS))
        return None
    record(args.only or list(INSTRUMENTATIONS))
    return None


if __name__ == "__main__":
    main()
