"""map_errors on FullStory's real answers: the OpenAPI example, reordered and decorated echoes,
and every way an error can fail to name exactly one item (none of which may count as imported)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from consumer.sink.batch_errors import AMBIGUOUS, UNMATCHED, map_errors
from consumer.sink.client import Rejected

SPECS = Path(__file__).parents[1] / "data" / "fullstory-openapi"


def spec_example(name: str) -> dict[str, Any]:
    definitions = json.loads((SPECS / "users.sdk.swagger.json").read_text())["definitions"]
    example: dict[str, Any] = definitions[name]["example"]
    return example


# What the consumer sent for the two users of the spec's example, and a third that imported.
SENT_USERS: list[Any] = [
    {"uid": "ok-1", "properties": {"pricing_plan": "free"}},
    {
        "uid": "xyz123",
        "display_name": "Daniel Falko",
        "email": "daniel.falko@example.com",
        "properties": {"pricing_plan": "paid", "popup_help": True, "total_spent": 14.55},
    },
    {
        "display_name": "Stan Bandee",
        "email": "stan.bandee@example.com",
        "properties": {"pricing_plan": "free", "popup_help": True, "total_spent": 0},
    },
]


def test_the_specs_own_error_example_refuses_exactly_its_two_users() -> None:
    errors = spec_example("fullstory.v2.users.GetBatchUserImportErrorsResponse")["results"]
    assert all("index" not in e and e["user"]["schema"] is None for e in errors)
    mapping = map_errors("users", SENT_USERS, errors)
    assert mapping.results == [
        None,
        Rejected(400, "error_code", "The error message"),
        Rejected(400, "error_code", "The error message"),
    ]
    assert (mapping.ambiguous, mapping.unmatched) == (0, 0)


def test_error_order_key_order_and_number_forms_do_not_matter() -> None:
    errors = spec_example("fullstory.v2.users.GetBatchUserImportErrorsResponse")["results"]
    reordered = [{**e, "user": dict(reversed(list(e["user"].items())))} for e in reversed(errors)]
    reordered[0]["user"]["properties"]["total_spent"] = 0.0  # the JSON number 0 as a double
    mapping = map_errors("users", SENT_USERS, reordered)
    assert mapping.results[0] is None and None not in mapping.results[1:]


def test_an_event_echo_with_derived_fields_and_a_normalised_timestamp_matches() -> None:
    sent: list[Any] = [
        {"name": "Order Completed", "timestamp": "2024-05-01T10:00:00.000Z", "user": {"uid": "u"}},
        {"name": "Order Completed", "timestamp": "2024-05-01T10:00:01.000Z", "user": {"uid": "u"}},
    ]
    echo = {
        "name": "Order Completed",
        "timestamp": "2024-05-01T10:00:01Z",
        "user": {"uid": "u", "id": "1234"},
        "session": None,
        "properties": None,
    }
    errors = [{"message": "bad", "code": "invalid_argument", "event": echo, "shared": None}]
    mapping = map_errors("events", sent, errors)
    assert mapping.results == [None, Rejected(400, "invalid_argument", "bad")]


def test_identity_fields_place_an_error_whose_echo_lost_a_property() -> None:
    sent: list[Any] = [
        {"uid": "a", "properties": {"plan": "x", "bad": "y"}},
        {"uid": "b", "properties": {"plan": "x"}},
    ]
    errors = [{"message": "m", "code": "c", "user": {"uid": "a", "properties": {"plan": "x"}}}]
    assert map_errors("users", sent, errors).results == [Rejected(400, "c", "m"), None]


def test_identical_items_with_as_many_errors_are_all_refused_without_ambiguity() -> None:
    sent: list[Any] = [{"name": ""}, {"name": "ok"}, {"name": ""}]
    errors = [
        {"message": f"m{i}", "code": "invalid_argument", "event": {"name": ""}} for i in (1, 2)
    ]
    mapping = map_errors("events", sent, errors)
    assert mapping.results[1] is None
    assert all(
        isinstance(r, Rejected) and r.code == "invalid_argument" for r in mapping.results[::2]
    )
    assert mapping.ambiguous == 0


def test_one_error_for_two_indistinguishable_items_refuses_both_as_ambiguous() -> None:
    sent: list[Any] = [{"uid": "a", "email": "x"}, {"uid": "a", "email": "x"}, {"uid": "b"}]
    errors = [{"message": "too long", "code": "invalid_argument", "user": {"uid": "a"}}]
    mapping = map_errors("users", sent, errors)
    assert mapping.results[2] is None
    for result in mapping.results[:2]:
        assert isinstance(result, Rejected) and result.code == AMBIGUOUS
        assert "invalid_argument: too long" in result.message
    assert mapping.ambiguous == 1


def test_a_unique_placement_narrows_an_ambiguous_one() -> None:
    # the first error fits items 0 and 1 by uid; the second can only be item 1 (its email), so
    # the first is item 0
    sent: list[Any] = [{"uid": "a", "email": "p"}, {"uid": "a", "email": "q"}]
    errors = [
        {"message": "m1", "code": "c", "user": {"uid": "a"}},
        {"message": "m2", "code": "c", "user": {"uid": "a", "email": "q"}},
    ]
    mapping = map_errors("users", sent, errors)
    assert mapping.results == [Rejected(400, "c", "m1"), Rejected(400, "c", "m2")]


@pytest.mark.parametrize(
    ("errors", "expected"),
    [
        ([{"message": "m", "code": "c", "user": {"uid": "nobody"}}], None),
        ([{"message": "m", "code": "c"}], None),  # no echo at all
        ([], 1),  # the job status counted an error the pages did not list
    ],
)
def test_an_error_that_names_no_item_refuses_every_item_not_refused_otherwise(
    errors: list[dict[str, Any]], expected: int | None
) -> None:
    sent: list[Any] = [{"uid": "a"}, {"uid": "b"}]
    mapping = map_errors("users", sent, errors, expected)
    assert all(isinstance(r, Rejected) and r.code == UNMATCHED for r in mapping.results)
    assert mapping.unmatched == 1


def test_without_errors_every_item_is_imported() -> None:
    assert map_errors("users", SENT_USERS, [], 0).results == [None, None, None]


def test_shuffled_spec_shaped_answers_always_refuse_exactly_the_refused_items() -> None:
    rng = random.Random(7)
    sent: list[Any] = [
        {"uid": f"u{i % 40}", "properties": {"n": i % 3, "plan": "p"}} for i in range(200)
    ]
    refused = set(rng.sample(range(200), 30))
    errors = [
        {
            "message": "m",
            "code": "c",
            "user": {**sent[i], "schema": None, "type_conflicts": None, "id": f"fs-{i}"},
        }
        for i in refused
    ]
    rng.shuffle(errors)
    results = map_errors("users", sent, errors, len(errors)).results
    assert all(results[i] is not None for i in refused)  # nothing refused counts as imported
    bodies = [json.dumps(b, sort_keys=True) for b in sent]
    for i, result in enumerate(results):
        if bodies.count(bodies[i]) == 1:  # a unique item is placed exactly
            assert (result == Rejected(400, "c", "m")) == (i in refused)
        else:  # a twin is refused exactly, as a candidate, or imported only if no twin was
            assert result is not None or not any(bodies[j] == bodies[i] for j in refused)
