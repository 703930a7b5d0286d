"""The transform, rule by rule (mapping-spec.md), with expected request bodies written out."""

from __future__ import annotations

from typing import Any

import pytest

from consumer.transform import (
    DestinationSettings,
    Invalid,
    Outcome,
    Request,
    Requests,
    Skipped,
    transform,
)

DEFAULT = DestinationSettings()
TS = "2024-01-02T03:04:05.678Z"


def one(outcome: Outcome) -> Request:
    assert isinstance(outcome, Requests), outcome
    assert len(outcome.requests) == 1
    return outcome.requests[0]


def body_of(event: dict[str, Any], settings: DestinationSettings = DEFAULT) -> Any:
    return one(transform(event, settings)).body


def track(**fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "track",
        "messageId": "m-1",
        "event": "Clicked",
        "userId": "u-1",
        "timestamp": TS,
    }
    event.update(fields)
    return {key: value for key, value in event.items() if value is not ...}


def identify(**fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "identify", "messageId": "m-1", "userId": "u-1"}
    event.update(fields)
    return {key: value for key, value in event.items() if value is not ...}


def page(kind: str = "page", **fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"type": kind, "messageId": "m-1", "userId": "u-1", "timestamp": TS}
    event.update(fields)
    return {key: value for key, value in event.items() if value is not ...}


# --- 1. event shape --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "event",
    [
        None,
        [],
        "track",
        5,
        {},
        {"type": None, "userId": "u"},
        {"type": "Track", "userId": "u", "event": "x"},
        {"type": "capture", "userId": "u"},
        {"type": ["track"], "userId": "u"},
        {"type": {"t": 1}, "userId": "u"},
        {"event": "x", "userId": "u"},
    ],
)
def test_not_an_event_is_invalid(event: object) -> None:
    assert transform(event, DEFAULT) == Invalid("invalid_event")


def test_shape_is_checked_before_integrations_and_identity() -> None:
    event = {"type": "nope", "integrations": {"FullStory": False}}
    assert transform(event, DEFAULT) == Invalid("invalid_event")


# --- 2. integrations filter -------------------------------------------------------------------

NAMES = [
    "FullStory",
    "Fullstory",
    "FullStory (Actions)",
    "Fullstory (Actions)",
    "Fullstory Cloud Mode (Actions)",
    "fullstory",
    "FULLSTORY (ACTIONS)",
    "fullstory cloud mode (actions)",
]


@pytest.mark.parametrize("name", NAMES)
def test_integrations_false_for_any_name_variant_skips(name: str) -> None:
    assert transform(track(integrations={name: False}), DEFAULT) == Skipped("integrations_disabled")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("value", [True, {"option": 1}, None, 0, "", "false"])
def test_integrations_other_values_send_even_with_all_false(name: str, value: object) -> None:
    outcome = transform(track(integrations={"All": False, name: value}), DEFAULT)
    assert isinstance(outcome, Requests)


@pytest.mark.parametrize("all_key", ["All", "all", "ALL"])
def test_all_false_without_our_name_skips(all_key: str) -> None:
    outcome = transform(track(integrations={all_key: False, "Amplitude": True}), DEFAULT)
    assert outcome == Skipped("integrations_disabled")


@pytest.mark.parametrize(
    "integrations",
    [
        {},
        {"All": True},
        {"All": None},
        {"Amplitude": False},
        {"Full Story": False},
        {"FullStory Classic": False},
        None,
        "FullStory",
        ["FullStory"],
        {1: False},
    ],
)
def test_integrations_that_do_not_disable(integrations: object) -> None:
    assert isinstance(transform(track(integrations=integrations), DEFAULT), Requests)


def test_several_names_any_false_skips() -> None:
    event = track(integrations={"FullStory": True, "Fullstory (Actions)": False})
    assert transform(event, DEFAULT) == Skipped("integrations_disabled")


def test_integrations_filter_comes_before_identity_and_type_rules() -> None:
    no_identity = {"type": "track", "event": "x", "integrations": {"FullStory": False}}
    assert transform(no_identity, DEFAULT) == Skipped("integrations_disabled")
    alias = {"type": "alias", "integrations": {"All": False}}
    assert transform(alias, DEFAULT) == Skipped("integrations_disabled")


