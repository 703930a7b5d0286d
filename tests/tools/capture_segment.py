"""Capture genuine Segment events from Segment's own client libraries.

Test data typed by hand drifts from what real sources send, so this runs Segment's Python and Node
libraries against a loopback HTTP server standing in for the tracking API, and saves every event
they POST, one JSON object per line. It regenerates ``tests/data/captured/``; it is not run by the
test suite. See ``tests/tools/README.md`` for the setup (the libraries are installed by hand).

    python tests/tools/capture_segment.py python
    python tests/tools/capture_segment.py node --node-dir /tmp/segnode
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import importlib
import json
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

WRITE_KEY = "test-write-key"
WRITE_KEY_PLACEHOLDER = "<write-key>"
CAPTURED_DIR = Path(__file__).resolve().parents[1] / "data" / "captured"
NODE_DRIVER = Path(__file__).resolve().with_name("capture_segment_node.mjs")

# The batch endpoint plus the single-call ones, in case a library posts events one by one.
BATCH_PATH = "/v1/batch"
SINGLE_PATHS = frozenset(
    f"/v1/{kind}" for kind in ("identify", "track", "page", "screen", "group", "alias")
)


@dataclass(frozen=True)
class CapturedRequest:
    """One POST as received: kept to report the envelope, which the saved events do not carry."""

    path: str
    content_encoding: str | None
    user_agent: str | None
    envelope: dict[str, Any]
    event_count: int


@dataclass
class CaptureLog:
    """Appends events to a JSON-lines file; shared by the server's handler threads."""

    out: Path
    write_key: str
    requests: list[CapturedRequest] = field(default_factory=list)
    events: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, request: CapturedRequest, events: list[Any]) -> None:
        """Save the events verbatim except for the write key, should a library copy it in."""
        lines = [
            json.dumps(event, ensure_ascii=False).replace(self.write_key, WRITE_KEY_PLACEHOLDER)
            for event in events
        ]
        with self._lock, self.out.open("a", encoding="utf-8") as fh:
            fh.writelines(line + "\n" for line in lines)
            self.requests.append(request)
            self.events += len(lines)


