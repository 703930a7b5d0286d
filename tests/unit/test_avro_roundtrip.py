"""Segment events survive encode -> Kafka value -> decode unchanged, in both framings."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import fastavro
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.codec.decode import DecodeError, Decoder, DirectorySchemaResolver
from consumer.codec.encode import JSON_FIELDS, STRING_FIELDS, Encoder, event_key, to_avro_record
from consumer.codec.schema_files import SEGMENT_SCHEMA_PATH, load_schema, segment_schema

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "schemas" / "sample-events.jsonl"
CAPTURED = sorted((ROOT / "tests" / "data" / "captured").glob("*.jsonl"))
SCHEMA_ID = 7


def _lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def _expected(event: dict[str, Any]) -> dict[str, Any]:
    """What decoding gives back: the event without its top-level nulls."""
    return {k: v for k, v in event.items() if v is not None}


@pytest.fixture(scope="module")
def schema_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("schemas")
    (directory / f"{SCHEMA_ID}.avsc").write_bytes(SEGMENT_SCHEMA_PATH.read_bytes())
    return directory


@pytest.fixture(scope="module", params=["raw", "confluent"])
def codec(request: pytest.FixtureRequest, schema_dir: Path) -> tuple[Encoder, Decoder]:
    if request.param == "raw":
        return Encoder("raw"), Decoder("raw")
    return (
        Encoder("confluent", SCHEMA_ID),
        Decoder("confluent", DirectorySchemaResolver(schema_dir)),
    )


def test_schema_loads_once_and_has_every_segment_field() -> None:
    schema = segment_schema()
    assert schema is segment_schema() is load_schema(str(SEGMENT_SCHEMA_PATH))
    assert schema["name"] == "io.segment.fullstory.SegmentEvent"
    names = [f["name"] for f in schema["fields"]]
    assert names == [*STRING_FIELDS, *JSON_FIELDS, "extra"]
    # Every field after messageId/type has a default, so writer->reader resolution works.
    assert all("default" in f for f in schema["fields"][2:])


def test_sample_file_covers_every_call_type() -> None:
    events = _lines(SAMPLE)
    assert 15 <= len(events) <= 30
    assert {e["type"] for e in events} == {
        "identify", "track", "page", "screen", "group", "alias", "delete"
    }  # fmt: skip
    for event in events:
        assert event["messageId"] and event["context"] and "integrations" in event
        assert 300 <= len(orjson.dumps(event)) <= 1600


@pytest.mark.parametrize("path", [SAMPLE, *CAPTURED], ids=lambda p: p.name)
def test_files_round_trip(path: Path, codec: tuple[Encoder, Decoder]) -> None:
    encoder, decoder = codec
    events = _lines(path)
    assert events
    for event in events:
        assert decoder.decode(encoder.encode(event)) == _expected(event)


def test_confluent_header_carries_the_schema_id() -> None:
    value = Encoder("confluent", 258).encode({"messageId": "m", "type": "track"})
    assert value[:5] == b"\x00\x00\x00\x01\x02"
    assert value[5:] == Encoder("raw").encode({"messageId": "m", "type": "track"})


def test_free_form_fields_are_compact_json_text_and_odd_scalars_go_to_extra() -> None:
    event = {
        "messageId": "m1",
        "type": "track",
        "userId": 42,
        "anonymousId": "",
        "timestamp": 1715956823018,
        "event": "Signed Up",
        "properties": {"a": 1, "b": 1.0, "c": [None, {"d": "é"}]},
        "_metadata": {"nodeVersion": "v20"},
        "category": None,
    }
    record = to_avro_record(event)
    assert record["properties"] == '{"a":1,"b":1.0,"c":[null,{"d":"é"}]}'
    assert record["userId"] == record["anonymousId"] == record["timestamp"] == ""
    assert orjson.loads(record["extra"]) == {
        "userId": 42,
        "anonymousId": "",
        "timestamp": 1715956823018,
        "_metadata": {"nodeVersion": "v20"},
    }
    decoded = Decoder("raw").decode(Encoder().encode(event))
    assert decoded == _expected(event)
    assert type(decoded["properties"]["b"]) is float and type(decoded["properties"]["a"]) is int


def test_to_avro_record_rejects_what_json_cannot_carry() -> None:
    with pytest.raises(TypeError):
        to_avro_record([1, 2])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="properties"):
        to_avro_record({"messageId": "m", "type": "track", "properties": {"n": 2**70}})


@pytest.mark.parametrize(
    ("event", "key"),
    [
        ({"userId": "u1", "anonymousId": "a1"}, b"u1"),
        ({"userId": 42, "anonymousId": "a1"}, b"42"),
        ({"userId": 42.0}, b"42"),
        ({"userId": "", "anonymousId": "a1"}, b"a1"),
        ({"userId": None, "anonymousId": 7}, b"7"),
        ({"userId": True, "anonymousId": "ä"}, "ä".encode()),
        ({"type": "track"}, None),
    ],
)
def test_event_key(event: dict[str, Any], key: bytes | None) -> None:
    assert event_key(event) == key


def test_encoder_rejects_bad_framing_and_ids() -> None:
    with pytest.raises(ValueError):
        Encoder("confluent")
    with pytest.raises(ValueError):
        Encoder("confluent", 2**31)
    with pytest.raises(ValueError):
        Encoder("avro")  # type: ignore[arg-type]


# --- property-based round trip ----------------------------------------------------------------

_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
_json = st.recursive(
    _json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=25,
)
_scalar_value = (
    st.text(max_size=30) | st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.none()
)
_known = set(STRING_FIELDS) | set(JSON_FIELDS)
_events = st.builds(
    lambda fixed, scalars, free, other: {**other, **fixed, **scalars, **free},
    st.fixed_dictionaries(
        {
            "messageId": st.text(max_size=40),
            "type": st.sampled_from(
                ["identify", "track", "page", "screen", "group", "alias", "delete"]
            ),
        }
    ),
    st.dictionaries(st.sampled_from(STRING_FIELDS[2:]), _scalar_value),
    st.dictionaries(st.sampled_from(JSON_FIELDS), _json),
    st.dictionaries(st.text(max_size=10).filter(lambda k: k not in _known), _json, max_size=3),
)


@settings(max_examples=300, deadline=None)
@given(event=_events)
def test_generated_events_round_trip(event: dict[str, Any], codec: tuple[Encoder, Decoder]) -> None:
    encoder, decoder = codec
    decoded = decoder.decode(encoder.encode(event))
    assert decoded == _expected(event)
    # == treats 1 and 1.0 alike; the JSON text must keep int vs float apart too.
    assert orjson.dumps(decoded, option=orjson.OPT_SORT_KEYS) == orjson.dumps(
        _expected(event), option=orjson.OPT_SORT_KEYS
    )


# --- writer -> reader schema resolution -------------------------------------------------------


def _schema_json() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SEGMENT_SCHEMA_PATH.read_text())
    return loaded


def _write(
    directory: Path, schema_id: int, schema: dict[str, Any], record: dict[str, Any]
) -> bytes:
    (directory / f"{schema_id}.avsc").write_text(json.dumps(schema))
    buf = io.BytesIO()
    buf.write(b"\x00" + schema_id.to_bytes(4, "big"))
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), record)
    return buf.getvalue()


EVENT = {
    "messageId": "m-1",
    "type": "group",
    "userId": "u-1",
    "groupId": "g-1",
    "traits": {"name": "Initech", "seats": 10},
    "_metadata": {"jsRuntime": "node"},
}


def test_older_writer_without_some_fields(tmp_path: Path) -> None:
    schema = _schema_json()
    schema["fields"] = [f for f in schema["fields"] if f["name"] not in ("groupId", "extra")]
    record = {k: v for k, v in to_avro_record(EVENT).items() if k not in ("groupId", "extra")}
    value = _write(tmp_path, 1, schema, record)
    decoded = Decoder("confluent", DirectorySchemaResolver(tmp_path)).decode(value)
    assert decoded == {k: v for k, v in EVENT.items() if k not in ("groupId", "_metadata")}


def test_newer_writer_with_an_extra_field_and_reordered_fields(tmp_path: Path) -> None:
    schema = _schema_json()
    schema["fields"] = [
        {"name": "newField", "type": {"type": "array", "items": "long"}, "default": []},
        *reversed(schema["fields"]),
    ]
    record = {**to_avro_record(EVENT), "newField": [1, 2, 3]}
    value = _write(tmp_path, 2, schema, record)
    assert Decoder("confluent", DirectorySchemaResolver(tmp_path)).decode(value) == EVENT


def test_writer_with_nullable_strings(tmp_path: Path) -> None:
    schema = _schema_json()
    for field in schema["fields"][2:]:
        field["type"], field["default"] = ["null", "string"], None
    record = {k: (v or None) for k, v in to_avro_record(EVENT).items()}
    value = _write(tmp_path, 3, schema, record)
    assert Decoder("confluent", DirectorySchemaResolver(tmp_path)).decode(value) == EVENT


def test_writer_with_a_promotable_type_uses_avro_resolution(tmp_path: Path) -> None:
    schema = _schema_json()
    for field in schema["fields"]:
        if field["name"] == "groupId":
            field["type"], field["default"] = "bytes", ""
    record: dict[str, Any] = {**to_avro_record(EVENT), "groupId": b"g-1"}
    value = _write(tmp_path, 4, schema, record)
    assert Decoder("confluent", DirectorySchemaResolver(tmp_path)).decode(value) == EVENT


@pytest.mark.parametrize(
    "change",
    ["drop_message_id", "user_id_long", "not_a_record"],
)
def test_incompatible_writer_is_schema_mismatch(tmp_path: Path, change: str) -> None:
    schema: Any = _schema_json()
    record: Any = to_avro_record(EVENT)
    if change == "drop_message_id":
        schema["fields"] = [f for f in schema["fields"] if f["name"] != "messageId"]
        del record["messageId"]
    elif change == "user_id_long":
        for field in schema["fields"]:
            if field["name"] == "userId":
                field["type"], field["default"] = "long", 0
        record["userId"] = 5
    else:
        schema, record = "string", "hello"
    value = _write(tmp_path, 5, schema, record)
    with pytest.raises(DecodeError) as info:
        Decoder("confluent", DirectorySchemaResolver(tmp_path)).decode(value)
    assert info.value.reason == "schema_mismatch", str(info.value)