# --- 3. identity ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["identify", "track", "page", "screen"])
@pytest.mark.parametrize(
    "ids",
    [
        {},
        {"userId": None, "anonymousId": None},
        {"userId": "", "anonymousId": ""},
        {"userId": True},
        {"userId": {"id": 1}, "anonymousId": []},
        {"userId": float("nan")},
    ],
)
def test_missing_identity(kind: str, ids: dict[str, Any]) -> None:
    event = {"type": kind, "event": "x", "name": "n", **ids}
    assert transform(event, DestinationSettings(track_all_pages=True)) == Invalid(
        "missing_identity"
    )


@pytest.mark.parametrize(
    ("user_id", "uid"),
    [
        (1, "1"),
        (0, "0"),
        (-7, "-7"),
        (12345678901234567890, "12345678901234567890"),
        (42.0, "42"),
        (1.5, "1.5"),
        ("  spaced ", "  spaced "),
    ],
)
def test_user_id_as_string(user_id: object, uid: str) -> None:
    assert body_of(track(userId=user_id))["user"] == {"uid": uid}


def test_uid_of_256_characters_is_sent_and_257_is_invalid() -> None:
    assert body_of(track(userId="u" * 256))["user"] == {"uid": "u" * 256}
    assert transform(track(userId="u" * 257), DEFAULT) == Invalid("invalid_uid")
    assert transform(identify(userId="é" * 257), DEFAULT) == Invalid("invalid_uid")
    assert transform(page(userId="u" * 257), DestinationSettings(track_all_pages=True)) == (
        Invalid("invalid_uid")
    )


def test_long_anonymous_id_matters_only_when_it_would_be_the_uid() -> None:
    long_anon = "a" * 300
    event = track(userId=..., anonymousId=long_anon)
    assert "user" not in body_of(event)
    assert transform(event, DestinationSettings(anonymous_identify="uid")) == Invalid("invalid_uid")
    with_user = track(anonymousId=long_anon)
    assert body_of(with_user, DestinationSettings(anonymous_identify="uid"))["user"] == {
        "uid": "u-1"
    }


def test_identity_is_checked_before_the_type_rule() -> None:
    assert transform({"type": "track"}, DEFAULT) == Invalid("missing_identity")
    off = DestinationSettings(track_pages_with_events=False)
    assert transform({"type": "page"}, off) == Invalid("missing_identity")
    assert transform({"type": "identify"}, DestinationSettings(anonymous_identify="skip")) == (
        Invalid("missing_identity")
    )


# --- identify ---------------------------------------------------------------------------------


def test_seed_identify_with_plan_and_logins() -> None:
    request = one(
        transform(identify(userId="userId123", traits={"plan": "premium", "logins": 5}), DEFAULT)
    )
    assert (request.method, request.path) == ("POST", "/v2/users")
    assert request.body == {
        "uid": "userId123",
        "properties": {"plan": "premium", "logins": 5},
        "schema": {"properties": {"logins": "int"}},
    }


def test_seed_identify_with_email_and_display_name() -> None:
    event = identify(
        userId="userId123", traits={"email": "john.doe@example.com", "displayName": "John Doe"}
    )
    assert body_of(event) == {
        "uid": "userId123",
        "display_name": "John Doe",
        "email": "john.doe@example.com",
        "properties": {},
    }


def test_identify_uses_context_traits_when_traits_are_empty_or_missing() -> None:
    context = {"traits": {"plan": "pro"}}
    expected = {"uid": "u-1", "properties": {"plan": "pro"}}
    assert body_of(identify(traits={}, context=context)) == expected
    assert body_of(identify(traits=None, context=context)) == expected
    assert body_of(identify(traits=["x"], context=context)) == expected
    assert body_of(identify(context=context)) == expected
    assert body_of(identify(traits={"plan": "own"}, context=context)) == {
        "uid": "u-1",
        "properties": {"plan": "own"},
    }
    assert body_of(identify(context={"traits": "x"})) == {"uid": "u-1", "properties": {}}
    assert body_of(identify(context="x")) == {"uid": "u-1", "properties": {}}


def test_identify_anonymous_modes() -> None:
    event = identify(userId=None, anonymousId="anon-1", traits={"plan": "pro"})
    assert body_of(event) == {
        "properties": {"plan": "pro", "segmentAnonymousId": "anon-1"},
    }
    assert transform(event, DestinationSettings(anonymous_identify="skip")) == Skipped(
        "anonymous_identify"
    )
    assert body_of(event, DestinationSettings(anonymous_identify="uid")) == {
        "uid": "anon-1",
        "properties": {"plan": "pro", "segmentAnonymousId": "anon-1"},
    }


