"""The repo's Avro schema for Segment events, parsed once (parsing per record is expensive).

The schema and the demo's files live in the top-level `schemas/` directory, which the build
installs as the package `consumer.schemas`: importlib.resources finds them in a wheel install as
well as in an editable one.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path
from typing import Any

import fastavro


def schema_file(name: str) -> Path:
    """A file of `schemas/` (package data of `consumer.schemas`); installs are unpacked on disk."""
    return Path(str(resources.files("consumer.schemas").joinpath(name)))


SEGMENT_SCHEMA_PATH = schema_file("segment-event.avsc")


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
