"""Property normalisation, rule by rule (mapping-spec.md, "Property normalisation")."""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import orjson
import pytest

from consumer.transform.properties import MAX_DEPTH, SUFFIX_TYPES, clean_key, cut_text, normalise


def norm(source: object, **kwargs: Any) -> tuple[dict[str, Any], dict[str, str]]:
    return normalise(source, **kwargs)


@pytest.mark.parametrize("source", [None, "x", 5, [1, 2], True, 1.5])
def test_missing_or_non_object_counts_as_empty(source: object) -> None:
    assert norm(source) == ({}, {})


@pytest.mark.parametrize(
    ("suffix", "value", "declared"),
    [
        ("str", "a", "str"),
        ("int", 1, "int"),
        ("real", 1.5, "real"),
        ("bool", True, "bool"),
        ("date", "2024-01-02T03:04:05Z", "date"),
        ("strs", ["a"], "strs"),
        ("ints", [1], "ints"),
        ("reals", [1.5], "reals"),
        ("bools", [True], "bools"),
        ("dates", ["2024-01-02T03:04:05Z"], "dates"),
    ],
)
def test_every_typed_suffix_is_removed_and_declared(
    suffix: str, value: object, declared: str
) -> None:
    assert norm({f"field_{suffix}": value}) == (
        {"field": value},
        {"field": declared},
    )


def test_obj_and_objs_suffixes_are_removed_without_declaring() -> None:
    assert norm({"address_obj": {"city": "Paris"}, "items_objs": "[]", "n_obj": 5}) == (
        {"address": {"city": "Paris"}, "items": "[]", "n": 5},
        {"n": "int"},
    )


def test_suffix_table_is_the_spec_list() -> None:
    assert set(SUFFIX_TYPES) == {
        "str", "int", "real", "bool", "date", "strs", "ints", "reals", "bools", "dates",
        "obj", "objs",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("_str", ("p__str", None)),  # empty part before the suffix: not a suffix
        ("_int", ("p__int", None)),
        ("__int", ("p__", "int")),  # part before the last _ is "_": removed
        ("a_b_int", ("a_b", "int")),
        ("count_INT", ("count_INT", None)),  # suffixes are case-sensitive
        ("string", ("string", None)),
        ("first_name", ("first_name", None)),
        ("order_ID", ("order_ID", None)),
        ("-_int", ("", "int")),  # cleaned to empty: dropped
        ("1st", ("p_1st", None)),
        ("_id", ("p__id", None)),
        ("first name!", ("firstname", None)),
        ("café", ("caf", None)),
        ("Ünïcode", ("ncode", None)),
        ("$%&", ("", None)),
        ("", ("", None)),
        ("9_int", ("p_9", "int")),
        ("a.b", ("ab", None)),
    ],
)
def test_key_cleaning(key: str, expected: tuple[str, str | None]) -> None:
    assert clean_key(key) == expected


def test_name_cleaning_in_objects() -> None:
    assert norm({"first name": "Jane", "1st": 1, "_id": "x", "$$": "gone", "": "gone"}) == (
        {"firstname": "Jane", "p_1st": 1, "p__id": "x"},
        {"p_1st": "int"},
    )


def test_later_key_wins_and_replaces_its_schema() -> None:
    assert norm({"count_int": 1, "count_str": "5"}) == ({"count": "5"}, {"count": "str"})
    assert norm({"a-b": 1, "ab": "x"}) == ({"ab": "x"}, {})
    assert norm({"x": {"n": 1, "d": "2024-01-02T03:04Z"}, "x_str": "flat"}) == (
        {"x": "flat"},
        {"x": "str"},
    )
    assert norm({"x": 1, "x!": {"n": 2}}) == ({"x": {"n": 2}}, {"x.n": "int"})
    # "xy" shares a prefix with "x" but is not nested under it: untouched.
    assert norm({"xy": 1, "x": {"n": 2}, "x_obj": {"m": 3}}) == (
        {"xy": 1, "x": {"m": 3}},
        {"xy": "int", "x.m": "int"},
    )


def test_a_dropped_later_key_does_not_erase_the_earlier_one() -> None:
    assert norm({"x": 1, "x!": math.nan}) == ({"x": 1}, {"x": "int"})


def test_scalars_pass_through() -> None:
    assert norm({"n": None, "t": True, "f": False, "s": "text", "i": -3, "r": 2.5, "z": 0.0}) == (
        {"n": None, "t": True, "f": False, "s": "text", "i": -3, "r": 2.5, "z": 0.0},
        {"i": "int"},
    )


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_drop_the_property(bad: float) -> None:
    assert norm({"bad": bad, "good": 1.0}) == ({"good": 1.0}, {})