@pytest.mark.parametrize("mode", ["send", "skip", "uid"])
def test_identify_with_user_id_is_the_same_in_every_mode(mode: str) -> None:
    event = identify(userId="u-9", anonymousId="anon-1")
    assert body_of(event, DestinationSettings(anonymous_identify=mode)) == {
        "uid": "u-9",
        "properties": {"segmentAnonymousId": "anon-1"},
    }


def test_segment_anonymous_id_replaces_a_trait_of_that_name() -> None:
    event = identify(anonymousId=7, traits={"segmentAnonymousId_int": 1, "a": 1})
    assert body_of(event) == {
        "uid": "u-1",
        "properties": {"a": 1, "segmentAnonymousId": "7"},
        "schema": {"properties": {"a": "int"}},
    }


@pytest.mark.parametrize(
    ("traits", "display_name", "properties"),
    [
        ({"displayName": "Dee", "name": "Nam"}, "Dee", {"name": "Nam"}),
        ({"displayName": "  Dee  ", "name": "Nam"}, "Dee", {"name": "Nam"}),
        ({"displayName": "   ", "name": " Nam "}, "Nam", {}),
        ({"displayName": 5, "name": "Nam"}, "Nam", {}),
        (
            {"name": "Nam", "firstName": "F", "lastName": "L"},
            "Nam",
            {"firstName": "F", "lastName": "L"},
        ),
        (
            {"name": "", "firstName": " F ", "lastName": "L"},
            "F L",
            {"name": "", "firstName": " F ", "lastName": "L"},
        ),
        ({"firstName": "F", "lastName": " "}, None, {"firstName": "F", "lastName": " "}),
        ({"firstName": "F"}, None, {"firstName": "F"}),
        ({"firstName": "F", "lastName": 3}, None, {"firstName": "F", "lastName": 3}),
        ({"name": ["x"]}, None, {"name": ["x"]}),
        ({"displayName": "d" * 300}, "d" * 256, {}),
        ({"name": "n" * 300}, "n" * 256, {}),
        (
            {"firstName": "f" * 200, "lastName": "l" * 200},
            ("f" * 200 + " " + "l" * 55),
            {"firstName": "f" * 200, "lastName": "l" * 200},
        ),
    ],
)
def test_display_name_precedence(
    traits: dict[str, Any], display_name: str | None, properties: dict[str, Any]
) -> None:
    body = body_of(identify(traits=traits))
    assert body.get("display_name") == display_name
    assert body["properties"] == properties


def test_email_rules() -> None:
    assert body_of(identify(traits={"email": "a@b.c"})) == {
        "uid": "u-1",
        "email": "a@b.c",
        "properties": {},
    }
    exact = "e" * 124 + "@b.c"
    assert body_of(identify(traits={"email": exact}))["email"] == exact
    too_long = "e" * 125 + "@b.c"
    assert body_of(identify(traits={"email": too_long})) == {
        "uid": "u-1",
        "properties": {"email": too_long},
    }
    assert body_of(identify(traits={"email": ""})) == {"uid": "u-1", "properties": {"email": ""}}
    assert body_of(identify(traits={"email": 5})) == {
        "uid": "u-1",
        "properties": {"email": 5},
        "schema": {"properties": {"email": "int"}},
    }


def test_identify_properties_drop_id_email_display_name() -> None:
    traits = {
        "id": "u-1",
        "email": "a@b.c",
        "displayName": "Dee",
        "name": "Nam",
        "firstName": "F",
        "lastName": "L",
        "plan_str": "pro",
        "created_at": "2024-01-02T03:04:05Z",
        "address": {"zip_int": "8001"},
    }
    assert body_of(identify(traits=traits, anonymousId="anon")) == {
        "uid": "u-1",
        "display_name": "Dee",
        "email": "a@b.c",
        "properties": {
            "name": "Nam",
            "firstName": "F",
            "lastName": "L",
            "plan": "pro",
            "created_at": "2024-01-02T03:04:05Z",
            "address": {"zip": "8001"},
            "segmentAnonymousId": "anon",
        },
        "schema": {"properties": {"plan": "str", "created_at": "date", "address.zip": "int"}},
    }


def test_identify_display_name_that_is_not_a_string_is_still_dropped() -> None:
    assert body_of(identify(traits={"displayName": {"a": 1}})) == {"uid": "u-1", "properties": {}}


# --- track ------------------------------------------------------------------------------------


