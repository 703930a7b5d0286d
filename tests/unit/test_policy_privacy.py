"""The `privacy` rules (policy-spec.md): settings validation, the detectors, precedence, what the
mapping makes of protected traits, `transform --explain`, and property tests over arbitrary
nested events that search every request the service would send for canary values."""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from itertools import count
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumer.estimate import Tally
from consumer.policy.privacy import has_card, has_email, luhn
from consumer.transform import (
    DestinationSettings,
    Requests,
    SettingsError,
    transform,
    transform_explained,
    transform_lines,
)

KEY = "unit-test-hmac-key"
ENV = "FULLSTORY_CONSUMER_HASH_KEY"


@pytest.fixture(autouse=True)
def _hash_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, KEY)


def _settings(privacy: dict[str, Any], **more: Any) -> DestinationSettings:
    return DestinationSettings.from_mapping(
        {"privacy": privacy, "trackAllPages": True, "track_groups": True, **more}
    )[0]


def _hex(value: object) -> str:
    text = (
        value
        if isinstance(value, str)
        else json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    )
    return hmac.new(KEY.encode(), text.encode(), hashlib.sha256).hexdigest()


def _sent(event: dict[str, Any], config: DestinationSettings) -> str:
    """Every request the service would send for `event`, serialised ("" when none)."""
    outcome = transform(event, config)
    if not isinstance(outcome, Requests):
        return ""
    return orjson.dumps(
        [(r.method, r.path, r.body, r.idempotency_key) for r in outcome.requests]
    ).decode()


# --- settings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("privacy", "message"),
    [
        ({"dorp": ["a"]}, "did you mean 'drop'"),
        ({"drop": "context.ip"}, "must be a list of path patterns"),
        ({"redact": [3]}, "privacy.redact[0] must be a pattern string"),
        ({"detect": {"phone": "drop"}}, "unknown key 'phone' in setting 'privacy.detect'"),
        ({"detect": {"card": "mask"}}, "'privacy.detect.card' must be"),
        ({"allow": {"context": ["a"]}}, "unknown key 'context' in setting 'privacy.allow'"),
        ({"allow": ["plan"]}, "setting 'privacy.allow' must be an object"),
        ({"hash_key_env": ""}, "privacy.hash_key_env"),
        ("drop everything", "setting 'privacy' must be an object"),
    ],
)
def test_bad_privacy_settings_are_refused(privacy: object, message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("[", r"\[").replace("]", r"\]")):
        DestinationSettings.from_mapping({"privacy": privacy})


@pytest.mark.parametrize("privacy", [{"hash": ["traits.email"]}, {"detect": {"email": "hash"}}])
def test_a_hash_without_the_key_is_an_error_naming_the_variable(
    privacy: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV)
    with pytest.raises(SettingsError, match=ENV):
        DestinationSettings.from_mapping({"privacy": privacy})
    monkeypatch.setenv("MY_KEY", "")  # empty is unset
    with pytest.raises(SettingsError, match="MY_KEY"):
        DestinationSettings.from_mapping({"privacy": {**privacy, "hash_key_env": "MY_KEY"}})


def test_the_key_is_in_no_repr() -> None:
    config = _settings({"hash": ["traits.email"]})
    assert KEY not in repr(config) and KEY not in str(config)
    assert KEY not in repr(config.privacy)


def test_no_hash_rule_needs_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV)
    config = _settings({"drop": ["context.ip"], "detect": {"email": "redact"}})
    assert config.privacy is not None


# --- detectors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("4111111111111111", True),
        ("card: 4111 1111 1111 1111.", True),
        ("4111-1111-1111-1111", True),
        ("4111  1111 1111 1111", False),  # a double space is no card
        ("4111111111111112", False),  # fails Luhn
        ("378282246310005", True),  # 15-digit Amex
        ("order 12345", False),
        ("4111 1111 1111 1111 7", True),  # a card followed by another number
        ("41111111111111111111", False),  # 20 digits in one run
    ],
)
def test_card_detection(text: str, found: bool) -> None:
    assert has_card(text) is found


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("a@b.io", True),
        ("write to jo.ann+x@mail.example.com now", True),
        ("a@b", False),
        ("@home", False),
        ("no at sign", False),
    ],
)
def test_email_detection(text: str, found: bool) -> None:
    assert has_email(text) is found


