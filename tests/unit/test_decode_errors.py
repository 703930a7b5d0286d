"""Every malformed value gives a DecodeError with the right reason; resolvers fail distinctly."""

from __future__ import annotations

import base64
import contextlib
import time
from pathlib import Path
from typing import Any

import pytest

from consumer.codec.decode import DecodeError, Decoder, DirectorySchemaResolver
from consumer.codec.encode import Encoder, to_avro_record
from consumer.codec.schema_files import SEGMENT_SCHEMA_PATH
from consumer.codec.schema_registry import (
    InvalidSchema,
    RegistrySchemaResolver,
    RegistryUnavailable,
    SchemaNotFound,
    SchemaPending,
)

EVENT = {
    "messageId": "m-1",
    "type": "track",
    "userId": "u-AB",
    "event": "Signed Up",
    "properties": {"plan": "trial"},
}
RAW = Encoder("raw").encode(EVENT)


@pytest.fixture
def schema_dir(tmp_path: Path) -> Path:
    (tmp_path / "1.avsc").write_bytes(SEGMENT_SCHEMA_PATH.read_bytes())
    (tmp_path / "9.avsc").write_text('{"type": "record", "name": "X", "fields": [{"name": "a"}]}')
    return tmp_path


def _reason(decoder: Decoder, value: bytes | None) -> str:
    with pytest.raises(DecodeError) as info:
        decoder.decode(value)
    assert str(info.value)  # a human message, not just the code
    return info.value.reason


def _confluent(schema_dir: Path) -> Decoder:
    return Decoder("confluent", DirectorySchemaResolver(schema_dir))


def test_valid_value_decodes(schema_dir: Path) -> None:
    assert Decoder("raw").decode(RAW) == EVENT
    assert _confluent(schema_dir).decode(b"\x00\x00\x00\x00\x01" + RAW) == EVENT


def test_null_value() -> None:
    assert _reason(Decoder("raw"), None) == "null_value"


@pytest.mark.parametrize("cut", range(len(RAW)))
def test_every_truncation_of_a_raw_value(cut: int) -> None:
    assert _reason(Decoder("raw"), RAW[:cut]) == "truncated"


@pytest.mark.parametrize("value", [b"", b"\x00", b"\x00\x00\x00\x00"])
def test_short_confluent_header(schema_dir: Path, value: bytes) -> None:
    assert _reason(_confluent(schema_dir), value) == "truncated"


def test_truncated_confluent_body(schema_dir: Path) -> None:
    assert _reason(_confluent(schema_dir), b"\x00\x00\x00\x00\x01" + RAW[:-3]) == "truncated"


def test_bad_magic_byte(schema_dir: Path) -> None:
    with pytest.raises(DecodeError, match="0x01") as info:
        _confluent(schema_dir).decode(b"\x01\x00\x00\x00\x01" + RAW)
    assert info.value.reason == "bad_magic_byte"


def test_unknown_schema_id(schema_dir: Path) -> None:
    with pytest.raises(DecodeError, match="schema id 2") as info:
        _confluent(schema_dir).decode(b"\x00\x00\x00\x00\x02" + RAW)
    assert info.value.reason == "unknown_schema_id"


def test_invalid_writer_schema(schema_dir: Path) -> None:
    assert _reason(_confluent(schema_dir), b"\x00\x00\x00\x00\x09" + RAW) == "invalid_writer_schema"


@pytest.mark.parametrize("framing", ["raw", "confluent"])
def test_trailing_bytes(schema_dir: Path, framing: str) -> None:
    if framing == "raw":
        decoder, value = Decoder("raw"), RAW + b"\x00"
    else:
        decoder, value = _confluent(schema_dir), b"\x00\x00\x00\x00\x01" + RAW + b"xyz"
    with pytest.raises(DecodeError, match="bytes left after the record") as info:
        decoder.decode(value)
    assert info.value.reason == "trailing_bytes"


@pytest.mark.parametrize("field", ["properties", "traits", "context", "integrations", "extra"])
def test_invalid_json_field(field: str) -> None:
    record = {**to_avro_record(EVENT), field: '{"broken": '}
    with pytest.raises(DecodeError, match=repr(field)) as info:
        Decoder("raw").decode(Encoder().encode_record(record))
    assert info.value.reason == "invalid_json_field"


def test_extra_must_be_an_object() -> None:
    record = {**to_avro_record(EVENT), "extra": "[1, 2]"}
    with pytest.raises(DecodeError, match="JSON object") as info:
        Decoder("raw").decode(Encoder().encode_record(record))
    assert info.value.reason == "invalid_json_field"


def test_invalid_utf8() -> None:
    assert RAW.count(b"u-AB") == 1
    assert _reason(Decoder("raw"), RAW.replace(b"u-AB", b"u-\xff\xfe")) == "invalid_utf8"


@pytest.mark.parametrize(
    "value",
    [
        b"\x01" + RAW[1:],  # negative string length
        b"\xff" * 11,  # a varint longer than any long
    ],
)
def test_invalid_avro(value: bytes) -> None:
    assert _reason(Decoder("raw"), value) == "invalid_avro"


def test_garbage_never_escapes_as_another_exception() -> None:
    import random

    rnd = random.Random(5)
    decoder = Decoder("raw")
    for _ in range(3000):
        value = bytes(rnd.randrange(256) for _ in range(rnd.randrange(60)))
        with contextlib.suppress(DecodeError):
            decoder.decode(value)


def test_decoder_configuration_errors() -> None:
    with pytest.raises(ValueError):
        Decoder("confluent")
    with pytest.raises(ValueError):
        Decoder("json")  # type: ignore[arg-type]


