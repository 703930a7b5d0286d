"""Destination settings: the spec's table, loadable from a Segment export (camelCase) as is.

Choices the spec leaves open:
- Booleans must be JSON booleans; a quoted "true" is an error (it usually hides a typo'd file).
- Text settings are stripped; an empty one counts as unset (Segment exports unset fields as "").
- `anonymous_identify` is matched case-insensitively and stored lowercase.
- Two keys for one setting (`org` and `orgId`) may both be given only with equal values.
- `api_host` must be an http(s) URL; a trailing `/` is removed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from consumer.errors import UserError

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