def test_luhn() -> None:
    assert luhn("79927398713") and not luhn("79927398710")


# --- rules and the mapping ------------------------------------------------------------------


def _identify(traits: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"type": "identify", "userId": "u1", "messageId": "m1", "traits": traits, **more}


def test_precedence_drop_over_redact_over_hash_and_the_input_is_unchanged() -> None:
    config = _settings({"drop": ["*.ssn"], "redact": ["*secret*"], "hash": ["properties.*"]})
    event = {
        "type": "track",
        "userId": "u",
        "event": "E",
        "properties": {"ssn": "1", "secret": "2", "plan": "pro", "user": {"ssn": "3", "n": 1}},
    }
    before = json.dumps(event, sort_keys=True)
    outcome, actions = transform_explained(event, config)
    assert json.dumps(event, sort_keys=True) == before
    assert isinstance(outcome, Requests)
    props = outcome.requests[0].body["properties"]  # type: ignore[index]
    assert "ssn" not in props
    assert props["secret"] == "[redacted]"
    assert props["plan"] == _hex("pro")
    assert props["user"] == _hex({"n": 1})  # the drop below applies first, then the hash
    assert ("properties.ssn", "drop", "drop:*.ssn") in actions
    assert ("properties.user.ssn", "drop", "drop:*.ssn") in actions


def test_a_hashed_email_or_redacted_name_is_not_used_for_fullstorys_fields() -> None:
    config = _settings({"hash": ["traits.email"], "redact": ["traits.displayName"]})
    event = _identify({"email": "a@b.io", "displayName": "Ann B", "name": "Ann"})
    outcome = transform(event, config)
    assert isinstance(outcome, Requests)
    body = outcome.requests[0].body
    assert body is not None and "email" not in body
    assert body["display_name"] == "Ann"  # the next candidate
    assert body["properties"]["email"] == _hex("a@b.io")
    assert body["properties"]["displayName"] == "[redacted]"
    assert "name" not in body["properties"]  # used as the display name, as before


def test_a_dropped_email_is_simply_absent_and_context_traits_count_too() -> None:
    config = _settings({"drop": ["context.traits.email"], "detect": {"email": "redact"}})
    event = {
        "type": "identify",
        "userId": "u",
        "context": {"traits": {"email": "a@b.io", "firstName": "A", "lastName": "mail: x@y.org"}},
    }
    body = transform(event, config).requests[0].body  # type: ignore[union-attr]
    assert body is not None
    assert "email" not in body and "email" not in body["properties"]
    assert "display_name" not in body  # lastName was redacted: first + last is not used
    assert body["properties"]["lastName"] == "[redacted]"


def test_traits_email_is_exempt_from_email_detection_only() -> None:
    config = _settings({"detect": {"email": "drop", "card": "drop"}})
    body = transform(_identify({"email": "a@b.io"}), config).requests[0].body  # type: ignore[union-attr]
    assert body is not None and body["email"] == "a@b.io"
    body = transform(_identify({"email": "4111111111111111"}), config).requests[0].body  # type: ignore[union-attr]
    assert body is not None and "email" not in body


def test_identity_fields_are_never_touched() -> None:
    config = _settings({"drop": ["*"], "detect": {"email": "drop"}})
    event = {"type": "track", "userId": "a@b.io", "event": "x@y.org", "properties": {"k": 1}}
    body = transform(event, config).requests[0].body  # type: ignore[union-attr]
    assert body is not None
    assert body["user"]["uid"] == "a@b.io" and body["name"] == "x@y.org"
    assert body["properties"] == {}


