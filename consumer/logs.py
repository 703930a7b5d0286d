"""Structured logs: JSON lines by default (for log pipelines), readable text on a terminal.

Fields passed with `extra=` become JSON keys; the API key is never passed to a logger, and any
`Authorization` value that slips into a message is masked as a last line of defence.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any

import orjson

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_AUTH = re.compile(r"(Basic|Bearer)\s+[A-Za-z0-9+/=._:-]+")


def _mask(text: str) -> str:
    return _AUTH.sub(r"\1 ***", text)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


class JsonFormatter(logging.Formatter):
    converter = staticmethod(time.gmtime)

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": _mask(record.getMessage()),
            **_fields(record),
        }
        if record.exc_info:
            entry["exc"] = _mask(self.formatException(record.exc_info))
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extra = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        line = f"{record.levelname.lower():7} {_mask(record.getMessage())}"
        return f"{line}  {extra}" if extra else line


def setup_logging(fmt: str = "auto", level: int = logging.INFO) -> None:
    """Route every logger to stderr in the chosen format (auto: text on a TTY, else JSON)."""
    if fmt == "auto":
        fmt = "text" if sys.stderr.isatty() else "json"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TextFormatter() if fmt == "text" else JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
