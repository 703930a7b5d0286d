"""The repo's Avro schema for Segment events, parsed once (parsing per record is expensive)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import fastavro

SEGMENT_SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "segment-event.avsc"


@functools.lru_cache(maxsize=64)
def _load_cached(path: Path) -> Any:
    with path.open("rb") as fo:
        return fastavro.parse_schema(json.load(fo))


def load_schema(path: Path | str) -> Any:
    """Parse an `.avsc` file with fastavro; cached per resolved path."""
    return _load_cached(Path(path).resolve())


def segment_schema() -> Any:
    """The repo's `SegmentEvent` schema, parsed once."""
    return load_schema(SEGMENT_SCHEMA_PATH)