def test_allow_keeps_matching_paths_relative_to_the_root() -> None:
    config = _settings({"allow": {"traits": ["plan", "company.name"], "properties": ["sku"]}})
    event = _identify(
        {"plan": "pro", "company": {"name": "Acme", "size": 3}, "email": "a@b.io", "age": 3},
        context={"traits": {"plan": "x", "other": 1}},
    )
    outcome, actions = transform_explained(event, config)
    body = outcome.requests[0].body  # type: ignore[union-attr]
    assert body is not None
    assert body["properties"] == {"plan": "pro", "company": {"name": "Acme"}}
    assert "email" not in body  # not allowed: dropped, so absent
    assert {a.path for a in actions} == {
        "traits.company.size",
        "traits.email",
        "traits.age",
        "context.traits.other",
    }
    assert {a.rule for a in actions} == {"allow.traits"}


def test_explain_lists_actions_without_values() -> None:
    config = _settings({"drop": ["context.ip"], "detect": {"card": "redact"}})
    line = json.dumps(
        {
            "type": "track",
            "userId": "u",
            "event": "E",
            "context": {"ip": "1.2.3.4"},
            "properties": {"c": "4111111111111111"},
        }
    )
    (plain,) = transform_lines([line], config)
    (explained,) = transform_lines(
        [
            line,
        ],
        config,
        explain=True,
    )
    assert "privacy" not in orjson.loads(plain)
    shown = orjson.loads(explained)
    assert shown["privacy"] == [
        {"path": "properties.c", "action": "redact", "rule": "detect.card"},
        {"path": "context.ip", "action": "drop", "rule": "drop:context.ip"},
    ]
    assert b"1.2.3.4" not in explained and b"4111111111111111" not in explained
    (bad,) = transform_lines(["{"], config, explain=True)
    assert orjson.loads(bad) == {"messageId": None, "error": "invalid_json", "privacy": []}


# --- property tests over arbitrary nested events --------------------------------------------

KEYS = st.sampled_from(["a", "b", "ab", "email", "name", "x.y", "pw", "ip"])
TYPES = ["identify", "track", "page", "screen", "group"]


class Canaries:
    """Unique canary strings, and the e-mails and cards, each a fresh value."""

    def __init__(self) -> None:
        self._n = count()

    def plain(self) -> str:
        return f"canary{next(self._n):05d}q"

    def email(self) -> str:
        return f"x canary{next(self._n)}@leak.example.com y"

    def card(self) -> str:
        body = f"4{next(self._n):014d}"
        total = sum(
            (d * 2 - 9 if d * 2 > 9 else d * 2) if i % 2 == 0 else d
            for i, d in enumerate(int(c) for c in reversed(body))
        )
        return f"no. {body}{(10 - total % 10) % 10} end"


@st.composite
def trees(draw: st.DrawFn, canaries: Canaries, depth: int = 0) -> dict[str, Any]:
    """A nested object whose string leaves are all unique canaries (some e-mails, cards)."""
    leaf = st.one_of(
        st.integers(-5, 5),
        st.booleans(),
        st.sampled_from(["plain", "email", "card"]).map(lambda kind: getattr(canaries, kind)()),
    )
    out: dict[str, Any] = {}
    for key in draw(st.lists(KEYS, max_size=4, unique=True)):
        kind = draw(st.integers(0, 4)) if depth < 3 else 0
        if kind == 3:
            out[key] = draw(trees(canaries, depth + 1))
        elif kind == 4:
            out[key] = [draw(leaf), draw(trees(canaries, depth + 1))]
        else:
            out[key] = draw(leaf)
    return out


PATTERNS = st.lists(
    st.sampled_from(
        [
            "traits.a",
            "*.b",
            "properties.*",
            "*pw*",
            "context.ip",
            "*.x.y",
            "context.traits.*",
            "traits.ab.*",
            "*name",
        ]
    ),
    max_size=3,
)


