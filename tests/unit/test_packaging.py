"""pyproject.toml lists the packages by hand (schemas/ is mapped to `consumer.schemas`, which
`find` cannot do): a subpackage missing from the list would be missing from the wheel."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

from consumer.codec.schema_files import schema_file, segment_schema

REPO = Path(__file__).resolve().parents[2]
SETUPTOOLS = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_consumer_package_is_listed() -> None:
    found = {
        ".".join(init.parent.relative_to(REPO).parts)
        for init in (REPO / "consumer").rglob("__init__.py")
    }
    assert found | {"consumer.schemas"} == set(SETUPTOOLS["packages"])


def test_the_schemas_package_is_the_top_level_directory() -> None:
    assert SETUPTOOLS["package-dir"] == {"consumer.schemas": "schemas"}
    assert (REPO / "schemas" / "__init__.py").is_file()


def test_the_shipped_files_are_package_data() -> None:
    patterns = SETUPTOOLS["package-data"]["consumer.schemas"]
    for name in ("segment-event.avsc", "sample-events.jsonl", "demo-settings.json"):
        assert any(fnmatch.fnmatch(name, p) for p in patterns), name
        assert schema_file(name).is_file(), name
    assert segment_schema()["name"] == "io.segment.fullstory.SegmentEvent"