def test_integers_beyond_64_bits_are_dropped() -> None:
    assert norm({"max": 2**63 - 1, "min": -(2**63), "big": 2**63, "small": -(2**63) - 1}) == (
        {"max": 2**63 - 1, "min": -(2**63)},
        {"max": "int", "min": "int"},
    )


def test_long_string_is_cut_at_8192_bytes_on_a_character_boundary() -> None:
    ascii_text = "a" * 9000
    assert norm({"s": ascii_text})[0] == {"s": "a" * 8192}
    euro = "€" * 3000  # 3 bytes each: 8192 // 3 = 2730 whole characters
    cut = norm({"s": euro})[0]["s"]
    assert cut == "€" * 2730
    assert len(cut.encode()) == 8190
    emoji = "a" + "😀" * 2500  # 1 + 4n bytes: 2047 whole emoji fit in 8192
    assert norm({"s": emoji})[0]["s"] == "a" + "😀" * 2047
    exact = "é" * 4096  # exactly 8192 bytes: unchanged
    assert norm({"s": exact})[0]["s"] == exact


def test_cut_text_leaves_short_strings_alone() -> None:
    text = "x" * 8192
    assert cut_text(text) is text


@pytest.mark.parametrize(
    "text",
    [
        "2024-01-02T03:04Z",
        "2024-01-02T03:04:05Z",
        "2024-01-02T03:04:05.123Z",
        "2024-01-02T03:04:05.123456+00:00",
        "2024-05-17T16:30:05+02:00",
        "2024-05-17T16:30:05-11:30",
        "2024-02-29T00:00:00Z",
        "2024-02-29T00:00:00.000Z",  # Segment's own form (its fast path) from here on
        "2024-05-31T23:59:59.999Z",
        "2000-02-29T12:00:00.000Z",
    ],
)
def test_date_time_strings_are_declared_date(text: str) -> None:
    assert norm({"at": text}) == ({"at": text}, {"at": "date"})


@pytest.mark.parametrize(
    "text",
    [
        "2024-01-02",  # a date alone is not a date-time
        "2024-01-02T03:04:05",  # no zone
        "2024-01-02 03:04:05Z",  # space separator
        "2024-01-02T03:04:05+0100",  # offset without colon
        "2023-02-29T00:00:00Z",  # not a real day
        "2024-13-01T00:00:00Z",
        "2024-01-02T24:00:00Z",
        "2024-01-02T03:04:05.Z",
        "2024-01-02T03:04:05Zjunk",
        "0000-01-01T00:00:00Z",
        "yesterday",
        "2023-02-29T00:00:00.000Z",  # Segment's own form (its fast path) from here on
        "1900-02-29T00:00:00.000Z",
        "2024-06-31T00:00:00.000Z",
        "0000-01-01T00:00:00.000Z",
        "2024-01-02T24:00:00.000Z",
        "2024-01-02T03:04:05.678z",
    ],
)
def test_other_strings_are_not_declared(text: str) -> None:
    assert norm({"at": text}) == ({"at": text}, {})


def test_objects_are_normalised_recursively_with_dotted_schema_paths() -> None:
    source = {
        "address": {"zip_int": "8001", "city": "Zürich", "geo": {"lat": 47.4, "level_int": 3}},
        "logins": 5,
    }
    assert norm(source) == (
        {
            "address": {"zip": "8001", "city": "Zürich", "geo": {"lat": 47.4, "level": 3}},
            "logins": 5,
        },
        {"address.zip": "int", "address.geo.level": "int", "logins": "int"},
    )


def test_the_spec_schema_example() -> None:
    assert norm({"logins": 5, "address": {"zip": 8001}}) == (
        {"logins": 5, "address": {"zip": 8001}},
        {"logins": "int", "address.zip": "int"},
    )


def test_declared_suffix_type_wins_over_inferred() -> None:
    assert norm({"count_str": 5}) == ({"count": 5}, {"count": "str"})
    assert norm({"when_str": "2024-01-02T03:04Z"}) == (
        {"when": "2024-01-02T03:04Z"},
        {"when": "str"},
    )
    assert norm({"ids_strs": [1, 2]}) == ({"ids": [1, 2]}, {"ids": "strs"})
    assert norm({"n_real": 3}) == ({"n": 3}, {"n": "real"})
    assert norm({"maybe_bool": None}) == ({"maybe": None}, {"maybe": "bool"})


def test_declared_type_is_not_written_for_an_object_value() -> None:
    assert norm({"x_int": {"a": 1}}) == ({"x": {"a": 1}}, {"x.a": "int"})


def test_empty_nested_object_is_kept() -> None:
    assert norm({"empty": {}, "only_bad": {"$": 1}}) == ({"empty": {}, "only_bad": {}}, {})


