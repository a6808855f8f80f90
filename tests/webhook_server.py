"""A local HTTP server standing in for webhook receivers (Slack, a generic JSON endpoint).

Each path answers as scripted: `fail_first[path] = N` answers the first N requests with 503,
`always_fail` paths always answer 500, `refuse` paths 404. Every request is recorded (path, headers, JSON body).
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Call:
    path: str
    headers: dict[str, str]
    body: dict
    status: int


@dataclass
class WebhookServer:
    fail_first: dict[str, int] = field(default_factory=dict)
    always_fail: set[str] = field(default_factory=set)
    refuse: set[str] = field(default_factory=set)
    calls: list[Call] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with owner.lock:
                    seen = sum(1 for c in owner.calls if c.path == self.path)
                    status = 404 if self.path in owner.refuse else 500 if self.path in owner.always_fail \
                        else 503 if seen < owner.fail_first.get(self.path, 0) else 200
                    owner.calls.append(Call(self.path, dict(self.headers), json.loads(raw or b"{}"), status))
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "WebhookServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def delivered(self, path: str) -> list[Call]:
        """Requests to `path` that were answered 2xx."""
        with self.lock:
            return [c for c in self.calls if c.path == path and c.status == 200]

    def requests(self, path: str) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.path == path]
