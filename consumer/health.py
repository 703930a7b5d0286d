"""The operations endpoint: /metrics, /healthz and /readyz on one port.

Liveness means the poll loop turns — not that FullStory is up: restarting pods during a FullStory
outage would only cause rebalance storms. Readiness means the member has joined its group, the
brokers answer, and nothing fatal happened.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from consumer.errors import UserError
from consumer.metrics import Metrics


class Health:
    """State the pipeline reports; read by the HTTP handler thread (plain attribute reads)."""

    def __init__(self, stall_after: float = 60.0) -> None:
        self.stall_after = stall_after
        self.last_turn = time.monotonic()
        self.joined = False
        self.brokers_up = True
        self.failure: str | None = None

    def turn(self) -> None:
        self.last_turn = time.monotonic()

    def live(self) -> tuple[bool, dict[str, object]]:
        age = time.monotonic() - self.last_turn
        return age < self.stall_after, {"poll_loop_age_seconds": round(age, 3)}

    def ready(self) -> tuple[bool, dict[str, object]]:
        live, detail = self.live()
        detail.update(joined=self.joined, brokers_up=self.brokers_up, failure=self.failure)
        return live and self.joined and self.brokers_up and self.failure is None, detail


def serve(
    metrics: Metrics, health: Health, port: int, addr: str = "0.0.0.0"
) -> ThreadingHTTPServer:
    """Start the endpoint in a daemon thread; returns the server (call shutdown() to stop)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
            elif path in ("/healthz", "/readyz"):
                ok, detail = health.live() if path == "/healthz" else health.ready()
                body = orjson.dumps({"status": "ok" if ok else "failing", **detail})
                self._send(200 if ok else 503, body, "application/json")
            else:
                self._send(404, b"not found\n", "text/plain")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Scrapes every few seconds are not worth a log line."""

    try:
        server = ThreadingHTTPServer((addr, port), Handler)
    except OSError as exc:
        raise UserError(
            f"cannot serve metrics on {addr}:{port} ({exc.strerror}); pick another --metrics-port"
        ) from None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server
