"""The `events` rules (policy-spec.md): include, exclude, then sample by a stable per-user hash;
applied by the transform to track/page/screen only, so `transform` shows the skips."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import pytest

from consumer.policy import EXCLUDED, NOT_INCLUDED, SAMPLE, SAMPLED_OUT, EventsRules, sample_key
from consumer.policy.events import CACHE_SIZE
from consumer.transform import (
    DestinationSettings,
    Invalid,
    Requests,
    Skipped,
    transform,
    transform_lines,
)


def position(pattern: str, key: str) -> float:
    """The spec's hash, written out here independently of the module, as a share of 2**64."""
    digest = hashlib.sha256((pattern + "\x00" + key).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@pytest.mark.parametrize(
    ("include", "exclude", "name", "expected"),
    [
        (("*",), (), "Order Completed", None),
        (("Order *",), (), "Order Completed", None),
        (("Order *",), (), "Viewed Pricing Page", NOT_INCLUDED),
        ((), (), "Order Completed", NOT_INCLUDED),
        (("*",), ("Debug *",), "Debug ping", EXCLUDED),
        (("*",), ("Debug *",), "debug ping", None),  # case-sensitive
        (("order *",), (), "Order Completed", NOT_INCLUDED),
        (("*",), ("*.internal",), "app.v2.internal", EXCLUDED),  # `*` matches dots
        (("Viewed * Page",), (), "Viewed Docs.Intro Page", None),
        (("Order ?ompleted",), (), "Order Completed", None),
        (("Order [CS]*",), (), "Order Shipped", None),
        (("Order",), (), "Order Completed", NOT_INCLUDED),  # the whole name must match
        (("Debug *",), ("Debug *",), "Debug ping", EXCLUDED),  # exclude is checked after include
        (("A", "B*"), (), "Bee", None),
        (("*",), ("A", "B*"), "Bee", EXCLUDED),
    ],
)
def test_include_then_exclude(
    include: tuple[str, ...], exclude: tuple[str, ...], name: str, expected: str | None
) -> None:
    rules = EventsRules(include, exclude)
    assert rules.decide_name(name) == expected
    assert rules.decide(name, "user-1") == expected
    assert rules.decide_name(name) == expected  # and again, from the cache


def test_a_not_included_name_is_not_also_excluded() -> None:
    assert EventsRules(("A*",), ("B*",)).decide("Bee", "k") == NOT_INCLUDED


def test_hash_on_known_vectors() -> None:
    assert hashlib.sha256(b"Order *\x00user-1").digest()[:8].hex() == "cd8b570368c79f1b"
    share = position("Order *", "user-1")
    assert share == pytest.approx(0.8029074080775715)
    below, above = (
        EventsRules(sample=(("Order *", share - 1e-9),)),
        EventsRules(sample=(("Order *", share + 1e-9),)),
    )
    assert below.decide("Order Completed", "user-1") == SAMPLED_OUT
    assert above.decide("Order Completed", "user-1") is None
    # The hash covers the pattern, not the name: another name under that pattern agrees.
    assert above.decide("Order Shipped", "user-1") is None
    assert below.decide("Order Shipped", "user-1") == SAMPLED_OUT


def test_hash_uses_the_deciding_pattern() -> None:
    share = position("*", "anon-7")
    assert share == pytest.approx(0.6178561239993626)
    assert EventsRules(sample=(("*", share + 1e-9),)).decide("Order Completed", "anon-7") is None
    assert EventsRules(sample=(("*", share - 1e-9),)).decide("X", "anon-7") == SAMPLED_OUT


def test_first_matching_sample_pattern_in_file_order_wins() -> None:
    rules = EventsRules(sample=(("Order *", 0.0), ("*", 1.0)))
    assert rules.decide("Order Completed", "u") == SAMPLED_OUT
    assert rules.decide("Signed Up", "u") is None
    flipped = EventsRules(sample=(("*", 1.0), ("Order *", 0.0)))
    assert flipped.decide("Order Completed", "u") is None


def test_decide_name_answers_what_the_name_alone_decides() -> None:
    rules = EventsRules(("*",), ("Debug *",), (("Never *", 0.0), ("Always *", 1), ("Some *", 0.5)))
    assert rules.decide_name("Debug x") == EXCLUDED
    assert rules.decide_name("Never x") == SAMPLED_OUT
    assert rules.decide_name("Always x") is None
    assert rules.decide_name("Some x") == SAMPLE
    assert rules.decide_name("Other") is None
    keys = [f"user-{i}" for i in range(200)]
    assert {rules.decide("Never x", k) for k in keys} == {SAMPLED_OUT}
    assert {rules.decide("Always x", k) for k in keys} == {None}
    assert {rules.decide("Some x", k) for k in keys} == {None, SAMPLED_OUT}


def test_one_user_is_all_in_or_all_out_for_a_pattern() -> None:
    rules = EventsRules(sample=(("Viewed *", 0.5),))
    names = ["Viewed Home Page", "Viewed Pricing Page", "Viewed Cart Screen"]
    seen = set()
    for i in range(300):
        decisions = {rules.decide(name, f"user-{i}") for name in names}
        assert len(decisions) == 1
        seen |= decisions
        # every member (a fresh object) and every later call agree
        assert EventsRules(sample=(("Viewed *", 0.5),)).decide(names[0], f"user-{i}") in decisions
    assert seen == {None, SAMPLED_OUT}


def test_empirical_rate_over_ten_thousand_users() -> None:
    rules = EventsRules(sample=(("Order *", 0.1),))
    kept = sum(rules.decide("Order Completed", f"user-{i}") is None for i in range(10_000))
    # binomial(10000, 0.1): mean 1000, sd 30; the fixed keys make this exact and repeatable
    assert 850 <= kept <= 1150
    expected = sum(position("Order *", f"user-{i}") < 0.1 for i in range(10_000))
    assert kept == expected


def test_sample_key_prefers_uid_then_anonymous_id_then_message_id() -> None:
    assert sample_key("u", "a", "m") == "u"
    assert sample_key(None, "a", "m") == "a"
    assert sample_key(None, None, "m") == "m"
    assert sample_key(None, None, None) == ""


def test_the_name_cache_is_bounded() -> None:
    rules = EventsRules(("*",), ("x*",))
    for i in range(CACHE_SIZE * 2 + 5):
        assert rules.decide_name(f"x{i}") == EXCLUDED
    assert len(rules._verdicts) <= CACHE_SIZE


def test_a_lone_surrogate_key_does_not_crash() -> None:
    assert EventsRules(sample=(("*", 0.5),)).decide("E", "\ud800") in (None, SAMPLED_OUT)


# The transform applies them, on the request's name and uid.


def settings(**events: Any) -> DestinationSettings:
    return DestinationSettings(track_all_pages=True, track_named_pages=True, events=events)


def outcome_name(outcome: object) -> str:
    assert isinstance(outcome, Requests), outcome
    body = outcome.requests[0].body
    assert body is not None
    return str(body["name"])


def test_transform_skips_by_the_fullstory_name_after_the_page_rules() -> None:
    rules = settings(exclude=["Viewed * Page"])
    named = {"type": "page", "userId": "u", "name": "Pricing", "messageId": "m"}
    assert transform(named, rules) == Skipped(EXCLUDED)
    unnamed = {"type": "page", "userId": "u", "messageId": "m"}
    assert outcome_name(transform(unnamed, rules)) == "Loaded a Page"
    screen = {"type": "screen", "userId": "u", "name": "Home", "messageId": "m"}
    assert outcome_name(transform(screen, rules)) == "Viewed Home Screen"
    only = settings(include=["Order *"])
    assert transform({"type": "track", "event": "Signed Up", "userId": "u"}, only) == Skipped(
        NOT_INCLUDED
    )
    order = {"type": "track", "event": "Order Completed", "userId": "u"}
    assert outcome_name(transform(order, only)) == "Order Completed"


def test_users_and_deletes_are_never_affected() -> None:
    nothing = DestinationSettings(track_groups=True, events={"include": [], "sample": {"*": 0}})
    for event in (
        {"type": "identify", "userId": "u", "traits": {"name": "Order *"}},
        {"type": "group", "userId": "u", "groupId": "g"},
        {"type": "delete", "userId": "u"},
    ):
        assert isinstance(transform(event, nothing), Requests), event
    assert transform({"type": "track", "event": "E", "userId": "u"}, nothing) == Skipped(
        NOT_INCLUDED
    )


def test_earlier_rules_still_come_first() -> None:
    excluded = settings(exclude=["*"])
    assert transform({"type": "track", "event": "E"}, excluded) == Invalid("missing_identity")
    assert transform({"type": "track", "userId": "u"}, excluded) == Invalid("missing_event_name")
    off = {"type": "track", "event": "E", "userId": "u", "integrations": {"FullStory": False}}
    assert transform(off, excluded) == Skipped("integrations_disabled")


@pytest.mark.parametrize(
    ("event", "key"),
    [
        ({"userId": "u-9", "anonymousId": "a-9", "messageId": "m-9"}, "u-9"),
        ({"anonymousId": "a-9", "messageId": "m-9"}, "a-9"),  # no user.uid in the request
        ({"userId": 42, "messageId": "m-9"}, "42"),
    ],
)
def test_transform_samples_on_the_request_uid_else_anonymous_id(
    event: dict[str, Any], key: str
) -> None:
    share = position("*", key)
    track = {"type": "track", "event": "E", **event}
    assert transform(track, settings(sample={"*": share - 1e-9})) == Skipped(SAMPLED_OUT)
    assert isinstance(transform(track, settings(sample={"*": share + 1e-9})), Requests)


def test_anonymous_id_becomes_the_uid_under_anonymous_identify_uid() -> None:
    share = position("*", "a-9")
    track = {"type": "track", "event": "E", "anonymousId": "a-9", "messageId": "m-9"}
    rules = DestinationSettings(anonymous_identify="uid", events={"sample": {"*": share - 1e-9}})
    assert transform(track, rules) == Skipped(SAMPLED_OUT)


def test_transform_command_shows_the_skip_reasons() -> None:
    rules = settings(include=["*"], exclude=["Debug *"], sample={"Never *": 0})
    lines = [
        b'{"type":"track","event":"Debug ping","userId":"u","messageId":"m1"}',
        b'{"type":"track","event":"Never sent","userId":"u","messageId":"m2"}',
        b'{"type":"track","event":"Order","userId":"u","messageId":"m3"}',
    ]
    out = [orjson.loads(line) for line in transform_lines(lines, rules)]
    assert out[0] == {"messageId": "m1", "skipped": "event_excluded"}
    assert out[1] == {"messageId": "m2", "skipped": "sampled_out"}
    assert out[2]["requests"][0]["body"]["name"] == "Order"
    only = settings(include=["Order"])
    assert orjson.loads(next(transform_lines(lines[:1], only))) == {
        "messageId": "m1",
        "skipped": "event_not_included",
    }


def test_rate_is_the_first_matching_sample_patterns() -> None:
    rules = EventsRules(sample=[("Viewed * Page", 0.1), ("Viewed *", 0.5), ("Zero", 0)])
    assert rules.rate("Viewed Pricing Page") == 0.1
    assert rules.rate("Viewed Home Screen") == 0.5
    assert rules.rate("Zero") == 0.0
    assert rules.rate("Order Completed") == 1.0  # no pattern: every key kept
