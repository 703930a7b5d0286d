"""Kafka message values (Avro, raw or Confluent-framed) to Segment-shaped event dicts.

This is the consumer's hot path: schemas are parsed once per schema id, the read plan for each
writer schema is worked out once, and free-form fields are parsed with orjson.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Literal, Protocol

import fastavro
import orjson
from fastavro.read import SchemaResolutionError

from consumer.codec.encode import EXTRA_FIELD, JSON_FIELDS
from consumer.codec.schema_files import segment_schema
from consumer.codec.schema_registry import InvalidSchema, SchemaNotFound, parse_schema_text

_SPECIAL = frozenset((*JSON_FIELDS, EXTRA_FIELD))
_loads = orjson.loads


class DecodeError(Exception):
    """A value that can never be decoded (dead-letter it); `reason` is a short machine code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class SchemaResolver(Protocol):
    """Finds the writer schema for a Confluent schema id."""

    def writer_schema(self, schema_id: int) -> Any:
        """The parsed schema; raises SchemaNotFound, InvalidSchema or RegistryUnavailable, or
        SchemaPending while it is fetched in the background (RegistrySchemaResolver)."""
        ...


class DirectorySchemaResolver:
    """Offline resolver: a directory of `<id>.avsc` files."""

    def __init__(self, directory: Path | str) -> None:
        self._directory = Path(directory)
        self._cache: dict[int, Any] = {}

    def writer_schema(self, schema_id: int) -> Any:
        """The parsed `<id>.avsc`; parsed once per id."""
        schema = self._cache.get(schema_id)
        if schema is None:
            path = self._directory / f"{schema_id}.avsc"
            try:
                text = path.read_bytes()
            except FileNotFoundError:
                raise SchemaNotFound(f"no schema file {path.name} in {self._directory}") from None
            schema = self._cache[schema_id] = parse_schema_text(text, str(path))
        return schema


def _field_types(schema: Any) -> dict[str, Any] | None:
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return None
    return {f["name"]: f["type"] for f in schema["fields"]}


def _same_shape(writer_type: Any, reader_type: Any) -> bool:
    """Whether reading with the writer's type gives the value (or None) the reader expects."""
    if writer_type == reader_type:
        return True
    return (
        isinstance(writer_type, list)
        and len(writer_type) == 2
        and "null" in writer_type
        and reader_type in writer_type
        and isinstance(reader_type, str)
    )


class _Plan:
    """How to read values of one writer schema: its own schema alone, or fastavro resolution."""

    __slots__ = ("error", "reader", "writer")

    def __init__(self, writer: Any, reader: Any) -> None:
        self.writer = writer
        self.reader: Any = None
        self.error: DecodeError | None = None
        writer_fields = _field_types(writer)
        reader_fields = _field_types(reader)
        if writer == reader:
            return
        if writer_fields is None or reader_fields is None:
            self.error = DecodeError(
                "schema_mismatch", "writer schema is not a record like the reader schema"
            )
            return
        for name, rtype in reader_fields.items():
            if name in writer_fields:
                if not _same_shape(writer_fields[name], rtype):
                    # A real type change: let fastavro apply Avro's resolution rules per record.
                    self.reader = reader
                    return
            else:
                spec = next(f for f in reader["fields"] if f["name"] == name)
                if "default" not in spec:
                    self.error = DecodeError(
                        "schema_mismatch",
                        f"writer schema lacks field {name!r}, which the reader needs (no default)",
                    )
                    return
                if spec["default"] not in ("", None):
                    # A default that means something (0, "en"): only resolution fills it in.
                    self.reader = reader
        # Every reader field reads the same from the writer's own schema; the by-name pick in
        # _to_event drops writer-only fields and leaves fields missing from the writer absent,
        # exactly what Avro resolution with "" / null defaults would give, but without its cost.


