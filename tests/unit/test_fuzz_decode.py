"""Fuzz: random bytes and mutated valid records through Decoder and transform (bounded run)."""

from __future__ import annotations

import contextlib
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumer.codec.decode import DecodeError, Decoder
from consumer.codec.encode import Encoder
from consumer.codec.schema_files import segment_schema
from consumer.codec.schema_registry import RegistryUnavailable, SchemaNotFound
from consumer.transform import DestinationSettings, Outcome, transform

SETTINGS, _ = DestinationSettings.from_mapping({"trackAllPages": True, "track_groups": True})
VALID = [
    Encoder().encode(e)
    for e in (
        {"messageId": "m", "type": "track", "userId": "u", "event": "E", "properties": {"a": [1]}},
        {"messageId": "m", "type": "identify", "anonymousId": "a", "traits": {"x": {"y": None}}},
        {"messageId": "m", "type": "page", "userId": 42, "name": "Home", "timestamp": 1700000000},
    )
]


class _Flaky:
    """id 1: the schema; id 2: the registry is down; anything else: unknown."""

    def writer_schema(self, schema_id: int) -> Any:
        if schema_id == 1:
            return segment_schema()
        if schema_id == 2:
            raise RegistryUnavailable("down")
        raise SchemaNotFound(str(schema_id))


RAW = Decoder("raw")
CONFLUENT = Decoder("confluent", _Flaky())


def _check(value: bytes) -> None:
    for decoder, data in ((RAW, value), (CONFLUENT, b"\x00\x00\x00\x00\x01" + value)):
        try:
            event = decoder.decode(data)
        except (DecodeError, RegistryUnavailable):
            continue
        assert isinstance(transform(event, SETTINGS), Outcome.__args__)  # type: ignore[attr-defined]
    with contextlib.suppress(DecodeError, RegistryUnavailable):  # any header: 0..2, unknown ids
        CONFLUENT.decode(value)


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.integers(0, 2))
        pos = draw(st.integers(0, len(data)))
        if op == 0 and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        elif op == 1:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[pos : pos + draw(st.integers(1, 8))]
    return bytes(data)


FUZZ = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes(value: bytes) -> None:
    _check(value)


@FUZZ
@given(_mutated())
def test_mutated_valid_records(value: bytes) -> None:
    _check(value)
