"""Each record of tests/data/malformed/ through Decoder + transform ends with its precise reason."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import fastavro
import pytest

from consumer.codec.decode import DecodeError, Decoder
from consumer.codec.schema_files import segment_schema
from consumer.codec.schema_registry import SchemaNotFound
from consumer.transform import DestinationSettings, Invalid, Requests, transform

CORPUS = Path(__file__).resolve().parents[1] / "data" / "malformed"
MANIFEST = json.loads((CORPUS / "manifest.json").read_text())
IDS = {"segment": 1, "other": 2, "no_message_id": 3, "user_id_int": 4}


def corpus_value(entry: dict[str, Any], ids: dict[str, int]) -> bytes:
    """The Kafka value of a corpus entry, framed with the id `ids` gives its schema."""
    data = (CORPUS / entry["file"]).read_bytes()
    if entry["file"].endswith(".gz"):
        data = gzip.decompress(data)
    if entry["schema"] is None:
        return data
    return b"\x00" + ids[entry["schema"]].to_bytes(4, "big") + data


class _Resolver:
    def __init__(self) -> None:
        self.schemas = {
            IDS["segment"]: segment_schema(),
            **{IDS[n]: fastavro.parse_schema(s) for n, s in MANIFEST["schemas"].items()},
        }

    def writer_schema(self, schema_id: int) -> Any:
        if schema_id not in self.schemas:
            raise SchemaNotFound(f"no schema {schema_id}")
        return self.schemas[schema_id]


def outcome(decoder: Decoder, value: bytes) -> str:
    """'delivered', or the reason the app would write before ': ' in the DLQ message header."""
    try:
        event = decoder.decode(value)
    except DecodeError as exc:
        return exc.reason
    settings, _ = DestinationSettings.from_mapping({})
    result = transform(event, settings)
    if isinstance(result, Invalid):
        return result.reason
    assert isinstance(result, Requests), result
    return "delivered"


def test_manifest_covers_every_kind_of_bad_input() -> None:
    expects = {e["expect"] for e in MANIFEST["records"]}
    assert expects >= {
        "truncated",
        "bad_magic_byte",
        "unknown_schema_id",
        "schema_mismatch",
        "invalid_avro",
        "invalid_utf8",
        "trailing_bytes",
        "invalid_json_field",
        "invalid_event",
        "delivered",
    }
    assert len({e["file"] for e in MANIFEST["records"]}) == len(MANIFEST["records"])
    on_disk = {p.name for p in CORPUS.iterdir() if p.name.endswith((".avro", ".gz"))}
    assert on_disk == {e["file"] for e in MANIFEST["records"]}


@pytest.mark.parametrize("entry", MANIFEST["records"], ids=lambda e: e["file"])
def test_corpus_record_has_its_precise_outcome(entry: dict[str, Any]) -> None:
    decoder = Decoder("confluent", _Resolver())
    assert outcome(decoder, corpus_value(entry, IDS)) == entry["expect"], entry["why"]


def test_huge_record_is_really_huge() -> None:
    (entry,) = [e for e in MANIFEST["records"] if e["file"].startswith("huge-")]
    assert len(corpus_value(entry, IDS)) > 5 * 1024 * 1024


def test_deep_nesting_message_names_the_field() -> None:
    (entry,) = [e for e in MANIFEST["records"] if e["file"] == "deep-nesting.avro"]
    with pytest.raises(DecodeError, match="'properties'"):
        Decoder("confluent", _Resolver()).decode(corpus_value(entry, IDS))
