"""Destination settings: the spec's table, loadable from a Segment export (camelCase) as is.

Choices the spec leaves open:
- Booleans must be JSON booleans; a quoted "true" is an error (it usually hides a typo'd file).
- Text settings are stripped; an empty one counts as unset (Segment exports unset fields as "").
- `anonymous_identify` is matched case-insensitively and stored lowercase.
- Two keys for one setting (`org` and `orgId`) may both be given only with equal values.
- `api_host` must be an http(s) URL; a trailing `/` is removed.

The policy objects `events` and `budget` (policy-spec.md) are parsed here too, into
`EventsSettings` (compiled into `consumer.policy.EventsRules` once) and `BudgetSettings`; absent or
null means off. Unknown keys inside them are errors, since a typo there would change what is sent.
Choices: `cycle` and `when_exhausted` are matched like `anonymous_identify` (trimmed, any letter
case); `events_per_cycle` must be a JSON integer (`5e5` and `500000.0` are refused, like booleans);
`cycle_start` may also be a TOML offset date-time (unquoted); a `budget` without
`events_per_cycle` is an error rather than off (it would otherwise silently do nothing).

`privacy` becomes `PrivacySettings` (compiled into `consumer.policy.PrivacyRules` once). Its HMAC
key is read from the environment when the settings are parsed, so a `hash` rule without it fails
at start-up and in `transform` alike; an empty variable counts as unset (an empty key protects
nothing). The key is kept out of every repr and message.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from consumer.errors import UserError
from consumer.policy import CYCLES, Cycle, EventsRules, PrivacyRules, cycle_at
from consumer.policy.privacy import ACTIONS, ALLOW_ROOTS, DETECTORS, HASH

DEFAULT_API_HOST = "https://api.fullstory.com"
EU1_API_HOST = "https://api.eu1.fullstory.com"
ANONYMOUS_IDENTIFY_MODES = ("send", "skip", "uid")

# Accepted key (snake_case and Segment's camelCase) → setting.
SETTING_KEYS: dict[str, str] = {
    "api_key": "api_key",
    "apiKey": "api_key",
    "org": "org",
    "orgId": "org",
    "api_host": "api_host",
    "apiHost": "api_host",
    "debug": "debug",
    "record_only_this_iframe": "record_only_this_iframe",
    "recordOnlyThisIFrame": "record_only_this_iframe",
    "track_all_pages": "track_all_pages",
    "trackAllPages": "track_all_pages",
    "track_named_pages": "track_named_pages",
    "trackNamedPages": "track_named_pages",
    "track_categorized_pages": "track_categorized_pages",
    "trackCategorizedPages": "track_categorized_pages",
    "track_pages_with_events": "track_pages_with_events",
    "trackPagesWithEvents": "track_pages_with_events",
    "anonymous_identify": "anonymous_identify",
    "anonymousIdentify": "anonymous_identify",
    "use_recent_session": "use_recent_session",
    "useRecentSession": "use_recent_session",
    "send_context": "send_context",
    "sendContext": "send_context",
    "track_groups": "track_groups",
    "trackGroups": "track_groups",
    "process_deletes": "process_deletes",
    "processDeletes": "process_deletes",
    "events": "events",
    "budget": "budget",
    "privacy": "privacy",
}
_TEXT_SETTINGS = frozenset(("api_key", "org", "api_host"))


class SettingsError(UserError):
    """A destination setting has a wrong type or value; the message says how to fix it."""


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def _shown(value: object) -> str:
    """A wrong value as a message shows it: short text quoted, a number as is, else its type."""
    if isinstance(value, str):
        return repr(value[:40])
    if isinstance(value, int | float) and not isinstance(value, bool):
        return repr(value)
    kind = _type_name(value)
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def _object(key: str, value: object, known: tuple[str, ...], example: str) -> Mapping[str, Any]:
    """`value` as a policy object whose keys are all known; a typo is refused, with a hint."""
    if not isinstance(value, Mapping):
        raise SettingsError(
            f"setting {key!r} must be an object, got {_shown(value)}: write it as {example}"
        )
    for raw in value:
        name = str(raw)
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SettingsError(
                f"unknown key {name!r} in setting {key!r}{hint}: its keys are "
                f"{', '.join(known)}; unknown keys are refused so that a typo cannot change "
                "what is sent"
            )
    return value


def _patterns(
    key: str, value: object, what: str = "event-name", example: str = "Order *"
) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        raise SettingsError(
            f"setting {key!r} must be a list of {what} patterns, got {_shown(value)}: "
            f'write it in brackets, e.g. ["{example}"]'
        )
    for i, pattern in enumerate(value):
        if not isinstance(pattern, str):
            raise SettingsError(
                f"setting {key}[{i}] must be a pattern string, got {_shown(pattern)}: "
                f'write it in quotes, e.g. "{example}"'
            )
    return tuple(value)


def _rate(key: str, value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1:
        return float(value)
    raise SettingsError(
        f"setting {key} must be a number from 0 to 1 (the share of users kept), got "
        f"{_shown(value)}: e.g. 0.25 keeps a quarter of the users, 0 none, 1 all"
    )


def _choice(key: str, value: object, choices: tuple[str, ...]) -> str:
    if isinstance(value, str) and value.strip().lower() in choices:
        return value.strip().lower()
    names = " or ".join(f'"{choice}"' for choice in choices)
    raise SettingsError(f"setting {key!r} must be {names}, got {_shown(value)}: pick one of those")


def _instant(key: str, value: object) -> datetime:
    """An aware instant, from ISO-8601 text or a TOML offset date-time, in UTC."""
    parsed: datetime | None = None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            parsed = None
    fix = 'e.g. "2024-03-15T09:00:00Z", the reset time FullStory\'s subscription page shows'
    if parsed is None:
        raise SettingsError(
            f"setting {key!r} must be an ISO-8601 instant with a time zone, got {_shown(value)}: "
            f"{fix}"
        )
    if parsed.utcoffset() is None:
        raise SettingsError(
            f"setting {key!r} has no time zone ({_shown(value)}): add Z (UTC) or an offset such "
            f"as +01:00, {fix}"
        )
    return parsed.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class EventsSettings:
    """The `events` object: which server events are sent, as patterns in file order.

    `rules` is the compiled form (consumer/policy/events.py), built once per settings object.
    """

    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    sample: tuple[tuple[str, float], ...] = ()
    rules: EventsRules = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rules", EventsRules(self.include, self.exclude, self.sample))

    @classmethod
    def from_mapping(cls, data: object) -> EventsSettings:
        """Parse the `events` object; SettingsError names the key and the fix."""
        given = _object(
            "events", data, ("include", "exclude", "sample"), '{"exclude": ["Debug *"]}'
        )
        values: dict[str, Any] = {}
        for name in ("include", "exclude"):
            if name in given:
                values[name] = _patterns(f"events.{name}", given[name])
        if "sample" in given:
            sample = given["sample"]
            if not isinstance(sample, Mapping):
                raise SettingsError(
                    f"setting 'events.sample' must be an object of pattern → rate, got "
                    f'{_shown(sample)}: write it as {{"Viewed * Page": 0.1}}'
                )
            pairs = []
            for pattern, rate in sample.items():
                if not isinstance(pattern, str):
                    raise SettingsError(
                        f"setting 'events.sample' has a pattern that is not a string, got "
                        f"{_shown(pattern)}: write each pattern in quotes"
                    )
                pairs.append((pattern, _rate(f"events.sample[{pattern!r}]", rate)))
            values["sample"] = tuple(pairs)
        return cls(**values)


DEFAULT_CYCLE_START = datetime(2000, 1, 1, tzinfo=UTC)
WHEN_EXHAUSTED = ("skip", "pause")


@dataclass(frozen=True, slots=True)
class BudgetSettings:
    """The `budget` object: how many server events a cycle may carry (`cycle_start` in UTC)."""

    events_per_cycle: int
    cycle: str = "monthly"
    cycle_start: datetime = DEFAULT_CYCLE_START
    warn_at: float = 0.8
    when_exhausted: str = "skip"

    def cycle_at(self, instant: datetime) -> Cycle:
        """The cycle holding `instant` (an aware datetime)."""
        return cycle_at(self.cycle, self.cycle_start, instant)

    @classmethod
    def from_mapping(cls, data: object) -> BudgetSettings:
        """Parse the `budget` object; SettingsError names the key and the fix."""
        known = ("events_per_cycle", "cycle", "cycle_start", "warn_at", "when_exhausted")
        given = _object("budget", data, known, '{"events_per_cycle": 500000}')
        if "events_per_cycle" not in given:
            raise SettingsError(
                "setting 'budget' needs events_per_cycle, the server events this destination "
                'may send per cycle: e.g. {"events_per_cycle": 500000}, or remove the budget'
            )
        count = given["events_per_cycle"]
        if type(count) is not int or count < 0:
            raise SettingsError(
                f"setting 'budget.events_per_cycle' must be a whole number of events, 0 or more, "
                f"got {_shown(count)}: write it without quotes or a decimal point, e.g. 500000"
            )
        values: dict[str, Any] = {"events_per_cycle": count}
        if "cycle" in given:
            values["cycle"] = _choice("budget.cycle", given["cycle"], CYCLES)
        if "cycle_start" in given:
            values["cycle_start"] = _instant("budget.cycle_start", given["cycle_start"])
        if "warn_at" in given:
            warn_at = given["warn_at"]
            if not (
                isinstance(warn_at, int | float)
                and not isinstance(warn_at, bool)
                and 0 < warn_at <= 1
            ):
                raise SettingsError(
                    f"setting 'budget.warn_at' must be a share of the budget above 0 and at most "
                    f"1, got {_shown(warn_at)}: e.g. 0.8 warns once 80% is used"
                )
            values["warn_at"] = float(warn_at)
        if "when_exhausted" in given:
            values["when_exhausted"] = _choice(
                "budget.when_exhausted", given["when_exhausted"], WHEN_EXHAUSTED
            )
        return cls(**values)


DEFAULT_HASH_KEY_ENV = "FULLSTORY_CONSUMER_HASH_KEY"
_PATH_EXAMPLE = "context.ip"


@dataclass(frozen=True, slots=True)
class PrivacySettings:
    """The `privacy` object: what may leave (policy-spec.md). `rules` is the compiled form,
    built once; the key lives only in it and is never shown."""

    drop: tuple[str, ...] = ()
    redact: tuple[str, ...] = ()
    hash: tuple[str, ...] = ()
    allow: tuple[tuple[str, tuple[str, ...]], ...] = ()
    detect: tuple[tuple[str, str], ...] = ()
    hash_key_env: str = DEFAULT_HASH_KEY_ENV
    rules: PrivacyRules = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        key: bytes | None = None
        if self.hash or any(action == HASH for _, action in self.detect):
            text = os.environ.get(self.hash_key_env, "")
            if not text:
                raise SettingsError(
                    f"setting 'privacy' hashes values but the environment variable "
                    f"{self.hash_key_env} (the HMAC key, privacy.hash_key_env) is not set: set "
                    "it to a secret of your own, or remove the hash rules"
                )
            key = text.encode("utf-8", "surrogatepass")
        rules = PrivacyRules(
            self.drop, self.redact, self.hash, dict(self.allow), dict(self.detect), key
        )
        object.__setattr__(self, "rules", rules)

    @classmethod
    def from_mapping(cls, data: object) -> PrivacySettings:
        """Parse the `privacy` object; SettingsError names the key and the fix."""
        known = (*ACTIONS, "allow", "detect", "hash_key_env")
        given = _object("privacy", data, known, '{"drop": ["context.ip"]}')
        values: dict[str, Any] = {}
        for name in ACTIONS:
            if name in given:
                values[name] = _patterns(f"privacy.{name}", given[name], "path", _PATH_EXAMPLE)
        if "allow" in given:
            allow = _object("privacy.allow", given["allow"], ALLOW_ROOTS, '{"traits": ["plan"]}')
            values["allow"] = tuple(
                (str(root), _patterns(f"privacy.allow.{root}", patterns, "path", "plan"))
                for root, patterns in allow.items()
            )
        if "detect" in given:
            detect = _object("privacy.detect", given["detect"], DETECTORS, '{"email": "hash"}')
            values["detect"] = tuple(
                (str(kind), _choice(f"privacy.detect.{kind}", action, ACTIONS))
                for kind, action in detect.items()
            )
        if "hash_key_env" in given:
            env = given["hash_key_env"]
            if not isinstance(env, str) or not env.strip():
                raise SettingsError(
                    f"setting 'privacy.hash_key_env' must be the name of an environment "
                    f'variable, got {_shown(env)}: e.g. "{DEFAULT_HASH_KEY_ENV}"'
                )
            values["hash_key_env"] = env.strip()
        return cls(**values)


_POLICY_OBJECTS: dict[str, type[EventsSettings] | type[BudgetSettings] | type[PrivacySettings]] = {
    "events": EventsSettings,
    "budget": BudgetSettings,
    "privacy": PrivacySettings,
}


def _check(key: str, setting: str, value: object) -> object:
    """The value of `setting` given under `key`, validated; never echoes the api key."""
    if setting in _TEXT_SETTINGS:
        if value is None:
            return None
        if not isinstance(value, str):
            raise SettingsError(
                f"setting {key!r} must be a string, got a {_type_name(value)}: "
                f'write it in quotes, e.g. "{key}": "..."'
            )
        text = value.strip()
        if not text:
            return None
        if setting == "api_host":
            if not text.startswith(("https://", "http://")):
                raise SettingsError(
                    f"setting {key!r} must be an http(s) URL such as {DEFAULT_API_HOST!r}, "
                    f"got {text[:80]!r}: add the scheme"
                )
            text = text.rstrip("/")
        return text
    policy = _POLICY_OBJECTS.get(setting)
    if policy is not None:
        if value is None or isinstance(value, policy):
            return value
        return policy.from_mapping(value)
    if setting == "anonymous_identify":
        if isinstance(value, str) and value.strip().lower() in ANONYMOUS_IDENTIFY_MODES:
            return value.strip().lower()
        shown = repr(value[:40]) if isinstance(value, str) else f"a {_type_name(value)}"
        raise SettingsError(
            f'setting {key!r} must be one of "send", "skip" or "uid", got {shown}: '
            "pick one of those three strings"
        )
    if not isinstance(value, bool):
        raise SettingsError(
            f"setting {key!r} must be a boolean, got a {_type_name(value)}: "
            f'write true or false without quotes, e.g. "{key}": true'
        )
    return value


@dataclass(frozen=True, slots=True, repr=False)
class DestinationSettings:
    """The FullStory destination's settings (mapping-spec.md, "Destination settings")."""

    api_key: str | None = None
    org: str | None = None
    api_host: str | None = None
    debug: bool = False
    record_only_this_iframe: bool = False
    track_all_pages: bool = False
    track_named_pages: bool = False
    track_categorized_pages: bool = False
    track_pages_with_events: bool = True
    anonymous_identify: str = "send"
    use_recent_session: bool = False
    send_context: bool = True
    track_groups: bool = False
    process_deletes: bool = True
    events: EventsSettings | None = None
    budget: BudgetSettings | None = None
    privacy: PrivacySettings | None = None

    def __post_init__(self) -> None:
        # Direct construction is validated like a file, so the transform can trust the values.
        for item in fields(self):
            value = _check(item.name, item.name, getattr(self, item.name))
            object.__setattr__(self, item.name, value)

    def __repr__(self) -> str:
        parts = []
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name == "api_key" and value is not None:
                parts.append("api_key='***'")
            else:
                parts.append(f"{item.name}={value!r}")
        return f"DestinationSettings({', '.join(parts)})"

    __str__ = __repr__

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> tuple[DestinationSettings, list[str]]:
        """Settings from snake_case or Segment camelCase keys, and the unknown keys (in order).

        Raises SettingsError naming the key, the expected type and the fix; the api key's value
        never appears in a message.
        """
        if not isinstance(data, Mapping):
            raise SettingsError(
                f"destination settings must be an object, got a {_type_name(data)}: "
                'write them as {"apiKey": "...", "orgId": "..."}'
            )
        values: dict[str, Any] = {}
        given_as: dict[str, str] = {}
        unknown: list[str] = []
        for raw_key, value in data.items():
            key = str(raw_key)
            setting = SETTING_KEYS.get(key)
            if setting is None:
                unknown.append(key)
                continue
            checked = _check(key, setting, value)
            if setting in values and values[setting] != checked:
                raise SettingsError(
                    f"settings {given_as[setting]!r} and {key!r} both set {setting} "
                    "to different values: keep only one of them"
                )
            values[setting] = checked
            given_as[setting] = key
        return cls(**values), unknown

    @property
    def resolved_api_host(self) -> str:
        """`api_host`, else the EU host for an org id ending in `-eu1`, else the default."""
        if self.api_host:
            return self.api_host
        if self.org and self.org.lower().endswith("-eu1"):
            return EU1_API_HOST
        return DEFAULT_API_HOST
