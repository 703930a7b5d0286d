"""Writes the malformed-record corpus and its manifest (run from the repo root to regenerate).

Every value is Confluent-framed as a producer with a registry would send it. Payloads marked
`"schema"` are stored without the 5-byte header: the tests prepend the id the registry gave that
schema. Those marked `"as_is"` are the whole Kafka value. `.gz` files are gzipped (a 5 MB record).
"""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path
from typing import Any

import fastavro

from consumer.codec.encode import Encoder, to_avro_record

HERE = Path(__file__).resolve().parent
GOOD = {"messageId": "bad-1", "type": "track", "userId": "u-bad", "event": "E", "properties": {}}

# Writer schemas the tests register (name -> schema); "segment" is schemas/segment-event.avsc.
OTHER = {
    "type": "record",
    "name": "Pageview",
    "namespace": "com.example",
    "fields": [{"name": "url", "type": "string"}, {"name": "ms", "type": "long"}],
}
NO_MESSAGE_ID = {
    "type": "record",
    "name": "SegmentEvent",
    "namespace": "io.segment.fullstory",
    "fields": [{"name": "type", "type": "string"}, {"name": "userId", "type": "string"}],
}
USER_ID_INT = {
    "type": "record",
    "name": "SegmentEvent",
    "namespace": "io.segment.fullstory",
    "fields": [
        {"name": "messageId", "type": "string"},
        {"name": "type", "type": "string"},
        {"name": "userId", "type": "int"},
    ],
}


def _body(record: dict[str, Any]) -> bytes:
    return Encoder().encode_record(record)


def _with(**fields: str) -> bytes:
    return _body({**to_avro_record(GOOD), **fields})


def _other(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), record)
    return buf.getvalue()


def main() -> None:
    good = _body(to_avro_record(GOOD))
    deep = "[" * 10_000 + "]" * 10_000
    huge = {**GOOD, "properties": {"blob": "x" * (5 * 1024 * 1024)}}
    # name: (payload, schema or None for as-is, expected outcome, why)
    cases: dict[str, tuple[bytes, str | None, str, str]] = {
        "empty-value": (b"", None, "truncated", "zero bytes"),
        "short-header": (b"\x00\x00\x00", None, "truncated", "3 of the 5 header bytes"),
        "bad-magic-byte": (b"\x01\x00\x00\x00\x01" + good, None, "bad_magic_byte", "magic 1"),
        "json-not-avro": (b'{"type":"track"}', None, "bad_magic_byte", "JSON, not framed Avro"),
        "unknown-schema-id": (
            b"\x00\x7f\xff\xff\xf0" + good,
            None,
            "unknown_schema_id",
            "an id no registry has",
        ),
        "truncated-avro": (good[:-4], "segment", "truncated", "the record's last bytes cut"),
        "truncated-mid-string": (good[:7], "segment", "truncated", "cut inside messageId"),
        "trailing-bytes": (good + b"\x00\x00", "segment", "trailing_bytes", "two extra bytes"),
        "negative-length": (b"\x01" + good[1:], "segment", "invalid_avro", "string length -1"),
        "overlong-varint": (b"\xff" * 11, "segment", "invalid_avro", "varint beyond 64 bits"),
        "invalid-utf8": (
            good.replace(b"u-bad", b"u-\xff\xfe\xfd"),
            "segment",
            "invalid_utf8",
            "userId bytes are not UTF-8",
        ),
        "another-schema-registered": (
            _other(OTHER, {"url": "https://example.com", "ms": 5}),
            "other",
            "schema_mismatch",
            "a Pageview record under its own id",
        ),
        "another-schemas-bytes": (
            _other(OTHER, {"url": "https://example.com", "ms": 5}),
            "segment",
            "truncated",
            "Pageview bytes framed with the SegmentEvent id",
        ),
        "missing-message-id-schema": (
            _other(NO_MESSAGE_ID, {"type": "track", "userId": "u"}),
            "no_message_id",
            "schema_mismatch",
            "writer schema without the required messageId",
        ),
        "user-id-int-schema": (
            _other(USER_ID_INT, {"messageId": "m", "type": "track", "userId": 7}),
            "user_id_int",
            "schema_mismatch",
            "userId written as int: Avro cannot promote int to string",
        ),
        "properties-not-json": (
            _with(properties="{not json"),
            "segment",
            "invalid_json_field",
            "free-form field that is not JSON",
        ),
        "context-nan": (
            _with(context='{"x": NaN}'),
            "segment",
            "invalid_json_field",
            "NaN is not JSON",
        ),
        "properties-infinity": (
            _with(properties='{"x": 1e999}'),
            "segment",
            "invalid_json_field",
            "a number that overflows to infinity",
        ),
        "extra-not-object": (
            _with(extra="[1,2]"),
            "segment",
            "invalid_json_field",
            "extra must be an object",
        ),
        "deep-nesting": (
            _with(properties='{"a":' + deep + "}"),
            "segment",
            "invalid_json_field",
            "10,000 nested arrays (orjson stops at 1024)",
        ),
        "empty-message-id": (
            _with(messageId="", type="track"),
            "segment",
            "delivered",
            "messageId empty: the mapping needs none (the idempotency key hashes the event)",
        ),
        "empty-type": (_with(type=""), "segment", "invalid_event", "type empty"),
        "unknown-type": (_with(type="trak"), "segment", "invalid_event", "not a Segment call"),
        "track-without-name": (
            _with(event=""),
            "segment",
            "missing_event_name",
            "track with no event name",
        ),
        "no-identity": (
            _with(userId=""),
            "segment",
            "missing_identity",
            "neither userId nor anonymousId",
        ),
        "user-id-object": (
            _with(userId="", extra='{"userId": {"id": 1}}'),
            "segment",
            "missing_identity",
            "userId of the wrong JSON type (an object) counts as no userId",
        ),
        "huge-5mb": (
            _body(to_avro_record(huge)),
            "segment",
            "delivered",
            "a valid 5 MiB track event (topic max.message.bytes must allow it)",
        ),
    }
    manifest = []
    for name, (payload, schema, expect, why) in cases.items():
        file = f"{name}.avro" + (".gz" if len(payload) > 100_000 else "")
        data = gzip.compress(payload, mtime=0) if file.endswith(".gz") else payload
        (HERE / file).write_bytes(data)
        manifest.append({"file": file, "schema": schema, "expect": expect, "why": why})
    out = {
        "schemas": {"other": OTHER, "no_message_id": NO_MESSAGE_ID, "user_id_int": USER_ID_INT},
        "records": manifest,
    }
    (HERE / "manifest.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