def test_directory_resolver_caches_and_reports_missing(schema_dir: Path) -> None:
    resolver = DirectorySchemaResolver(schema_dir)
    first = resolver.writer_schema(1)
    (schema_dir / "1.avsc").unlink()
    assert resolver.writer_schema(1) is first
    with pytest.raises(SchemaNotFound):
        resolver.writer_schema(1234)


# --- the registry resolver against the loopback registry (conftest.py) ------------------------


def test_registry_resolver_fetches_once_with_auth(
    registry: tuple[str, list[tuple[str, str | None]]],
) -> None:
    url, seen = registry
    resolver = RegistrySchemaResolver(url, auth=("key", "secret"), timeout=2.0)
    decoder = Decoder("confluent", resolver)
    for _ in range(3):
        assert decoder.decode(b"\x00\x00\x00\x00\x01" + RAW) == EVENT
    assert resolver.writer_schema(1) is resolver.writer_schema(1)
    assert seen == [("/schemas/ids/1", "Basic " + base64.b64encode(b"key:secret").decode())]
    resolver.close()


def test_registry_not_found_is_permanent_and_remembered(
    registry: tuple[str, list[tuple[str, str | None]]],
) -> None:
    url, seen = registry
    decoder = Decoder("confluent", RegistrySchemaResolver(url, timeout=2.0))
    for _ in range(2):
        assert _reason(decoder, b"\x00\x00\x00\x00\x02" + RAW) == "unknown_schema_id"
    assert decoder.decode(b"\x00\x00\x00\x00\x01" + RAW) == EVENT
    assert [path for path, _ in seen] == ["/schemas/ids/2", "/schemas/ids/1"]


@pytest.mark.parametrize("schema_id", [4, 5])
def test_registry_invalid_schema(
    registry: tuple[str, list[tuple[str, str | None]]], schema_id: int
) -> None:
    decoder = Decoder("confluent", RegistrySchemaResolver(registry[0], timeout=2.0))
    value = b"\x00" + schema_id.to_bytes(4, "big") + RAW
    assert _reason(decoder, value) == "invalid_writer_schema"


@pytest.mark.parametrize("schema_id", [3, 6])
def test_registry_outage_is_retryable_not_a_decode_error(
    registry: tuple[str, list[tuple[str, str | None]]], schema_id: int
) -> None:
    url, seen = registry
    decoder = Decoder("confluent", RegistrySchemaResolver(url, timeout=0.3))
    value = b"\x00" + schema_id.to_bytes(4, "big") + RAW
    for _ in range(2):
        with pytest.raises(RegistryUnavailable):
            decoder.decode(value)
    assert len(seen) == 2  # not cached: the next attempt asks again


def test_registry_connection_refused() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connections are refused
        resolver = RegistrySchemaResolver(f"http://127.0.0.1:{port}", timeout=1.0)
        with pytest.raises(RegistryUnavailable):
            resolver.writer_schema(1)


# --- without blocking (the consumer's event loop): misses are fetched on a worker thread --------


def _settled(resolver: RegistrySchemaResolver, schema_id: int) -> Any:
    """Ask again, as a re-read record does, until the fetch is over; its schema or its error."""
    deadline = time.monotonic() + 10.0
    while True:
        try:
            return resolver.writer_schema(schema_id)
        except SchemaPending:
            assert time.monotonic() < deadline, "the fetch never finished"
            time.sleep(0.01)


def test_a_miss_never_waits_for_a_slow_registry(
    registry: tuple[str, list[tuple[str, str | None]]], slow_answer: float
) -> None:
    url, seen = registry
    resolver = RegistrySchemaResolver(url, timeout=5.0, blocking=False)
    decoder = Decoder("confluent", resolver)
    value = b"\x00\x00\x00\x00\x07" + RAW
    started = time.monotonic()
    for _ in range(3):
        with pytest.raises(SchemaPending):
            decoder.decode(value)
    assert time.monotonic() - started < slow_answer / 2  # answered at once, the fetch is elsewhere
    assert _settled(resolver, 7) is not None
    assert time.monotonic() - started >= slow_answer
    assert decoder.decode(value) == EVENT
    assert [path for path, _ in seen] == ["/schemas/ids/7"]  # one fetch in flight per id
    resolver.close()


def test_an_outage_is_reported_once_then_fetched_again(
    registry: tuple[str, list[tuple[str, str | None]]],
) -> None:
    url, seen = registry
    resolver = RegistrySchemaResolver(url, timeout=2.0, blocking=False)
    with pytest.raises(SchemaPending):
        resolver.writer_schema(3)
    with pytest.raises(RegistryUnavailable):
        _settled(resolver, 3)
    with pytest.raises(SchemaPending):  # a new fetch: the registry may be back
        resolver.writer_schema(3)
    with pytest.raises(RegistryUnavailable):
        _settled(resolver, 3)
    assert len(seen) == 2
    resolver.close()


@pytest.mark.parametrize(("schema_id", "error"), [(2, SchemaNotFound), (4, InvalidSchema)])
def test_a_permanent_error_is_remembered_and_raised_at_once(
    registry: tuple[str, list[tuple[str, str | None]]],
    schema_id: int,
    error: type[Exception],
) -> None:
    url, seen = registry
    resolver = RegistrySchemaResolver(url, timeout=2.0, blocking=False)
    with pytest.raises(SchemaPending):
        resolver.writer_schema(schema_id)
    with pytest.raises(error):
        _settled(resolver, schema_id)
    for _ in range(3):  # no new fetch, no wait: the next bad records go to the DLQ at once
        with pytest.raises(error):
            resolver.writer_schema(schema_id)
    assert len(seen) == 1
    resolver.close()
