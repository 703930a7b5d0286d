"""FullStory's 500-property limit on users: the cap, its report and its metric."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from consumer.codec.decode import Decoder
from consumer.codec.encode import Encoder
from consumer.config import Destination
from consumer.metrics import Metrics
from consumer.pipeline.flow import FlowControl
from consumer.pipeline.ledger import Ledger
from consumer.pipeline.router import Router
from consumer.sink.contract import Job
from consumer.transform import (
    DestinationSettings,
    Requests,
    outcome_to_json,
    transform,
    transform_lines,
)
from consumer.transform.properties import MAX_USER_PROPERTIES

DEFAULT = DestinationSettings()
GROUPS = DestinationSettings(track_groups=True)
TRAITS = {f"t{i:03d}": i for i in range(600)}  # each declared `int` in the schema
FIRST_500 = [f"t{i:03d}" for i in range(500)]
LAST_100 = tuple(f"t{i:03d}" for i in range(500, 600))


def identify(traits: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"type": "identify", "messageId": "m-1", "userId": "u-1", "traits": traits, **fields}


def group(traits: dict[str, Any]) -> dict[str, Any]:
    return {"type": "group", "messageId": "m-1", "userId": "u-1", "groupId": "g", "traits": traits}


def outcome_of(event: dict[str, Any], settings: DestinationSettings = DEFAULT) -> Requests:
    outcome = transform(event, settings)
    assert isinstance(outcome, Requests), outcome
    return outcome


def body_of(event: dict[str, Any], settings: DestinationSettings = DEFAULT) -> dict[str, Any]:
    body = outcome_of(event, settings).requests[0].body
    assert body is not None
    return body


def leaf_paths(properties: dict[str, Any], prefix: str = "") -> list[str]:
    paths = []
    for name, value in properties.items():
        if isinstance(value, dict) and value:
            paths += leaf_paths(value, prefix + name + ".")
        else:
            paths.append(prefix + name)
    return paths


def test_600_traits_keep_the_first_500_by_name_and_their_schema() -> None:
    outcome = outcome_of(identify(TRAITS))
    body = outcome.requests[0].body
    assert body is not None
    assert list(body["properties"]) == FIRST_500
    assert body["schema"]["properties"] == dict.fromkeys(FIRST_500, "int")
    assert outcome.dropped_properties == LAST_100


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_same_500_whatever_the_key_order(seed: int) -> None:
    items = list(TRAITS.items())
    random.Random(seed).shuffle(items)
    outcome = outcome_of(identify(dict(items)))
    body = outcome.requests[0].body
    assert body is not None
    assert sorted(body["properties"]) == FIRST_500
    assert sorted(body["schema"]["properties"]) == FIRST_500
    assert outcome.dropped_properties == LAST_100
    kept_order = [key for key, _ in items if key in body["properties"]]
    assert list(body["properties"]) == kept_order  # the input order of what is kept


def test_500_properties_are_sent_whole() -> None:
    traits = {f"t{i:03d}": i for i in range(499)}
    outcome = outcome_of(identify(traits, anonymousId="a-1"))
    body = outcome.requests[0].body
    assert body is not None
    assert len(body["properties"]) == MAX_USER_PROPERTIES
    assert outcome.dropped_properties == ()


def test_the_mappings_own_property_is_always_kept() -> None:
    # "segmentAnonymousId" sorts after "t..." and would be cut if it competed by name.
    body = body_of(identify(TRAITS, anonymousId="a-1"))
    assert len(body["properties"]) == MAX_USER_PROPERTIES
    assert body["properties"]["segmentAnonymousId"] == "a-1"
    assert "t498" in body["properties"]
    assert "t499" not in body["properties"]


def test_nested_traits_count_each_leaf_path() -> None:
    traits = {
        "b": {f"k{i:03d}": i for i in range(300)},
        "a": {f"k{i:03d}": i for i in range(300)},
        "empty": {},
        "z": 1,
    }
    outcome = outcome_of(identify(traits))
    body = outcome.requests[0].body
    assert body is not None
    kept = leaf_paths(body["properties"])
    assert len(kept) == MAX_USER_PROPERTIES
    assert sorted(kept) == [f"a.k{i:03d}" for i in range(300)] + [f"b.k{i:03d}" for i in range(200)]
    assert sorted(body["schema"]["properties"]) == sorted(kept)
    assert outcome.dropped_properties == (
        *(f"b.k{i:03d}" for i in range(200, 300)),
        "empty",
        "z",
    )
    assert list(body["properties"]) == ["b", "a"]


def test_an_object_left_empty_by_the_cap_is_dropped_with_its_leaves() -> None:
    traits = {"a": {f"k{i:03d}": i for i in range(500)}, "b": {"c": {"d": 1}}}
    outcome = outcome_of(identify(traits))
    body = outcome.requests[0].body
    assert body is not None
    assert list(body["properties"]) == ["a"]
    assert "b.c.d" not in body["schema"]["properties"]
    assert outcome.dropped_properties == ("b.c.d",)


def test_group_traits_are_capped_and_keep_the_group_id() -> None:
    # "group.…" sorts before "groupId": the id must not be the one cut.
    outcome = outcome_of(group(TRAITS), GROUPS)
    body = outcome.requests[0].body
    assert body is not None
    assert body["properties"]["groupId"] == "g"
    assert list(body["properties"]["group"]) == FIRST_500[:499]
    assert body["schema"]["properties"] == {f"group.{name}": "int" for name in FIRST_500[:499]}
    assert outcome.dropped_properties == ("group.t499", *(f"group.{n}" for n in LAST_100))


def test_event_properties_are_not_capped() -> None:
    event = {"type": "track", "event": "E", "userId": "u-1", "properties": TRAITS}
    outcome = outcome_of(event)
    body = outcome.requests[0].body
    assert body is not None
    assert len(body["properties"]) == 600
    assert outcome.dropped_properties == ()


def test_the_transform_output_lists_the_dropped_properties() -> None:
    assert outcome_to_json(identify(TRAITS), transform(identify(TRAITS), DEFAULT))[
        "dropped_properties"
    ] == list(LAST_100)
    lines = [orjson.dumps(identify(TRAITS)), orjson.dumps(identify({"plan": "pro"}))]
    capped, whole = (orjson.loads(line) for line in transform_lines(lines, DEFAULT))
    assert capped["dropped_properties"] == list(LAST_100)
    assert len(capped["requests"][0]["body"]["properties"]) == MAX_USER_PROPERTIES
    assert "dropped_properties" not in whole


class _Message:
    """What the pipeline reads of a confluent_kafka.Message."""

    def __init__(self, value: bytes, offset: int) -> None:
        self._value = value
        self._offset = offset

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return "segment"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return b"u-1"

    def value(self) -> bytes:
        return self._value

    def headers(self) -> None:
        return None

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_700_000_000_000)


class _Sink:
    def __init__(self) -> None:
        self.jobs: list[Job] = []

    def submit(self, job: Job) -> None:
        self.jobs.append(job)


def test_the_router_counts_dropped_properties() -> None:
    """The app's handling of the transform's outcome, without Kafka: only the transform's
    path is taken, so there is no source, no client and no dead-letter queue."""
    metrics = Metrics()
    ledger = Ledger()
    ledger.assign(("segment", 0))
    destination = Destination("default", ("segment",), DestinationSettings(api_key="k"))
    flow = FlowControl(None, ledger, metrics, max_records=100, max_bytes=2**20)  # type: ignore[arg-type]
    router = Router(
        decoder=Decoder("raw"),
        destinations={"segment": destination},
        clients={"default": None},  # type: ignore[dict-item]
        ledger=ledger,
        flow=flow,
        dead_letters=None,  # type: ignore[arg-type]
        metrics=metrics,
    )
    sink = _Sink()
    router.sink = sink  # type: ignore[assignment]
    encoder = Encoder("raw")
    events = [identify(TRAITS), identify({"plan": "pro"}, messageId="m-2")]
    router.route([_Message(encoder.encode(event), offset) for offset, event in enumerate(events)])
    dropped = metrics.registry.get_sample_value("fullstory_consumer_user_properties_dropped_total")
    assert dropped == len(LAST_100)
    sent = [job.requests[0].body["properties"] for job in sink.jobs]
    assert [len(properties) for properties in sent] == [MAX_USER_PROPERTIES, 1]
