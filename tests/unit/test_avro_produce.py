"""produce.py's error paths, which need no broker: bad input lines and failed deliveries."""

from __future__ import annotations

from pathlib import Path

import pytest

from consumer.produce import ProduceError, produce_file, produce_raw

# Nothing listens on port 1: deliveries fail fast once the message timeout passes.
NO_BROKER = "127.0.0.1:1"
FAST_FAIL = {"message.timeout.ms": "500", "socket.connection.setup.timeout.ms": "1000"}


def test_invalid_line_names_its_number(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('\n{"messageId": "m", "type": "track"}\n\n{not json\n')
    with pytest.raises(ProduceError, match=r"line 4: not valid JSON"):
        produce_file(NO_BROKER, "t", path, config=FAST_FAIL, flush_timeout=5)


def test_line_that_is_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text("[1, 2]\n")
    with pytest.raises(ProduceError, match=r"line 1: not a JSON object"):
        produce_file(NO_BROKER, "t", str(path), config=FAST_FAIL, flush_timeout=5)


def test_bad_framing_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ProduceError, match="framing"):
        produce_file(NO_BROKER, "t", tmp_path / "x", framing="json")


def test_failed_delivery_raises() -> None:
    with pytest.raises(ProduceError, match=r"failed delivery|undelivered"):
        produce_raw(
            NO_BROKER, "t", [(None, b"\xff"), (b"k", None)], config=FAST_FAIL, flush_timeout=10
        )