def test_seed_track_product_purchased() -> None:
    event = {
        "type": "track",
        "messageId": "m-1",
        "userId": "userId123",
        "event": "Product Purchased",
        "timestamp": "2026-11-28T23:45:22.327+00:00",
        "properties": {
            "order_ID": "2969302398",
            "category": "boots",
            "product_name": "yellow_cowboy_boots",
            "price": 99.95,
            "currency": "EUR",
        },
    }
    request = one(transform(event, DEFAULT))
    assert (request.method, request.path, request.body) == (
        "POST",
        "/v2/events",
        {
            "name": "Product Purchased",
            "properties": {
                "order_ID": "2969302398",
                "category": "boots",
                "product_name": "yellow_cowboy_boots",
                "price": 99.95,
                "currency": "EUR",
            },
            "timestamp": "2026-11-28T23:45:22.327Z",
            "user": {"uid": "userId123"},
        },
    )


def test_seed_track_with_typed_suffixes() -> None:
    event = track(
        event="Product Purchased",
        properties={"order_id_str": 2969302398, "price_real": 99, "qty_int": 2, "tags_strs": ["a"]},
    )
    assert body_of(event) == {
        "name": "Product Purchased",
        "properties": {"order_id": 2969302398, "price": 99, "qty": 2, "tags": ["a"]},
        "timestamp": TS,
        "user": {"uid": "u-1"},
        "schema": {
            "properties": {"order_id": "str", "price": "real", "qty": "int", "tags": "strs"}
        },
    }


@pytest.mark.parametrize("name", [None, "", 5, ["x"], {"a": 1}, True])
def test_missing_event_name(name: object) -> None:
    event = track(event=name)
    assert transform(event, DEFAULT) == Invalid("missing_event_name")
    assert transform(track(event=...), DEFAULT) == Invalid("missing_event_name")


def test_track_minimal_body() -> None:
    event = {"type": "track", "event": "E", "anonymousId": "a"}
    assert body_of(event) == {"name": "E", "properties": {}}


@pytest.mark.parametrize("properties", [None, "x", [1], 3])
def test_track_properties_not_an_object(properties: object) -> None:
    assert body_of(track(properties=properties))["properties"] == {}


def test_track_user_rules_per_anonymous_identify_mode() -> None:
    anon_only = track(userId=..., anonymousId="anon-1")
    assert "user" not in body_of(anon_only)
    assert "user" not in body_of(anon_only, DestinationSettings(anonymous_identify="skip"))
    assert body_of(anon_only, DestinationSettings(anonymous_identify="uid"))["user"] == {
        "uid": "anon-1"
    }
    both = track(anonymousId="anon-1")
    for mode in ("send", "skip", "uid"):
        assert body_of(both, DestinationSettings(anonymous_identify=mode))["user"] == {"uid": "u-1"}


