"""Body validation for the emulated FullStory endpoints, hand-written after its OpenAPI files.

Two stages, as a server that decodes JSON into typed request messages works: `parse_*` checks
what the spec's JSON types say (declared fields, JSON types, int32 ranges), `check_*` what the
spec's constraints and FullStory's docs say (required `name`, maxLength, maxProperties, property
rules, identity rules). A batch import is refused whole when an item does not parse, and fails
only that item when a check fails (see `batch.py`).

Choices where FullStory's behaviour is unverified:
- a field the spec does not declare is refused (400), and so is `null` for any declared field;
  FullStory may ignore the one and read the other as unset;
- JSON types are strict: no numbers in quotes, no 1.0 for an integer (Draft 4, as Swagger 2.0);
- a bad property rejects the whole request (400), it is never silently dropped;
- an empty `uid` is refused (it could never be looked up); an empty `user` or `session` too;
- `user` holds one of `uid` or `id`, never both; `session` one of `id` or `use_most_recent`;
- `use_most_recent: false` is refused (FullStory once treated it as true);
- a declared schema path must exist in `properties`; declared types are not checked against
  the values (FullStory coerces);
- `maxProperties: 500` counts the top-level keys of a user's `properties` (as JSON Schema
  does); event properties have no such cap;
- the 250-character event name limit is not enforced (documented for client APIs only);
- a missing `name` is answered like an empty one ("events must have a non-empty name").
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

MAX_ITEMS = 50_000  # per batch import job (FullStory's docs; the spec is silent)
MAX_UID = 256
MAX_DISPLAY_NAME = 256
MAX_EMAIL = 128
MAX_USER_PROPERTIES = 500
MAX_PATH = 512
MAX_VALUE_BYTES = 8192
INT32 = range(-(2**31), 2**31)
SCHEMA_TYPES = frozenset(
    ("str", "strs", "int", "ints", "real", "reals", "bool", "bools", "date", "dates")
)
CODES = {
    400: "invalid_argument",
    401: "unauthorized",
    403: "forbidden",
    404: "resource_not_found",
    429: "too_many_requests",
}


# JSON types as the exact Python types orjson decodes them to (bool is no integer here).
Kind = frozenset[type]
STRING: Kind = frozenset((str,))
INTEGER: Kind = frozenset((int,))  # int32: also range-checked
NUMBER: Kind = frozenset((int, float))
BOOLEAN: Kind = frozenset((bool,))
OBJECT: Kind = frozenset((dict,))
ARRAY: Kind = frozenset((list,))
KIND_NAMES = {
    STRING: "a string",
    INTEGER: "an int32 integer",
    NUMBER: "a number",
    BOOLEAN: "a boolean",
    OBJECT: "an object",
    ARRAY: "an array",
}
# Declared fields and their JSON types: CreateUserRequest, BatchUserImportRequest (adds `id`),
# CreateEventRequest, UserIdRequest, SessionIdRequest, Context and its sections.
USER_FIELDS: dict[str, Kind] = {
    "uid": STRING,
    "display_name": STRING,
    "email": STRING,
    "properties": OBJECT,
    "schema": OBJECT,
}
BATCH_USER_FIELDS: dict[str, Kind] = {"id": STRING, **USER_FIELDS}
EVENT_FIELDS: dict[str, Kind] = {
    "user": OBJECT,
    "session": OBJECT,
    "context": OBJECT,
    "name": STRING,
    "timestamp": STRING,
    "properties": OBJECT,
    "schema": OBJECT,
}
USER_ID_FIELDS: dict[str, Kind] = {"uid": STRING, "id": STRING}
SESSION_FIELDS: dict[str, Kind] = {"id": STRING, "use_most_recent": BOOLEAN}
SCHEMA_FIELDS: dict[str, Kind] = {"properties": OBJECT}
SHARED_FIELDS: dict[str, Kind] = {"context": OBJECT}
# CreateBatchUserImportJobRequest and CreateBatchEventsImportJobRequest.
BATCH_FIELDS: dict[str, dict[str, Kind]] = {
    "users": {"requests": ARRAY},
    "events": {"requests": ARRAY, "shared": OBJECT},
}
CONTEXT_FIELDS: dict[str, dict[str, Kind]] = {
    "browser": dict.fromkeys(("url", "user_agent", "initial_referrer"), STRING),
    "mobile": dict.fromkeys(("app_id", "app_version", "app_name", "build_variant"), STRING),
    "device": {
        "manufacturer": STRING,
        "model": STRING,
        **dict.fromkeys(
            ("screen_width", "screen_height", "viewport_width", "viewport_height"), INTEGER
        ),
    },
    "location": {
        **dict.fromkeys(("country", "region", "city", "ip_address"), STRING),
        "latitude": NUMBER,
        "longitude": NUMBER,
    },
}
CONTEXT_SECTIONS: dict[str, Kind] = dict.fromkeys(CONTEXT_FIELDS, OBJECT)
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*").fullmatch
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}T").match


class Invalid(ValueError):
    """A request FullStory refuses: 400 for a whole request, an error item in a batch job."""

    def __init__(self, message: str, code: str = "invalid_argument") -> None:
        super().__init__(message)
        self.code = code


def error_code(status: int) -> str:
    """FullStory's error code for a status: 5xx are `server_error`, unknown 4xx
    `invalid_argument`."""
    return "server_error" if status >= 500 else CODES.get(status, "invalid_argument")


# -- parse: declared fields and JSON types ---------------------------------------------------


def _parse_object(value: Any, fields: dict[str, Kind], where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Invalid(f"{where} must be an object")
    for name, item in value.items():
        kind = fields.get(name)
        if kind is None:
            raise Invalid(f"unknown field {where}.{name}")
        if type(item) not in kind or (kind is INTEGER and item not in INT32):
            raise Invalid(f"{where}.{name} must be {KIND_NAMES[kind]}")
    return value


def parse_context(context: Any, where: str = "context") -> dict[str, Any]:
    """A `Context`: known sections and fields of the declared JSON types."""
    sections = _parse_object(context, CONTEXT_SECTIONS, where)
    for section, fields in sections.items():
        _parse_object(fields, CONTEXT_FIELDS[section], f"{where}.{section}")
    return sections


def _parse_schema(body: dict[str, Any], where: str) -> None:
    if "schema" in body:
        _parse_object(body["schema"], SCHEMA_FIELDS, f"{where}.schema")


def parse_user(
    body: Any, fields: dict[str, Kind] = USER_FIELDS, where: str = "body"
) -> dict[str, Any]:
    """A `CreateUserRequest` (or, with BATCH_USER_FIELDS, a `BatchUserImportRequest`)."""
    user = _parse_object(body, fields, where)
    _parse_schema(user, where)
    return user


def parse_event(body: Any, where: str = "body") -> dict[str, Any]:
    """A `CreateEventRequest`."""
    event = _parse_object(body, EVENT_FIELDS, where)
    if "user" in event:
        _parse_object(event["user"], USER_ID_FIELDS, f"{where}.user")
    if "session" in event:
        _parse_object(event["session"], SESSION_FIELDS, f"{where}.session")
    if "context" in event:
        parse_context(event["context"], f"{where}.context")
    _parse_schema(event, where)
    return event


def parse_batch(kind: str, body: Any) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """A batch create body of that kind, every item parsed: (items, shared or None)."""
    batch = _parse_object(body, BATCH_FIELDS[kind], "body")
    items = batch.get("requests")
    if items is None:
        raise Invalid("requests is required", "required_field")
    if not items:
        raise Invalid("requests must not be empty")
    if len(items) > MAX_ITEMS:
        raise Invalid(f"a batch import holds at most {MAX_ITEMS} requests, not {len(items)}")
    for index, item in enumerate(items):
        where = f"requests[{index}]"
        if kind == "users":
            parse_user(item, BATCH_USER_FIELDS, where)
        else:
            parse_event(item, where)
    shared = batch.get("shared")
    if shared is not None:
        _parse_object(shared, SHARED_FIELDS, "shared")
        if "context" in shared:
            parse_context(shared["context"], "shared.context")
    return items, shared


# -- check: constraints and rules ------------------------------------------------------------


def _string_fits(value: str) -> bool:
    # A str of n code points encodes to at most 4n UTF-8 bytes: skip encoding short strings.
    return len(value) * 4 <= MAX_VALUE_BYTES or len(value.encode()) <= MAX_VALUE_BYTES


def _check_properties(props: dict[str, Any], prefix: str) -> None:
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


def _check_schema(declared: dict[str, Any], props: Any) -> None:
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
        _check_schema(body["schema"].get("properties", {}), body.get("properties"))


def _check_length(body: dict[str, Any], name: str, limit: int, where: str = "") -> None:
    if name in body and len(body[name]) > limit:
        raise Invalid(f"{where}{name} must be at most {limit} characters")


def check_user(user: dict[str, Any]) -> dict[str, Any]:
    """The constraints on a parsed user."""
    _check_length(user, "uid", MAX_UID)
    if user.get("uid") == "":
        raise Invalid("uid must not be empty")
    if user.get("id") == "":
        raise Invalid("id must not be empty")
    _check_length(user, "display_name", MAX_DISPLAY_NAME)
    _check_length(user, "email", MAX_EMAIL)
    if len(user.get("properties", ())) > MAX_USER_PROPERTIES:
        raise Invalid(f"a user has at most {MAX_USER_PROPERTIES} properties")
    _check_common(user)
    return user


def _check_identity(event: dict[str, Any]) -> None:
    if "user" in event:
        user = event["user"]
        if len(user) != 1:
            raise Invalid('user must be {"uid": ...} or {"id": ...}')
        (value,) = user.values()
        if not value:
            raise Invalid("user.uid / user.id must be a non-empty string")
        _check_length(user, "uid", MAX_UID, "user.")
    if "session" not in event:
        return
    session = event["session"]
    if len(session) != 1:
        raise Invalid('session must be {"id": ...} or {"use_most_recent": true}')
    if "id" in session:
        if not session["id"]:
            raise Invalid("session.id must be a non-empty string")
        if "user" in event:
            raise Invalid("an event identifies by session.id or by user, not both")
    else:
        if session["use_most_recent"] is not True:
            raise Invalid("session.use_most_recent must be true when present")
        if "user" not in event:
            raise Invalid("session.use_most_recent requires exactly one user field")


def check_event(event: dict[str, Any]) -> dict[str, Any]:
    """The constraints on a parsed event."""
    if not event.get("name"):
        raise Invalid("events must have a non-empty name")
    if "timestamp" in event:
        timestamp = event["timestamp"]
        try:
            datetime.fromisoformat(timestamp)
        except ValueError:
            raise Invalid(f"timestamp is not ISO-8601: {timestamp[:64]!r}") from None
    _check_identity(event)
    _check_common(event)
    return event


def validate_user(body: Any) -> dict[str, Any]:
    """A `POST /v2/users` body, parsed and checked."""
    return check_user(parse_user(body))


def validate_event(body: Any) -> dict[str, Any]:
    """A `POST /v2/events` body, parsed and checked."""
    return check_event(parse_event(body))


# -- schema of an imported item (include_schema=true) ----------------------------------------


def _inferred(value: Any) -> str | None:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "real"
    if isinstance(value, str):
        return "date" if _DATE(value) and _iso(value) else "str"
    if isinstance(value, list):
        kinds = {_inferred(item) for item in value if item is not None}
        kind = kinds.pop() if len(kinds) == 1 else None
        return None if kind is None else kind + "s"
    return None


def _iso(value: str) -> bool:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _infer(props: dict[str, Any], prefix: str, out: dict[str, str]) -> None:
    for name, value in props.items():
        if isinstance(value, dict):
            _infer(value, prefix + name + ".", out)
        else:
            kind = _inferred(value)
            if kind is not None:
                out[prefix + name] = kind


def schema_of(body: dict[str, Any]) -> dict[str, Any]:
    """`{"properties": {dotted path: type}}`: the declared types over the inferred ones."""
    out: dict[str, str] = {}
    _infer(body.get("properties", {}), "", out)
    out.update(body.get("schema", {}).get("properties", {}))
    return {"properties": out}
