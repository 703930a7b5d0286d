"""A Schema Registry on a loopback port, for the resolver's tests and the core's: fixed answers
per schema id, two of them slow, and every request it saw."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from consumer.codec.schema_files import SEGMENT_SCHEMA_PATH

SLOW = 1.0  # seconds ids 6 and 7 take to answer


class _Registry(BaseHTTPRequestHandler):
    """1: the repo's schema; 3: 503; 4, 5: not a usable Avro schema; 6: 404 after SLOW seconds;
    7: the repo's schema after SLOW seconds; any other id: 404."""

    requests: list[tuple[str, str | None]]

    def do_GET(self) -> None:
        self.requests.append((self.path, self.headers.get("Authorization")))
        status, body = 404, {"error_code": 40403, "message": "Schema not found"}
        if self.path in ("/schemas/ids/6", "/schemas/ids/7"):
            time.sleep(SLOW)
        if self.path in ("/schemas/ids/1", "/schemas/ids/7"):
            status, body = 200, {"schema": SEGMENT_SCHEMA_PATH.read_text()}
        elif self.path == "/schemas/ids/3":
            status, body = 503, {"message": "overloaded"}
        elif self.path == "/schemas/ids/4":
            status, body = 200, {"schema": "{not avro"}
        elif self.path == "/schemas/ids/5":
            status, body = 200, {"schema": "{}", "schemaType": "PROTOBUF"}
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError):  # the client gave up waiting (timeout case)
            self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""


@pytest.fixture
def slow_answer() -> float:
    """How long the registry takes to answer ids 6 and 7."""
    return SLOW


@pytest.fixture
def registry() -> Iterator[tuple[str, list[tuple[str, str | None]]]]:
    """The registry's URL and the (path, Authorization) of each request it got."""
    seen: list[tuple[str, str | None]] = []
    handler = type("Handler", (_Registry,), {"requests": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