@pytest.mark.parametrize(
    ("value", "declared"),
    [
        (["a", "b"], None),
        ([True, False], None),
        ([1, 2, 3], "ints"),
        ([1, 2.5, -3], None),
        ([1.5, 2.5], None),
        (["2024-01-02T03:04Z", "2024-05-17T16:30:05+02:00"], "dates"),
        (["2024-01-02T03:04Z", "later"], None),
        ([], None),
    ],
)
def test_arrays_of_one_kind_pass_through(value: list[object], declared: str | None) -> None:
    assert norm({"a": value}) == ({"a": value}, {"a": declared} if declared else {})


@pytest.mark.parametrize(
    "value",
    [
        [{"sku": "B-1", "qty": 1}],
        [[1, 2], [3]],
        [None],
        [1, "a"],
        [True, 1],
        ["a", None],
        [{"x": [1, {"y": None}]}],
    ],
)
def test_other_arrays_become_compact_json_text(value: list[object]) -> None:
    assert norm({"a": value}) == ({"a": orjson.dumps(value).decode()}, {})


def test_mixed_array_text_keeps_unicode_and_is_compact() -> None:
    value = [{"name": "Café ☕", "price": 4}, 1]
    assert norm({"a": value})[0] == {"a": '[{"name":"Café ☕","price":4},1]'}


def test_mixed_array_text_over_8192_bytes_is_dropped() -> None:
    fits = [{"s": "x" * (8192 - len('[{"s":""}]'))}]
    assert len(orjson.dumps(fits)) == 8192
    assert norm({"a": fits})[0] == {"a": orjson.dumps(fits).decode()}
    too_long = [{"s": "x" * (8193 - len('[{"s":""}]'))}]
    assert norm({"a": too_long, "b": 1}) == ({"b": 1}, {"b": "int"})


def test_arrays_of_numbers_with_nan_or_huge_ints_are_dropped() -> None:
    assert norm({"a": [1.0, math.nan], "b": [1, 2**64], "c": [math.inf]}) == ({}, {})


def test_string_elements_are_cut_like_values() -> None:
    assert norm({"a": ["x" * 9000, "y"]})[0] == {"a": ["x" * 8192, "y"]}


def test_dotted_path_over_512_characters_is_dropped() -> None:
    ok = "k" * 512
    too_long = "k" * 513
    assert norm({ok: 1, too_long: 2}) == ({ok: 1}, {ok: "int"})
    parent = "p" * 300
    child_ok = "c" * (512 - 301)
    child_long = "c" * (513 - 301)
    assert norm({parent: {child_ok: "fits", child_long: "dropped"}}) == (
        {parent: {child_ok: "fits"}},
        {},
    )


def test_prefix_counts_in_the_path_limit() -> None:
    name = "n" * (512 - len("group."))
    assert norm({name: 1, name + "x": 2}, prefix="group.") == ({name: 1}, {"group." + name: "int"})


def test_objects_nested_too_deep_are_dropped() -> None:
    deep: dict[str, Any] = {"leaf": 1}
    for _ in range(MAX_DEPTH + 5):
        deep = {"a": deep}
    props, schema = norm(deep)
    depth = 0
    node: Any = props
    while isinstance(node, dict) and "a" in node:
        node = node["a"]
        depth += 1
    assert depth == MAX_DEPTH - 1
    assert node == {}
    assert schema == {}
    orjson.dumps({"requests": [{"body": {"properties": props}}]})


def test_skip_and_extra_keys() -> None:
    props, schema = norm(
        {"id": 1, "keep": 2, "segmentAnonymousId_int": 3},
        skip=frozenset(("id",)),
        extra=(("segmentAnonymousId", "anon"),),
    )
    assert props == {"keep": 2, "segmentAnonymousId": "anon"}
    assert schema == {"keep": "int"}


def test_non_json_values_and_keys() -> None:
    class Text(str):
        pass

    ordered = OrderedDict([("b", 1)])
    source: dict[Any, Any] = {
        1: "int key dropped",
        "tuple": (1, 2),
        "text": Text("x"),
        "ordered": ordered,
        "bytes": b"dropped",
        "set": {1},
    }
    props, schema = norm(source)
    assert props == {"tuple": [1, 2], "text": "x", "ordered": {"b": 1}}
    assert type(props["text"]) is str
    assert schema == {"tuple": "ints", "ordered.b": "int"}


def test_input_is_not_modified() -> None:
    source = {"a_int": [1], "b": {"c d": "x" * 9000}}
    snapshot = orjson.dumps(source)
    norm(source)
    assert orjson.dumps(source) == snapshot