def test_session_use_most_recent_only_with_a_user() -> None:
    recent = DestinationSettings(use_recent_session=True)
    assert body_of(track(), recent) == {
        "name": "Clicked",
        "properties": {},
        "timestamp": TS,
        "user": {"uid": "u-1"},
        "session": {"use_most_recent": True},
    }
    anon_only = track(userId=..., anonymousId="anon-1")
    assert "session" not in body_of(anon_only, recent)
    assert body_of(
        anon_only, DestinationSettings(use_recent_session=True, anonymous_identify="uid")
    )["session"] == {"use_most_recent": True}
    assert "session" not in body_of(track())


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"timestamp": "2024-01-02T03:04:05Z"}, "2024-01-02T03:04:05.000Z"),
        ({"timestamp": "2024-01-02T03:04:05.1Z"}, "2024-01-02T03:04:05.100Z"),
        ({"timestamp": "2024-01-02T03:04:05.123999Z"}, "2024-01-02T03:04:05.123Z"),
        ({"timestamp": "2024-01-02T03:04:05.999999999Z"}, "2024-01-02T03:04:05.999Z"),
        ({"timestamp": "2024-01-02T03:04:05.678+02:00"}, "2024-01-02T01:04:05.678Z"),
        ({"timestamp": "2024-01-02T00:30:00-01:30"}, "2024-01-02T02:00:00.000Z"),
        ({"timestamp": "2024-01-01T00:30:00+01:00"}, "2023-12-31T23:30:00.000Z"),
        ({"timestamp": "2024-03-01T00:30:00.5+0100"}, "2024-02-29T23:30:00.500Z"),
        ({"timestamp": "2024-01-02T03:04:05+05"}, "2024-01-01T22:04:05.000Z"),
        ({"timestamp": "2024-01-02 03:04:05"}, "2024-01-02T03:04:05.000Z"),
        ({"timestamp": "2024-01-02T03:04"}, "2024-01-02T03:04:00.000Z"),
        ({"timestamp": "2024-01-02"}, "2024-01-02T00:00:00.000Z"),
        ({"timestamp": 1700000000123}, "2023-11-14T22:13:20.123Z"),
        ({"timestamp": 0}, "1970-01-01T00:00:00.000Z"),
        ({"timestamp": -1}, "1969-12-31T23:59:59.999Z"),
        (
            {"timestamp": "garbage", "originalTimestamp": "2024-05-06T07:08:09Z"},
            "2024-05-06T07:08:09.000Z",
        ),
        (
            {"timestamp": None, "originalTimestamp": None, "receivedAt": "2024-05-06T07:08:09.5Z"},
            "2024-05-06T07:08:09.500Z",
        ),
        (
            {
                "timestamp": "2024-01-02T03:04:05Z",
                "originalTimestamp": "2020-01-01T00:00:00Z",
                "receivedAt": "2021-01-01T00:00:00Z",
            },
            "2024-01-02T03:04:05.000Z",
        ),
        (
            {
                "timestamp": ...,
                "originalTimestamp": "2020-01-01T00:00:00Z",
                "receivedAt": "2021-01-01T00:00:00Z",
            },
            "2020-01-01T00:00:00.000Z",
        ),
        (
            {"timestamp": True, "originalTimestamp": 1.5e12, "receivedAt": 86400000},
            "1970-01-02T00:00:00.000Z",
        ),
        ({"timestamp": "2023-02-29T00:00:00Z", "receivedAt": "1700000000000"}, None),
        # Segment's own form (its fast path): kept as is when it names a real instant.
        ({"timestamp": "2024-05-31T23:59:59.999Z"}, "2024-05-31T23:59:59.999Z"),
        ({"timestamp": "2024-02-29T00:00:00.000Z"}, "2024-02-29T00:00:00.000Z"),
        ({"timestamp": "2024-01-02t03:04:05.678z"}, "2024-01-02T03:04:05.678Z"),
        ({"timestamp": "2023-02-29T00:00:00.000Z"}, None),
        ({"timestamp": "2024-06-31T00:00:00.000Z"}, None),
        ({"timestamp": "0000-01-01T00:00:00.000Z"}, None),
        ({"timestamp": "2024-01-02T24:00:00.000Z"}, None),
        ({"timestamp": "2024-01-02T03:60:00.000Z"}, None),
        ({"timestamp": "2024-01-02T25:00:00Z"}, None),
        ({"timestamp": "2024-01-02T03:04:05+24:00"}, None),
        ({"timestamp": "0001-01-01T00:00:00+01:00"}, None),
        ({"timestamp": 10**20}, None),
        ({"timestamp": ...}, None),
        ({"timestamp": {"at": 1}}, None),
    ],
)
def test_timestamp_precedence_and_formats(fields: dict[str, Any], expected: str | None) -> None:
    body = body_of(track(**fields))
    assert body.get("timestamp") == expected


FULL_CONTEXT = {
    "ip": "203.0.113.7",
    "userAgent": "Mozilla/5.0",
    "locale": "fr-FR",
    "page": {"url": "https://x.io/a", "referrer": "https://r.io/", "path": "/a", "title": "A"},
    "app": {"name": "Shop", "version": "2.1.0", "build": "42"},
    "device": {"manufacturer": "Apple", "model": "iPhone15,2", "type": "ios"},
    "screen": {"width": 390, "height": 844, "density": 3},
    "location": {
        "city": "Paris",
        "region": "IDF",
        "country": "France",
        "latitude": 48.85,
        "longitude": 2.35,
    },
    "library": {"name": "analytics.js", "version": "1"},
}