def _make_handler(log: CaptureLog) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        """Answers like the tracking API does on success: 200 with an empty JSON object."""

        def do_POST(self) -> None:
            path = self.path.split("?", 1)[0]
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            if path != BATCH_PATH and path not in SINGLE_PATHS:
                self._answer(404, b'{"error":"unknown path"}')
                return
            encoding = self.headers.get("Content-Encoding")
            if encoding == "gzip":
                raw = gzip.decompress(raw)
            body = json.loads(raw)
            events: list[Any] = [body]
            envelope: dict[str, Any] = {}
            if path == BATCH_PATH:
                events = body.pop("batch")
                envelope = {
                    k: (WRITE_KEY_PLACEHOLDER if v == log.write_key else v) for k, v in body.items()
                }
            request = CapturedRequest(
                path=path,
                content_encoding=encoding,
                user_agent=self.headers.get("User-Agent"),
                envelope=envelope,
                event_count=len(events),
            )
            log.record(request, events)
            self._answer(200, b"{}")

        def _answer(self, status: int, payload: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            """Keep the capture's own output readable: requests are summarised at the end."""

    return Handler


class CaptureServer:
    """A loopback stand-in for Segment's tracking API on a free port, run in a thread."""

    def __init__(self, out: Path, write_key: str = WRITE_KEY) -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("", encoding="utf-8")
        self.log = CaptureLog(out=out, write_key=write_key)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self.log))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def host(self) -> str:
        """Base URL to give a library as its host."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> CaptureServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def _attempt(notes: list[str], label: str, call: Callable[[], object]) -> bool:
    """Run one library call; a rejected call is noted rather than fatal, since that is a finding."""
    try:
        call()
    except Exception as exc:
        notes.append(f"{label}: rejected with {type(exc).__name__}: {exc}")
        return False
    return True


def drive_python(host: str, notes: list[str]) -> int:
    """Make every kind of call with segment-analytics-python; return how many it accepted."""
    client_cls: Any = importlib.import_module("segment.analytics.client").Client
    errors: list[str] = []

    def on_error(exc: Exception, batch: list[Any]) -> None:
        errors.append(f"{type(exc).__name__}: {exc} ({len(batch)} events)")

    # The default asynchronous client batches in a consumer thread; flush() waits for it.
    client: Any = client_cls(WRITE_KEY, host=host, on_error=on_error, max_retries=0)
    # A second one in sync mode with gzip, to exercise Content-Encoding and one-event batches.
    gz_client: Any = client_cls(
        WRITE_KEY, host=host, on_error=on_error, max_retries=0, sync_mode=True, gzip=True
    )
    utc = dt.UTC
    cest = dt.timezone(dt.timedelta(hours=2))
    web_context = {
        "ip": "203.0.113.7",
        "userAgent": (
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/124.0 Safari/537.36"
        ),
        "locale": "fr-FR",
        "page": {
            "url": "https://shop.example.com/boots?color=yellow",
            "path": "/boots",
            "referrer": "https://www.example.org/",
            "title": "Boots",
            "search": "?color=yellow",
        },
        "campaign": {"name": "spring", "source": "newsletter", "medium": "email"},
        "timezone": "Europe/Paris",
    }
    calls: list[tuple[str, Callable[[], object]]] = [
        (
            "identify traits plan/logins",
            lambda: client.identify("userId123", {"plan": "premium", "logins": 5}),
        ),
        (
            "identify email/displayName",
            lambda: client.identify(
                "userId123", {"email": "john.doe@example.com", "displayName": "John Doe"}
            ),
        ),
        (
            "identify anonymous only",
            lambda: client.identify(
                anonymous_id="anon-7f3c2a", traits={"favoriteColor": "yellow", "visits": 3}
            ),
        ),
        (
            "track Product Purchased",
            lambda: client.track(
                "userId123",
                "Product Purchased",
                {
                    "order_ID": "2969302398",
                    "category": "boots",
                    "product_name": "yellow_cowboy_boots",
                    "price": 99.95,
                    "currency": "EUR",
                },
            ),
        ),
        (
            "track nested/arrays/numbers/unicode/datetimes",
            lambda: client.track(
                "userId123",
                "Order Completed",
                {
                    "order_id": "50314b8e9bcf000000000000",
                    "total": 199.9,
                    "discount": 0.0,
                    "whole_float": 30.0,
                    "quantity": 2,
                    "big_int": 12345678901234,
                    "negative": -3,
                    "ratio": 1e-7,
                    "tax": Decimal("12.34"),
                    "coupon": None,
                    "gift": False,
                    "tags": ["boots", "yellow", "sale"],
                    "scores": [1, 2.5, -3],
                    "products": [
                        {"sku": "B-001", "name": "Café ☕ boots", "price": 99.95, "qty": 1},
                        {"sku": "B-002", "name": "東京 🚀 laces", "price": 4, "qty": 3},
                    ],
                    "shipping": {"address": {"city": "Zürich", "zip": "8001"}, "express": True},
                    "delivered_at": dt.datetime(2024, 5, 17, 14, 30, 5, 123456, tzinfo=utc),
                    "local_time": dt.datetime(2024, 5, 17, 16, 30, 5, tzinfo=cest),
                    "ship_date": dt.date(2024, 5, 20),
                    "empty_list": [],
                    "empty_object": {},
                },
            ),
        ),
        (
            "track anonymous with custom aware timestamp",
            lambda: client.track(
                anonymous_id="anon-7f3c2a",
                event="Signed Up",
                properties={"plan": "trial"},
                timestamp=dt.datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=cest),
            ),
        ),
        (
            "track with naive custom timestamp",
            lambda: client.track(
                "userId123",
                "Naive Timestamp",
                {"note": "naive datetime passed as timestamp"},
                timestamp=dt.datetime(2023, 12, 31, 23, 59, 59),
            ),
        ),
        (
            "track integrations FullStory false",
            lambda: client.track(
                "userId123", "Hidden From FullStory", {"n": 1}, integrations={"FullStory": False}
            ),
        ),
        (
            "track integrations All false FullStory true",
            lambda: client.track(
                "userId123",
                "Only FullStory",
                {"n": 2},
                integrations={"All": False, "FullStory": True},
            ),
        ),
        (
            "track with web context and both ids",
            lambda: client.track(
                "userId123",
                "Checkout Started",
                {"cart_value": 104.5},
                context=web_context,
                anonymous_id="anon-7f3c2a",
            ),
        ),
        (
            "track with custom messageId",
            lambda: client.track(
                "userId123", "Custom Message Id", {}, message_id="custom-message-id-0001"
            ),
        ),
        (
            "track numeric userId",
            lambda: client.track(42, "Numeric User Id", {"why": "ids may be numbers"}),
        ),
        (
            "page with name",
            lambda: client.page("userId123", name="Home", properties={"url": "https://x.io/"}),
        ),
        (
            "page with category and name",
            lambda: client.page(
                "userId123",
                category="Docs",
                name="Getting Started",
                properties={"url": "https://x.io/docs/start", "title": "Getting Started"},
                context={"page": {"url": "https://x.io/docs/start"}},
            ),
        ),
        (
            "page with neither",
            lambda: client.page(anonymous_id="anon-7f3c2a", properties={"path": "/pricing"}),
        ),
        (
            "screen with category and name",
            lambda: client.screen(
                "userId123", category="Settings", name="Notifications", properties={"badge": 3}
            ),
        ),
        ("screen with name", lambda: client.screen("userId123", name="Home Feed")),
        (
            "group",
            lambda: client.group(
                "userId123",
                "acme-inc",
                {"name": "Acme Inc", "employees": 120, "plan": "enterprise"},
            ),
        ),
        ("alias", lambda: client.alias("anon-7f3c2a", "userId123")),
        (
            "gzip sync identify",
            lambda: gz_client.identify(
                "userId456", {"email": "jane@example.com", "displayName": "Jane Ø"}
            ),
        ),
        (
            "gzip sync track",
            lambda: gz_client.track(
                "userId456", "Gzipped Event", {"price": 1.5}, context=web_context
            ),
        ),
    ]
    # Calls the library should refuse: recorded in the notes, never sent.
    invalid: list[tuple[str, Callable[[], object]]] = [
        ("identify without any id", lambda: client.identify(traits={"plan": "x"})),
        ("track without event name", lambda: client.track("userId123")),
        ("alias without previous_id", lambda: client.alias(user_id="userId123")),
        ("group without group_id", lambda: client.group("userId123")),
    ]
    accepted = sum(_attempt(notes, label, call) for label, call in calls)
    for label, call in invalid:
        if _attempt(notes, label, call):
            notes.append(f"{label}: accepted")
            accepted += 1
    client.flush()
    client.shutdown()
    if not hasattr(client, "delete"):
        notes.append("delete: segment-analytics-python has no delete call")
    notes.extend(f"on_error: {e}" for e in errors)
    return accepted


def drive_node(host: str, node_dir: Path, notes: list[str]) -> int:
    """Run the Node driver against the server; it prints one JSON summary line on stdout."""
    proc = subprocess.run(
        ["node", str(NODE_DRIVER), host],
        cwd=node_dir,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"node driver failed ({proc.returncode}): {proc.stderr}")
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    notes.extend(summary["notes"])
    accepted: int = summary["accepted"]
    return accepted


def main(argv: list[str] | None = None) -> int:
    """Capture one library's events into tests/data/captured/segment-<library>.jsonl."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("library", choices=["python", "node"])
    parser.add_argument("--out", type=Path, help="JSON-lines output (default: captured dir)")
    parser.add_argument(
        "--node-dir",
        type=Path,
        default=Path.cwd(),
        help="directory whose node_modules holds @segment/analytics-node (default: cwd)",
    )
    args = parser.parse_args(argv)
    out: Path = args.out or CAPTURED_DIR / f"segment-{args.library}.jsonl"
    notes: list[str] = []
    with CaptureServer(out) as server:
        if args.library == "python":
            accepted = drive_python(server.host, notes)
        else:
            accepted = drive_node(server.host, args.node_dir, notes)
    for note in notes:
        print(f"note: {note}")
    for req in server.log.requests:
        print(
            f"request: {req.path} events={req.event_count} encoding={req.content_encoding} "
            f"user-agent={req.user_agent} envelope={json.dumps(req.envelope)}"
        )
    print(f"accepted calls: {accepted}, captured events: {server.log.events} -> {out}")
    return 0 if accepted == server.log.events else 1


if __name__ == "__main__":
    sys.exit(main())
