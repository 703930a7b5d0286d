"""Segment JSON events to Avro records and Kafka values (producer side, tests, benchmarks)."""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from typing import Any, Literal

import fastavro
import orjson

from consumer.codec.schema_files import segment_schema

# Top-level members the schema carries as plain strings ("" = absent).
STRING_FIELDS: tuple[str, ...] = (
    "messageId",
    "type",
    "userId",
    "anonymousId",
    "event",
    "name",
    "category",
    "groupId",
    "previousId",
    "timestamp",
    "originalTimestamp",
    "sentAt",
    "receivedAt",
)
# Free-form members the schema carries as compact JSON text ("" = absent).
JSON_FIELDS: tuple[str, ...] = ("properties", "traits", "context", "integrations")
# JSON object of every other top-level member, and of values the typed fields cannot hold.
EXTRA_FIELD = "extra"

_STRING_SET = frozenset(STRING_FIELDS)
_JSON_SET = frozenset(JSON_FIELDS)
_EMPTY_RECORD: dict[str, str] = dict.fromkeys((*STRING_FIELDS, *JSON_FIELDS, EXTRA_FIELD), "")
_CONFLUENT_HEADER = struct.Struct(">bI")
MAX_SCHEMA_ID = 2**31 - 1


def _dumps(value: Any, where: str) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError as exc:  # e.g. an integer beyond 64 bits, a non-JSON Python object
        raise ValueError(f"{where} cannot be written as JSON: {exc}") from exc


def to_avro_record(event: dict[str, Any]) -> dict[str, str]:
    """Map a Segment JSON event onto the schema's fields, losing nothing but top-level nulls.

    A scalar field holds its value only when it is a non-empty string; any other non-null value
    (a numeric userId, an epoch-millisecond timestamp, "") goes to `extra` with unknown members.
    """
    if not isinstance(event, dict):
        raise TypeError(f"a Segment event must be a JSON object, not {type(event).__name__}")
    record = _EMPTY_RECORD.copy()
    extra: dict[str, Any] = {}
    for key, value in event.items():
        if value is None:
            continue
        if key in _STRING_SET:
            if isinstance(value, str) and value:
                record[key] = value
            else:
                extra[key] = value
        elif key in _JSON_SET:
            record[key] = _dumps(value, f"field {key!r}")
        else:
            extra[key] = value
    if extra:
        record[EXTRA_FIELD] = _dumps(extra, "extra top-level members")
    return record


def _adapter(schema: Any) -> Callable[[dict[str, Any]], dict[str, Any]] | None:
    """For another version of the schema (older, newer, `bytes` for `string`): a function that
    fits a `to_avro_record` record to it, or None when the record fits as it is."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise ValueError("the writer schema must be an Avro record")
    fields = schema["fields"]
    standard = set(_EMPTY_RECORD)
    if {f["name"] for f in fields} == standard and all(f["type"] == "string" for f in fields):
        return None
    plan: list[tuple[str, bool, Any]] = []
    for f in fields:
        name, ftype = f["name"], f["type"]
        if name not in standard and "default" not in f:
            raise ValueError(f"writer field {name!r} is not in SegmentEvent and has no default")
        plan.append((name, ftype == "bytes", f.get("default")))

    def adapt(record: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, as_bytes, default in plan:
            value = record.get(name, default)
            out[name] = value.encode() if as_bytes and isinstance(value, str) else value
        lost = [n for n, v in record.items() if v and n not in out]
        if lost:
            raise ValueError(f"this schema version has no field for {', '.join(lost)}")
        return out

    return adapt


class Encoder:
    """Encodes events for one framing: raw Avro, or Confluent (magic 0 + schema id + Avro)."""

    def __init__(
        self,
        framing: Literal["confluent", "raw"] = "raw",
        schema_id: int | None = None,
        schema: Any = None,
    ) -> None:
        if framing == "confluent":
            if schema_id is None or not 0 <= schema_id <= MAX_SCHEMA_ID:
                raise ValueError(f"confluent framing needs a schema id in 0..{MAX_SCHEMA_ID}")
            self._header = _CONFLUENT_HEADER.pack(0, schema_id)
        elif framing == "raw":
            self._header = b""
        else:
            raise ValueError(f"unknown framing {framing!r}; expected 'confluent' or 'raw'")
        self._schema = segment_schema() if schema is None else schema
        self._adapt = _adapter(self._schema)

    def encode(self, event: dict[str, Any]) -> bytes:
        """The Kafka message value for one Segment event (in this encoder's schema version)."""
        record: dict[str, Any] = to_avro_record(event)
        if self._adapt is not None:
            record = self._adapt(record)
        return self.encode_record(record)

    def encode_record(self, record: dict[str, Any]) -> bytes:
        """The Kafka message value for a record already in the schema's shape."""
        buf = io.BytesIO()
        buf.write(self._header)
        fastavro.schemaless_writer(buf, self._schema, record)
        return buf.getvalue()


def event_key(event: dict[str, Any]) -> bytes | None:
    """Kafka key keeping one user's events in one partition: userId, else anonymousId."""
    for field in ("userId", "anonymousId"):
        value = event.get(field)
        if isinstance(value, str):
            if value:
                return value.encode()
        elif isinstance(value, int) and not isinstance(value, bool):
            return str(value).encode()
        elif isinstance(value, float) and value == value:
            return (str(int(value)) if value.is_integer() else repr(value)).encode()
    return None