def test_context_mapping_full() -> None:
    assert body_of(track(context=FULL_CONTEXT))["context"] == {
        "browser": {
            "url": "https://x.io/a",
            "user_agent": "Mozilla/5.0",
            "initial_referrer": "https://r.io/",
        },
        "mobile": {"app_name": "Shop", "app_version": "2.1.0"},
        "device": {
            "manufacturer": "Apple",
            "model": "iPhone15,2",
            "screen_width": 390,
            "screen_height": 844,
        },
        "location": {
            "ip_address": "203.0.113.7",
            "city": "Paris",
            "region": "IDF",
            "country": "FR",
            "latitude": 48.85,
            "longitude": 2.35,
        },
    }


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        ({"userAgent": "UA"}, {"browser": {"user_agent": "UA"}}),
        ({"page": {"referrer": "r"}}, {"browser": {"initial_referrer": "r"}}),
        ({"app": {"version": 3}}, {"mobile": {"app_version": "3"}}),
        ({"screen": {"width": 390.0}}, {"device": {"screen_width": 390}}),
        ({"ip": "::1"}, {"location": {"ip_address": "::1"}}),
        (
            {"location": {"latitude": -90, "longitude": 180}},
            {"location": {"latitude": -90, "longitude": 180}},
        ),
        (
            {"location": {"country": "FR"}, "device": {"model": "M"}},
            {"device": {"model": "M"}, "location": {"country": "FR"}},
        ),
    ],
)
def test_context_parts_present_only_with_a_field(
    context: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert body_of(track(context=context))["context"] == expected


@pytest.mark.parametrize(
    "context",
    [
        None,
        "ctx",
        [],
        {},
        {"library": {"name": "x"}, "locale": "fr"},
        {"page": "https://x.io", "app": [], "device": None, "screen": 5, "location": "Paris"},
        {"page": {"url": "", "referrer": None}, "userAgent": 5, "ip": ["1.2.3.4"]},
        {"screen": {"width": -1, "height": 1.5}, "app": {"version": True, "name": {"x": 1}}},
        {"screen": {"width": 2**31, "height": float("nan")}},
        {"location": {"latitude": 91, "longitude": float("inf"), "city": 5}},
        {"location": {"latitude": True, "longitude": "2.35"}},
    ],
)
def test_context_without_usable_fields_is_left_out(context: object) -> None:
    assert "context" not in body_of(track(context=context))


def test_send_context_off() -> None:
    assert "context" not in body_of(
        track(context=FULL_CONTEXT), DestinationSettings(send_context=False)
    )


def test_context_strings_are_cut_to_8192_bytes() -> None:
    body = body_of(track(context={"page": {"url": "u" * 9000}}))
    assert body["context"] == {"browser": {"url": "u" * 8192}}


def test_track_full_body_order_of_fields() -> None:
    settings = DestinationSettings(use_recent_session=True)
    body = body_of(track(properties={"n": 1}, context={"ip": "1.2.3.4"}, anonymousId="a"), settings)
    assert list(body) == ["name", "properties", "timestamp", "user", "session", "context", "schema"]
    assert body == {
        "name": "Clicked",
        "properties": {"n": 1},
        "timestamp": TS,
        "user": {"uid": "u-1"},
        "session": {"use_most_recent": True},
        "context": {"location": {"ip_address": "1.2.3.4"}},
        "schema": {"properties": {"n": "int"}},
    }


# --- page and screen --------------------------------------------------------------------------

ALL_FLAGS = ("track_named_pages", "track_categorized_pages", "track_all_pages")


def flags(*names: str, **extra: Any) -> DestinationSettings:
    values: dict[str, Any] = {name: True for name in names}
    return DestinationSettings(**values, **extra)


PAGE_CASES = [
    # (flags, name, category, expected event name, expected view name or None)
    ((), "Home", "Docs", None, None),
    (("track_named_pages",), "Home", "Docs", "Viewed Docs Home {w}", "Docs Home"),
    (("track_named_pages",), "Home", None, "Viewed Home {w}", "Home"),
    (("track_named_pages",), None, "Docs", None, None),
    (("track_named_pages",), None, None, None, None),
    (("track_categorized_pages",), "Home", "Docs", "Viewed Docs {w}", "Docs"),
    (("track_categorized_pages",), None, "Docs", "Viewed Docs {w}", "Docs"),
    (("track_categorized_pages",), "Home", None, None, None),
    (("track_all_pages",), "Home", "Docs", "Loaded a {w}", None),
    (("track_all_pages",), None, None, "Loaded a {w}", None),
    (
        ("track_named_pages", "track_categorized_pages"),
        "Home",
        "Docs",
        "Viewed Docs Home {w}",
        "Docs Home",
    ),
    (("track_named_pages", "track_categorized_pages"), None, "Docs", "Viewed Docs {w}", "Docs"),
    (("track_named_pages", "track_all_pages"), None, "Docs", "Loaded a {w}", None),
    (("track_named_pages", "track_all_pages"), "Home", None, "Viewed Home {w}", "Home"),
    (("track_categorized_pages", "track_all_pages"), "Home", None, "Loaded a {w}", None),
    (("track_categorized_pages", "track_all_pages"), "Home", "Docs", "Viewed Docs {w}", "Docs"),
    (ALL_FLAGS, "Home", "Docs", "Viewed Docs Home {w}", "Docs Home"),
    (ALL_FLAGS, None, "Docs", "Viewed Docs {w}", "Docs"),
    (ALL_FLAGS, None, None, "Loaded a {w}", None),
    (ALL_FLAGS, "", "", "Loaded a {w}", None),
    (ALL_FLAGS, 5, ["Docs"], "Loaded a {w}", None),
]


@pytest.mark.parametrize(
    ("kind", "word", "label"), [("page", "Page", "pageName"), ("screen", "Screen", "screenName")]
)
@pytest.mark.parametrize(("on", "name", "category", "event_name", "view_name"), PAGE_CASES)
def test_page_and_screen_rules(
    kind: str,
    word: str,
    label: str,
    on: tuple[str, ...],
    name: object,
    category: object,
    event_name: str | None,
    view_name: str | None,
) -> None:
    event = page(kind, name=name, category=category, properties={"url": "https://x.io/"})
    outcome = transform(event, flags(*on))
    if event_name is None:
        assert outcome == Skipped("page_not_tracked")
        return
    properties: dict[str, Any] = {"url": "https://x.io/"}
    if isinstance(category, str) and category:
        properties["category"] = category
    if isinstance(name, str) and name:
        properties["name"] = name
    if view_name is not None:
        properties[label] = view_name
    request = one(outcome)
    assert (request.method, request.path) == ("POST", "/v2/events")
    assert request.body == {
        "name": event_name.format(w=word),
        "properties": properties,
        "timestamp": TS,
        "user": {"uid": "u-1"},
    }


@pytest.mark.parametrize("kind", ["page", "screen"])
def test_page_events_disabled_is_checked_before_the_rules(kind: str) -> None:
    settings = flags(*ALL_FLAGS, track_pages_with_events=False)
    assert transform(page(kind, name="Home"), settings) == Skipped("page_events_disabled")
    assert transform(page(kind), DestinationSettings(track_pages_with_events=False)) == Skipped(
        "page_events_disabled"
    )


def test_page_like_track_for_user_session_timestamp_context_and_schema() -> None:
    settings = flags("track_named_pages", use_recent_session=True, anonymous_identify="uid")
    event = page(
        name="Home",
        userId=None,
        anonymousId="anon-1",
        properties={"visits_int": "3", "name": "overridden", "pageName": "overridden"},
        context={"page": {"url": "https://x.io/"}},
        timestamp=1700000000123,
    )
    assert body_of(event, settings) == {
        "name": "Viewed Home Page",
        "properties": {"visits": "3", "name": "Home", "pageName": "Home"},
        "timestamp": "2023-11-14T22:13:20.123Z",
        "user": {"uid": "anon-1"},
        "session": {"use_most_recent": True},
        "context": {"browser": {"url": "https://x.io/"}},
        "schema": {"properties": {"visits": "int"}},
    }


def test_page_name_that_looks_like_a_date_is_declared_date() -> None:
    body = body_of(page(name="2024-01-02T03:04Z"), flags("track_named_pages"))
    assert body["properties"] == {"name": "2024-01-02T03:04Z", "pageName": "2024-01-02T03:04Z"}
    assert body["schema"] == {"properties": {"name": "date", "pageName": "date"}}


# --- group ------------------------------------------------------------------------------------

GROUPS = DestinationSettings(track_groups=True)


def test_group_disabled_by_default() -> None:
    event = {"type": "group", "userId": "u-1", "groupId": "g-1"}
    assert transform(event, DEFAULT) == Skipped("group_disabled")
    assert transform({"type": "group"}, DEFAULT) == Skipped("group_disabled")


def test_group_body() -> None:
    event = {
        "type": "group",
        "messageId": "m-1",
        "userId": "u-1",
        "groupId": "acme-inc",
        "traits": {
            "name": "Acme Inc",
            "employees": 120,
            "plan_str": "enterprise",
            "hq": {"zip_int": "1"},
        },
    }
    request = one(transform(event, GROUPS))
    assert (request.method, request.path) == ("POST", "/v2/users")
    assert request.body == {
        "uid": "u-1",
        "properties": {
            "groupId": "acme-inc",
            "group": {
                "name": "Acme Inc",
                "employees": 120,
                "plan": "enterprise",
                "hq": {"zip": "1"},
            },
        },
        "schema": {
            "properties": {"group.employees": "int", "group.plan": "str", "group.hq.zip": "int"}
        },
    }


@pytest.mark.parametrize("traits", [None, {}, "x", {"$": 1}])
def test_group_without_traits_leaves_group_out(traits: object) -> None:
    event = {"type": "group", "userId": 7, "groupId": 42, "traits": traits}
    assert body_of(event, GROUPS) == {"uid": "7", "properties": {"groupId": "42"}}


@pytest.mark.parametrize("group_id", [None, "", {"id": 1}, True, float("inf")])
def test_group_needs_a_group_id(group_id: object) -> None:
    event = {"type": "group", "userId": "u-1", "groupId": group_id}
    assert transform(event, GROUPS) == Invalid("missing_group_id")
    assert transform({"type": "group", "userId": "u-1"}, GROUPS) == Invalid("missing_group_id")


def test_group_needs_a_user_id_even_with_an_anonymous_id() -> None:
    event = {"type": "group", "anonymousId": "a", "groupId": "g"}
    assert transform(event, GROUPS) == Skipped("group_without_user")
    uid_mode = DestinationSettings(track_groups=True, anonymous_identify="uid")
    assert transform(event, uid_mode) == Skipped("group_without_user")
    assert transform({"type": "group", "groupId": "g"}, GROUPS) == Skipped("group_without_user")


def test_group_uid_limit() -> None:
    event = {"type": "group", "userId": "u" * 257, "groupId": "g"}
    assert transform(event, GROUPS) == Invalid("invalid_uid")


def test_group_trait_paths_count_the_group_prefix() -> None:
    fits = "n" * (512 - len("group."))
    event = {"type": "group", "userId": "u", "groupId": "g", "traits": {fits: 1, fits + "x": 2}}
    assert body_of(event, GROUPS) == {
        "uid": "u",
        "properties": {"groupId": "g", "group": {fits: 1}},
        "schema": {"properties": {"group." + fits: "int"}},
    }


# --- alias and delete -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "event",
    [
        {"type": "alias", "userId": "new", "previousId": "old"},
        {"type": "alias"},
    ],
)
def test_alias_is_unsupported(event: dict[str, Any]) -> None:
    assert transform(event, DEFAULT) == Skipped("alias_unsupported")
    assert transform(event, DestinationSettings(anonymous_identify="uid")) == Skipped(
        "alias_unsupported"
    )


