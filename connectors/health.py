"""The worker's one HTTP port: /metrics (Prometheus), /healthz (liveness), /readyz (readiness).

prometheus-client's own server answers every path with metrics, so its WSGI app is composed here
with the two probe paths on a small threaded wsgiref server: scrapes and container probes share
one documented port, with no web framework. Dependency checks (store, broker) run on their own
thread every few seconds and probes read the last results, so a probe answers at once and a
hung dependency never piles up probe threads.
"""
from __future__ import annotations

import errno
import json
import socket
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import urlparse
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from prometheus_client import make_wsgi_app

from config.errors import HubError
from config.settings import ClickHouseSettings
from connectors import shutdown
from connectors.clickhouse import is_embedded
from connectors.worker_metrics import HEARTBEAT, Heartbeat

# A check returns None when its dependency is fine, else one line saying what is wrong.
Check = Callable[[], str | None]
CHECK_INTERVAL_S = 2.0
CHECK_TIMEOUT_S = 2.0
STATUS = {200: "200 OK", 404: "404 Not Found", 503: "503 Service Unavailable"}
INDEX = b"hub run: /metrics (Prometheus), /healthz (liveness), /readyz (readiness)\n"


class EndpointError(HubError):
    """The endpoint cannot listen where config says; one line naming the port and the setting."""


class Health:
    """What /healthz and /readyz answer, from the flow's heartbeat and the dependency checks.

    Alive: the process answers and its flow is not stuck; a flow that stopped moving while the
    store or broker is down is waiting for it (restarting would not help), so it stays alive.
    Ready: the flow took a batch within `stall_after_s`, every dependency answers, no stop is
    under way.
    """

    def __init__(self, stall_after_s: float, heartbeat: Heartbeat = HEARTBEAT) -> None:
        self.stall_after_s = stall_after_s
        self.heartbeat = heartbeat
        self.checks: dict[str, Check] = {}
        # name -> (ok, detail), replaced whole by the checker thread.
        self.results: dict[str, tuple[bool, str]] = {}

    def add_check(self, name: str, check: Check) -> None:
        """Checked once now, so readiness never waits a check interval for its first answer."""
        self.checks[name] = check
        self.results = {**self.results, name: _run(check)}

    def run_checks(self) -> None:
        self.results = {name: _run(check) for name, check in list(self.checks.items())}

    def _dependencies(self) -> dict[str, tuple[bool, str]]:
        results = self.results
        return {name: results.get(name, (False, "not checked yet")) for name in self.checks}

    def _flow(self) -> tuple[bool, str]:
        if shutdown.requested.is_set():
            return False, "stopping: input ended on request, writing what was read"
        age = self.heartbeat.age_s()
        if age is None:
            return False, "starting: no batch through the flow yet"
        if age > self.stall_after_s:
            return False, f"stalled: no batch for {age:.0f}s ([metrics] stall_after_s = {self.stall_after_s:g})"
        return True, f"ok, last batch {age:.1f}s ago"

    def live(self) -> tuple[int, dict[str, Any]]:
        ok, detail = self._flow()
        if not ok and detail.startswith("stalled"):
            down = [name for name, (up, _) in self._dependencies().items() if not up]
            if not down:
                return 503, _body("stuck", {"flow": (False, detail + " while the store and input answer")})
            detail = f"waiting for {', '.join(down)}, {detail}"
        return 200, _body("alive", {"flow": (True, detail)})

    def ready(self) -> tuple[int, dict[str, Any]]:
        checks = {"flow": self._flow(), **self._dependencies()}
        ready = all(ok for ok, _ in checks.values())
        return (200 if ready else 503), _body("ready" if ready else "not ready", checks)


def _run(check: Check) -> tuple[bool, str]:
    try:
        problem = check()
    except Exception as exc:  # a check must never take the endpoint down
        problem = f"check failed: {type(exc).__name__}: {exc}"
    return problem is None, "ok" if problem is None else problem


def _body(status: str, checks: dict[str, tuple[bool, str]]) -> dict[str, Any]:
    return {"status": status, "checks": {name: {"ok": ok, "detail": detail} for name, (ok, detail) in checks.items()}}