def _leaves(value: object, path: str) -> Iterator[tuple[str, object]]:
    """(path, string leaf) pairs, array elements at the array's path, as the spec's oracle."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _leaves(child, f"{path}.{key}")
        if path:
            yield path, value
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item, path)
        yield path, value
    else:
        yield path, value


def _protected(event: dict[str, Any], patterns: list[str]) -> set[str]:
    """Canary strings under a path some pattern matches (on the path or an ancestor)."""
    out: set[str] = set()
    for root in ("traits", "properties", "context"):
        for path, value in _leaves(event.get(root), root):
            if path != root and any(fnmatch.fnmatchcase(path, p) for p in patterns):
                out.update(s for _, s in _leaves(value, path) if isinstance(s, str))
    return out


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    canaries = Canaries()
    event: dict[str, Any] = {
        "type": draw(st.sampled_from(TYPES)),
        "userId": "user-1",
        "messageId": "msg-1",
        "event": "Thing Done",
        "name": "Home",
        "groupId": "g-1",
    }
    for root in ("traits", "properties"):
        event[root] = draw(trees(canaries))
    context = draw(trees(canaries))
    context["traits"] = draw(trees(canaries))
    context["ip"] = canaries.plain()
    event["context"] = context
    return event


LEAK = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@LEAK
@given(
    event=events(),
    drop=PATTERNS,
    redact=PATTERNS,
    hash_=PATTERNS,
    detect=st.sampled_from(["drop", "redact", "hash"]),
)
def test_nothing_dropped_redacted_or_detected_leaves(
    event: dict[str, Any], drop: list[str], redact: list[str], hash_: list[str], detect: str
) -> None:
    config = _settings(
        {"drop": drop, "redact": redact, "hash": hash_, "detect": {"email": detect, "card": detect}}
    )
    sent = _sent(event, config)
    for canary in _protected(event, drop + redact):
        assert canary not in sent, canary
    for root in ("traits", "properties", "context.traits"):
        value = event.get(root) if "." not in root else event["context"]["traits"]
        for path, leaf in _leaves(value, root):
            if isinstance(leaf, str) and "@leak" in leaf and path != "traits.email":
                assert leaf not in sent and leaf.split()[1] not in sent, path
            if isinstance(leaf, str) and leaf.startswith("no. "):
                assert leaf.split()[1] not in sent, path
    assert KEY not in sent


@LEAK
@given(event=events(), key=KEYS.filter(lambda key: "." not in key))  # the mapping splits dots
def test_hashed_values_are_the_contracts_hmac(event: dict[str, Any], key: str) -> None:
    event["type"] = "track"
    config = _settings({"hash": [f"properties.{key}"]})
    body = transform(event, config).requests[0].body  # type: ignore[union-attr]
    assert body is not None
    if key in event["properties"]:
        assert body["properties"][key] == _hex(event["properties"][key])
    else:
        assert key not in body["properties"]


@LEAK
@given(event=events(), allowed=st.lists(KEYS, max_size=3, unique=True))
def test_an_allow_list_lets_nothing_else_through(event: dict[str, Any], allowed: list[str]) -> None:
    config = _settings({"allow": {"traits": allowed, "properties": allowed}})
    sent = _sent(event, config)
    for root in ("traits", "properties"):
        for key, value in event[root].items():
            if key not in allowed:
                for _, leaf in _leaves(value, key):
                    if isinstance(leaf, str):
                        assert leaf not in sent, (root, key)
    for key, value in event["context"]["traits"].items():
        if key not in allowed and event["type"] == "identify" and not event["traits"]:
            for _, leaf in _leaves(value, key):
                assert not isinstance(leaf, str) or leaf not in sent


def test_the_budget_estimate_applies_privacy_before_counting_properties() -> None:
    tally = Tally(_settings({"allow": {"traits": ["plan"]}}))
    tally.add(_identify({"plan": "pro", "age": 3, "email": "a@b.io"}))
    assert tally.user_properties == {"plan"}


def test_run_refuses_a_hash_rule_without_the_key_in_one_error_line(tmp_path: Path) -> None:
    settings = tmp_path / "settings.json"
    settings.write_bytes(orjson.dumps({"privacy": {"hash": ["traits.email"]}}))
    env = {k: v for k, v in os.environ.items() if k != ENV}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "consumer.cli",
            "run",
            "--bootstrap-servers",
            "127.0.0.1:9",
            "--topic",
            "t",
            "--group-id",
            "g",
            "--api-key",
            "k",
            "--settings",
            str(settings),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and ENV in lines[0], result.stderr