@pytest.mark.parametrize(
    ("user_id", "query"),
    [
        ("u-1", "u-1"),
        ("a b&c=d/e?f#g", "a%20b%26c%3Dd%2Fe%3Ff%23g"),
        ("jane+x@example.com", "jane%2Bx%40example.com"),
        ("Ünï~._-", "%C3%9Cn%C3%AF~._-"),
        (42, "42"),
        ("%41", "%2541"),
    ],
)
def test_delete_percent_encodes_the_uid(user_id: object, query: str) -> None:
    event = {"type": "delete", "messageId": "m-1", "userId": user_id}
    request = one(transform(event, DEFAULT))
    assert (request.method, request.path, request.body) == (
        "DELETE",
        f"/v2/users?uid={query}",
        None,
    )


def test_delete_rules() -> None:
    assert transform({"type": "delete", "anonymousId": "a"}, DEFAULT) == Invalid("missing_identity")
    assert transform({"type": "delete", "userId": "u" * 257}, DEFAULT) == Invalid("invalid_uid")
    off = DestinationSettings(process_deletes=False)
    assert transform({"type": "delete", "userId": "u"}, off) == Skipped("deletes_disabled")
    assert transform({"type": "delete"}, off) == Skipped("deletes_disabled")


# --- purity -----------------------------------------------------------------------------------


def test_transform_does_not_modify_the_event() -> None:
    import copy

    event = track(properties={"a_int": [1], "b": {"c": "x" * 9000}}, context=FULL_CONTEXT)
    snapshot = copy.deepcopy(event)
    transform(event, DestinationSettings(use_recent_session=True))
    assert event == snapshot


def test_same_event_same_outcome() -> None:
    event = identify(traits={"email": "a@b.c", "plan": "pro"}, anonymousId="x")
    assert transform(event, DEFAULT) == transform(dict(event), DEFAULT)
