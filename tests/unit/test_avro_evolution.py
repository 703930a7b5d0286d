"""Schema evolution: records written with older and newer SegmentEvent versions, one reader."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import fastavro
import pytest

from consumer.codec.decode import Decoder
from consumer.codec.encode import Encoder
from consumer.codec.schema_files import SEGMENT_SCHEMA_PATH, load_schema, segment_schema
from consumer.codec.schema_registry import SchemaNotFound

SCHEMAS = Path(__file__).resolve().parents[1] / "data" / "schemas"
V0, V2, V3 = (load_schema(SCHEMAS / f"segment-event-{v}.avsc") for v in ("v0", "v2", "v3"))

TRACK = {
    "messageId": "m-1",
    "type": "track",
    "userId": "u-1",
    "event": "Order Completed",
    "properties": {"revenue": 9.5, "items": [1, 2], "nested": {"ok": True, "none": None}},
    "context": {"library": {"name": "analytics-python"}},
    "integrations": {"All": True},
    "timestamp": "2026-11-28T10:00:00.000Z",
}
IDENTIFY = {"messageId": "m-2", "type": "identify", "userId": "u-2", "traits": {"plan": "pro"}}


class _Schemas:
    """A resolver over ids given in the test."""

    def __init__(self, schemas: dict[int, Any]) -> None:
        self._schemas = schemas

    def writer_schema(self, schema_id: int) -> Any:
        if schema_id not in self._schemas:
            raise SchemaNotFound(str(schema_id))
        return self._schemas[schema_id]


def _decoder(reader: Any = None) -> Decoder:
    return Decoder("confluent", _Schemas({1: segment_schema(), 0: V0, 2: V2, 3: V3}), reader)


def test_each_version_decodes_against_the_reader() -> None:
    decoder = _decoder()
    for event in (TRACK, IDENTIFY):
        assert decoder.decode(Encoder("confluent", 1).encode(event)) == event
        assert decoder.decode(Encoder("confluent", 0, V0).encode(event)) == event
        assert decoder.decode(Encoder("confluent", 3, V3).encode(event)) == event
        # v2 has no integrations field: that value is not written, so it cannot come back.
        without = {k: v for k, v in event.items() if k != "integrations"}
        assert decoder.decode(Encoder("confluent", 2, V2).encode(without)) == without


def test_versions_interleaved_on_one_stream() -> None:
    decoder = _decoder()
    encoders = [Encoder("confluent", i, s) for i, s in ((0, V0), (1, None), (3, V3))]
    values = [encoders[n % 3].encode({**TRACK, "messageId": f"m-{n}"}) for n in range(30)]
    assert [decoder.decode(v)["messageId"] for v in values] == [f"m-{n}" for n in range(30)]


def test_newer_writer_fields_are_dropped_and_bytes_read_as_string() -> None:
    record = {**Encoder(schema=V2)._adapt({}), "messageId": "m", "type": "track"}  # type: ignore[misc]
    record.update(library="analytics-ruby", retryCount=3, properties='{"a":1}')
    value = b"\x00\x00\x00\x00\x02" + _schemaless(V2, record)
    assert _decoder().decode(value) == {"messageId": "m", "type": "track", "properties": {"a": 1}}
    v3 = {**record, "properties": b'{"a":1}', "traits": b"", "context": b"", "integrations": ""}
    v3 = {f["name"]: v3.get(f["name"], "") for f in V3["fields"]}
    value = b"\x00\x00\x00\x00\x03" + _schemaless(V3, v3)
    assert _decoder().decode(value) == {"messageId": "m", "type": "track", "properties": {"a": 1}}


def _schemaless(schema: Any, record: dict[str, Any]) -> bytes:
    import io

    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, record)
    return buf.getvalue()


def test_int_widened_to_long_in_a_newer_reader() -> None:
    reader_json = json.loads(SEGMENT_SCHEMA_PATH.read_text())
    reader_json["fields"].append({"name": "retryCount", "type": "long", "default": 0})
    reader = fastavro.parse_schema(reader_json)
    record = {**Encoder(schema=V2)._adapt({}), "messageId": "m", "type": "track"}  # type: ignore[misc]
    record["retryCount"] = 2**31 - 1
    value = b"\x00\x00\x00\x00\x02" + _schemaless(V2, record)
    assert _decoder(reader).decode(value) == {
        "messageId": "m",
        "type": "track",
        "retryCount": 2**31 - 1,
    }
    # An older writer without the field: the reader's default.
    old = Encoder("confluent", 1).encode({"messageId": "m", "type": "track"})
    assert _decoder(reader).decode(old) == {"messageId": "m", "type": "track", "retryCount": 0}


def test_an_older_version_refuses_what_it_cannot_hold() -> None:
    with pytest.raises(ValueError, match="groupId"):
        Encoder("confluent", 0, V0).encode({"messageId": "m", "type": "group", "groupId": "g"})
