"""Body validation for the emulated FullStory endpoints.

Choices where FullStory's behaviour is unverified (see docs of each function):
- a bad property rejects the whole request (400), it is never silently dropped;
- declared schema types are not checked against the values (FullStory coerces);
- the 250-character event name limit is not enforced (documented for client APIs only).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

MAX_UID = 256
MAX_DISPLAY_NAME = 256
MAX_EMAIL = 128
MAX_PATH = 512
MAX_VALUE_BYTES = 8192
SCHEMA_TYPES = frozenset(
    ("str", "strs", "int", "ints", "real", "reals", "bool", "bools", "date", "dates")
)
USER_FIELDS = frozenset(("uid", "display_name", "email", "properties", "schema"))
EVENT_FIELDS = frozenset(
    ("name", "timestamp", "properties", "schema", "user", "session", "context")
)
CONTEXT_FIELDS: dict[str, frozenset[str]] = {
    "browser": frozenset(("url", "user_agent", "initial_referrer")),
    "mobile": frozenset(("app_id", "app_version", "app_name", "build_variant")),
    "device": frozenset(
        (
            "manufacturer",
            "model",
            "screen_width",
            "screen_height",
            "viewport_width",
            "viewport_height",
        )
    ),
    "location": frozenset(("country", "region", "city", "latitude", "longitude", "ip_address")),
}
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*").fullmatch


class Invalid(ValueError):
    """A request body FullStory would answer with 400 invalid_argument."""


def _string_fits(value: str) -> bool:
    # A str of n code points encodes to at most 4n UTF-8 bytes: skip encoding short strings.
    return len(value) * 4 <= MAX_VALUE_BYTES or len(value.encode()) <= MAX_VALUE_BYTES


def _check_properties(props: Any, prefix: str) -> None:
    if not isinstance(props, dict):
        raise Invalid(f"properties{' ' + prefix[:-1] if prefix else ''} must be an object")
    for name, value in props.items():
        path = prefix + name
        if not _NAME(name):
            raise Invalid(f"invalid property name {path!r}: must match ^[A-Za-z][A-Za-z0-9_]*$")
        if len(path) > MAX_PATH:
            raise Invalid(f"property path longer than {MAX_PATH} characters: {path[:64]}...")
        if isinstance(value, str):
            if not _string_fits(value):
                raise Invalid(f"property {path!r} is longer than {MAX_VALUE_BYTES} bytes")
        elif isinstance(value, dict):
            _check_properties(value, path + ".")
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict | list):
                    raise Invalid(f"property {path!r}: arrays of objects or arrays are not allowed")
                if isinstance(item, str) and not _string_fits(item):
                    raise Invalid(f"property {path!r} has a value over {MAX_VALUE_BYTES} bytes")


def _check_schema(schema: Any, props: Any) -> None:
    if not isinstance(schema, dict) or set(schema) != {"properties"}:
        raise Invalid('schema must be {"properties": {"<path>": "<type>"}}')
    declared = schema["properties"]
    if not isinstance(declared, dict):
        raise Invalid("schema.properties must be an object")
    for path, kind in declared.items():
        if kind not in SCHEMA_TYPES:
            raise Invalid(f"schema type for {path!r} must be one of {sorted(SCHEMA_TYPES)}")
        node = props
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                raise Invalid(f"schema declares {path!r} which is not in properties")
            node = node[part]


def _check_common(body: dict[str, Any]) -> None:
    if "properties" in body:
        _check_properties(body["properties"], "")
    if "schema" in body:
        _check_schema(body["schema"], body.get("properties"))


def _check_string(body: dict[str, Any], name: str, limit: int) -> None:
    value = body.get(name)
    if not isinstance(value, str):
        raise Invalid(f"{name} must be a string")
    if len(value) > limit:
        raise Invalid(f"{name} must be at most {limit} characters")


def validate_user(body: Any) -> dict[str, Any]:
    """Check a `POST /v2/users` body. An empty uid is rejected (it could never be looked up)."""
    if not isinstance(body, dict):
        raise Invalid("request body must be a JSON object")
    unknown = body.keys() - USER_FIELDS
    if unknown:
        raise Invalid(f"unknown fields: {sorted(unknown)}")
    if "uid" in body:
        _check_string(body, "uid", MAX_UID)
        if not body["uid"]:
            raise Invalid("uid must not be empty")
    if "display_name" in body:
        _check_string(body, "display_name", MAX_DISPLAY_NAME)
    if "email" in body:
        _check_string(body, "email", MAX_EMAIL)
    _check_common(body)
    return body


def check_context(context: Any) -> None:
    """Known sections and fields only; field values must be scalars (types not enforced)."""
    if not isinstance(context, dict):
        raise Invalid("context must be an object")
    for section, fields in context.items():
        allowed = CONTEXT_FIELDS.get(section)
        if allowed is None:
            raise Invalid(f"unknown context section {section!r}")
        if not isinstance(fields, dict):
            raise Invalid(f"context.{section} must be an object")
        for name, value in fields.items():
            if name not in allowed:
                raise Invalid(f"unknown field context.{section}.{name}")
            if isinstance(value, dict | list):
                raise Invalid(f"context.{section}.{name} must be a scalar")


def _check_identity(body: dict[str, Any]) -> None:
    if "user" in body:
        user = body["user"]
        if not isinstance(user, dict) or len(user) != 1 or not user.keys() <= {"uid", "id"}:
            raise Invalid('user must be {"uid": ...} or {"id": ...}')
        (value,) = user.values()
        if not isinstance(value, str) or not value:
            raise Invalid("user.uid / user.id must be a non-empty string")
    if "session" not in body:
        return
    session = body["session"]
    if not isinstance(session, dict) or len(session) != 1:
        raise Invalid('session must be {"id": ...} or {"use_most_recent": true}')
    if "id" in session:
        if not isinstance(session["id"], str) or not session["id"]:
            raise Invalid("session.id must be a non-empty string")
        if "user" in body:
            raise Invalid("an event identifies by session.id or by user, not both")
    elif "use_most_recent" in session:
        if session["use_most_recent"] is not True:
            raise Invalid("session.use_most_recent must be true when present")
        if "user" not in body:
            raise Invalid("session.use_most_recent requires exactly one user field")
    else:
        raise Invalid('session must be {"id": ...} or {"use_most_recent": true}')


def validate_event(body: Any) -> dict[str, Any]:
    """Check a `POST /v2/events` body."""
    if not isinstance(body, dict):
        raise Invalid("request body must be a JSON object")
    unknown = body.keys() - EVENT_FIELDS
    if unknown:
        raise Invalid(f"unknown fields: {sorted(unknown)}")
    name = body.get("name")
    if not isinstance(name, str) or not name:
        raise Invalid("events must have a non-empty name")
    if "timestamp" in body:
        timestamp = body["timestamp"]
        if not isinstance(timestamp, str):
            raise Invalid("timestamp must be an ISO-8601 string")
        try:
            datetime.fromisoformat(timestamp)
        except ValueError:
            raise Invalid(f"timestamp is not ISO-8601: {timestamp[:64]!r}") from None
    _check_identity(body)
    if "context" in body:
        check_context(body["context"])
    _check_common(body)
    return body