def summary(body: dict[str, Any]) -> str:
    """One line for `hub health`: failing checks first, each with what is wrong."""
    checks = sorted(body.get("checks", {}).items(), key=lambda kv: bool(kv[1].get("ok")))
    return f"{body.get('status', '?')}: " + "; ".join(f"{name}: {c.get('detail', '')}" for name, c in checks)


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes and probes every few seconds would flood stderr."""


class Endpoint:
    """Serves the WSGI app on host:port on daemon threads until close(); also runs the checks."""

    def __init__(self, host: str, port: int, health: Health) -> None:
        self.host, self.port, self.health = host, port, health
        self.metrics = make_wsgi_app()
        self.server: WSGIServer | None = None
        self.stop = threading.Event()

    def start(self) -> "Endpoint":
        try:
            family = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)[0][0]
            server_class = type("_Server", (_Server,), {"address_family": family})
            self.server = make_server(self.host, self.port, self.app, server_class, _QuietHandler)
        except OSError as exc:
            raise EndpointError(bind_error(self.host, self.port, exc)) from None
        threading.Thread(target=self.server.serve_forever, args=(0.5,), name="hub-http", daemon=True).start()
        threading.Thread(target=self._check_loop, name="hub-health-checks", daemon=True).start()
        return self

    def close(self) -> None:
        self.stop.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def __enter__(self) -> "Endpoint":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_loop(self) -> None:
        self.health.run_checks()
        while not self.stop.wait(CHECK_INTERVAL_S):
            self.health.run_checks()

    def app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path == "/metrics":
            return self.metrics(environ, start_response)
        if path in ("/healthz", "/readyz"):
            code, body = self.health.live() if path == "/healthz" else self.health.ready()
            return _respond(start_response, code, json.dumps(body).encode() + b"\n", "application/json")
        if path == "/":
            return _respond(start_response, 200, INDEX, "text/plain; charset=utf-8")
        return _respond(start_response, 404, b"not found: try /metrics, /healthz or /readyz\n", "text/plain; charset=utf-8")


def _respond(start_response: Callable[..., Any], code: int, data: bytes, content_type: str) -> list[bytes]:
    start_response(STATUS[code], [("Content-Type", content_type), ("Content-Length", str(len(data))),
                                  ("Cache-Control", "no-store")])
    return [data]


def bind_error(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (f"metrics port {port} on {host} is already in use (another hub run?): set [metrics] port "
                f"(HUB_METRICS__PORT) to a free port, or 0 to turn the metrics and health endpoint off")
    return f"cannot serve metrics on {host}:{port} ([metrics] host and port): {exc.strerror or exc}"


def store_check(settings: ClickHouseSettings, timeout_s: float = CHECK_TIMEOUT_S) -> Check:
    """An embedded store lives in this process; a server must answer ClickHouse's /ping."""
    if is_embedded(settings.dsn):
        return lambda: None
    parts = urlparse(settings.dsn)
    base = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
    context = tls_context(settings) if parts.scheme == "https" else None

    def check() -> str | None:
        try:
            with urllib.request.urlopen(base + "/ping", timeout=timeout_s, context=context) as resp:
                resp.read(64)
        except urllib.error.HTTPError as exc:
            return f"ClickHouse at {base} answered HTTP {exc.code} to /ping"
        except OSError as exc:
            return f"ClickHouse at {base} does not answer ({getattr(exc, 'reason', None) or exc})"
        return None

    return check


def tls_context(settings: ClickHouseSettings) -> ssl.SSLContext:
    """The TLS settings the store's client uses (CA file, verify, client certificate), for /ping."""
    context = ssl.create_default_context(cafile=settings.ca_file or None)
    if not settings.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if settings.cert_file:
        context.load_cert_chain(settings.cert_file, settings.key_file or None)
    return context


def kafka_check(conf: dict[str, str], timeout_s: float = CHECK_TIMEOUT_S) -> Check:
    """The broker answers a metadata request (one admin client, kept: it reconnects by itself)."""
    admin: AdminClient | None = None
    bootstrap = conf.get("bootstrap.servers", "")

    def check() -> str | None:
        nonlocal admin
        if admin is None:
            # log_level 0: the failure is reported by the check, not as librdkafka's retry lines.
            admin = AdminClient({**{k: v for k, v in conf.items() if k != "group.id"}, "log_level": "0"})
        try:
            admin.list_topics(timeout=timeout_s)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else exc
            return f"Kafka at {bootstrap} does not answer ({err.str() if hasattr(err, 'str') else err})"
        return None

    return check


def local_url(host: str, port: int) -> str:
    """Where a client on this machine reaches an endpoint bound to host:port (a wildcard bind
    answers on loopback)."""
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def probe(url: str, timeout_s: float) -> tuple[bool, str]:
    """GET a probe path of a running hub: (healthy, one line saying why)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return True, _line(resp.read())
    except urllib.error.HTTPError as exc:
        return False, _line(exc.read()) or f"HTTP {exc.code} from {url}"
    except OSError as exc:  # refused, timed out, unknown host
        return False, f"nothing answers at {url} ({getattr(exc, 'reason', None) or exc}); is hub run running there?"


def _line(data: bytes) -> str:
    try:
        body = json.loads(data)
    except ValueError:
        return data.decode(errors="replace").strip().splitlines()[0] if data.strip() else ""
    return summary(body) if isinstance(body, dict) else str(body)