class Decoder:
    """Decodes Kafka values into Segment-shaped dicts; raises DecodeError for bad values.

    RegistryUnavailable and SchemaPending from the resolver propagate unchanged: the record is
    fine, read it again later.
    """

    def __init__(
        self,
        framing: Literal["confluent", "raw"],
        resolver: SchemaResolver | None = None,
        reader_schema: Any = None,
    ) -> None:
        if framing not in ("confluent", "raw"):
            raise ValueError(f"unknown framing {framing!r}; expected 'confluent' or 'raw'")
        if framing == "confluent" and resolver is None:
            raise ValueError("confluent framing needs a schema resolver")
        self._confluent = framing == "confluent"
        self._resolver = resolver
        self._reader = segment_schema() if reader_schema is None else reader_schema
        fields = _field_types(self._reader)
        if fields is None:
            raise ValueError("the reader schema must be an Avro record")
        # Field groups worked out once so the per-record loop does no type tests on names.
        self._text_fields = tuple(
            n for n, t in fields.items() if n not in _SPECIAL and _same_shape(t, "string")
        )
        self._other_fields = tuple(
            n for n, t in fields.items() if n not in _SPECIAL and not _same_shape(t, "string")
        )
        self._json_fields = tuple(n for n in JSON_FIELDS if n in fields)
        self._has_extra = EXTRA_FIELD in fields
        self._raw_plan = _Plan(self._reader, self._reader)
        self._plans: dict[int, _Plan] = {}

    def decode(self, value: bytes | None) -> dict[str, Any]:
        """One Kafka value to a Segment event dict (absent, null and "" fields left out)."""
        if value is None:
            raise DecodeError("null_value", "record value is null (a tombstone), not an event")
        if self._confluent:
            if len(value) < 5:
                raise DecodeError(
                    "truncated",
                    f"value has {len(value)} bytes; the Confluent header alone needs 5",
                )
            if value[0] != 0:
                raise DecodeError(
                    "bad_magic_byte", f"first byte is {value[0]:#04x}; Confluent framing needs 0x00"
                )
            schema_id = int.from_bytes(value[1:5], "big")
            plan = self._plans.get(schema_id) or self._plan(schema_id)
            start = 5
        else:
            plan = self._raw_plan
            start = 0
        if plan.error is not None:
            raise plan.error
        buf = io.BytesIO(value)
        buf.seek(start)
        try:
            record = fastavro.schemaless_reader(buf, plan.writer, plan.reader)
        except EOFError as exc:
            if "Expected -" in str(exc):
                raise DecodeError("invalid_avro", f"negative length in Avro data: {exc}") from None
            raise DecodeError(
                "truncated", f"Avro data ends before the record does ({len(value)} bytes)"
            ) from None
        except UnicodeDecodeError as exc:
            raise DecodeError("invalid_utf8", f"an Avro string is not valid UTF-8: {exc}") from None
        except SchemaResolutionError as exc:
            raise DecodeError(
                "schema_mismatch", f"cannot resolve writer to reader: {exc}"
            ) from None
        except Exception as exc:  # fastavro raises assorted errors on garbage input
            raise DecodeError(
                "invalid_avro", f"not Avro for this schema: {type(exc).__name__}: {exc}"
            ) from None
        end = buf.tell()
        if end != len(value):
            raise DecodeError(
                "trailing_bytes",
                f"{len(value) - end} bytes left after the record (record ends at byte {end} "
                f"of {len(value)})",
            )
        if not isinstance(record, dict):
            raise DecodeError("schema_mismatch", "the writer schema does not describe a record")
        return self._to_event(record)

    def _plan(self, schema_id: int) -> _Plan:
        assert self._resolver is not None
        try:
            writer = self._resolver.writer_schema(schema_id)
        except SchemaNotFound as exc:
            raise DecodeError("unknown_schema_id", f"schema id {schema_id}: {exc}") from None
        except InvalidSchema as exc:
            raise DecodeError("invalid_writer_schema", f"schema id {schema_id}: {exc}") from None
        plan = self._plans[schema_id] = _Plan(writer, self._reader)
        return plan

    def _to_event(self, record: dict[str, Any]) -> dict[str, Any]:
        get = record.get
        event: dict[str, Any] = {}
        for name in self._text_fields:
            value = get(name)
            if value:  # None (absent or null) and "" both mean absent
                event[name] = value
        for name in self._other_fields:
            value = get(name)
            if value is not None:
                event[name] = value
        for name in self._json_fields:
            value = get(name)
            if value:
                try:
                    event[name] = _loads(value)
                except orjson.JSONDecodeError as exc:
                    raise DecodeError(
                        "invalid_json_field", f"field {name!r} is not valid JSON: {exc}"
                    ) from None
        if self._has_extra:
            value = get(EXTRA_FIELD)
            if value:
                try:
                    extra = _loads(value)
                except orjson.JSONDecodeError as exc:
                    raise DecodeError(
                        "invalid_json_field", f"field 'extra' is not valid JSON: {exc}"
                    ) from None
                if not isinstance(extra, dict):
                    raise DecodeError(
                        "invalid_json_field",
                        f"field 'extra' must be a JSON object, not {type(extra).__name__}",
                    )
                event.update(extra)
        return event
