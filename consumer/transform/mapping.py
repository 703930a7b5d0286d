"""The transform: one Segment event + destination settings → Outcome. Pure; never raises.

Implements mapping-spec.md in its order of evaluation: event shape → integrations filter →
identity → the type's own rule. Choices the spec leaves open:
- `type` must be one of the seven names exactly (lowercase, as Segment writes it).
- Integrations: several keys naming this destination skip when any of them is `false`; only the
  JSON value `false` disables (0, null, "" do not); `All` is matched case-insensitively too.
- Ids (`userId`, `anonymousId`, `groupId`): a non-empty string as is; an integer as its decimal
  string; a finite float that is whole as the integer's string (`1.0` → "1"), any other finite
  float as its shortest repr (`1.5` → "1.5"); anything else (bool, NaN, objects...) is absent.
  Ids are not trimmed. Lengths are counted in Unicode code points.
- The 256-character uid limit (`invalid_uid`) also applies to group and delete, the other calls
  that would send the userId as a uid.
- group and delete check their setting (`track_groups`, `process_deletes`) first: a call type the
  operator turned off is skipped before its content is judged.
- display_name: every candidate is trimmed (`displayName`, `name`, `firstName`, `lastName`), so a
  blank one falls through to the next; the result is cut to 256 code points.
- identify `properties` drop the trait keys `id` and `displayName` always, `email` when it became
  the `email` field, `name` when it became the display name; then `segmentAnonymousId` is added
  last, so it replaces a trait of that name.
- page/screen `name` and `category` count only when they are non-empty strings; they are added to
  the properties after the page's own (so they win over same-named ones), then pageName/screenName.
- group: `group` is left out when the normalised traits are empty; `groupId` is a string property
  (a long one is cut to 8192 bytes like any string).
- context: text fields must be non-empty strings (`app.version` may also be a number);
  screen sizes whole numbers in [0, 2^31); latitude/longitude finite numbers within ±90/±180;
  `country`/`region` ISO codes, from codes or names (location.py), a region only with a country.
  Other values are left out, so one bad field never costs the event.
- identify and group: at most 500 user properties, by dotted leaf path (properties.py).
- The `events` rules (policy-spec.md) run here, on the name and uid of the event request about to
  be built, before its body: the outcome is the one "map, then apply `events`" gives (nothing
  after that point can fail), and an excluded event costs a dict lookup instead of a mapping.
- The `privacy` rules (consumer/policy/privacy.py) run first, on the Segment event; a trait that
  would feed `email` or `display_name` but was hashed or redacted is not used for them and stays
  a property under its own name (policy-spec.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from consumer.policy import EXCLUDED, NOT_INCLUDED, SAMPLE, SAMPLED_OUT, Action, sample_key
from consumer.policy.privacy import DROP
from consumer.transform.idempotency import idempotency_key
from consumer.transform.location import country_code, region_code
from consumer.transform.outcome import Invalid, Outcome, Request, Requests, Skipped
from consumer.transform.properties import SAFE_TEXT_LEN, cap_user_properties, cut_text, normalise
from consumer.transform.settings import DestinationSettings
from consumer.transform.timestamps import event_timestamp

MAX_UID = 256
MAX_DISPLAY_NAME = 256
MAX_EMAIL = 128
DESTINATION_NAMES = frozenset(
    name.lower()
    for name in (
        "FullStory",
        "Fullstory",
        "FullStory (Actions)",
        "Fullstory (Actions)",
        "Fullstory Cloud Mode (Actions)",
    )
)
USERS_PATH = "/v2/users"
EVENTS_PATH = "/v2/events"
IDENTIFY_ALWAYS_DROPPED = frozenset(("id", "displayName"))
# Trait keys identify drops: [name became the display name][email became the email field].
IDENTIFY_DROPPED = (
    (IDENTIFY_ALWAYS_DROPPED, IDENTIFY_ALWAYS_DROPPED | {"email"}),
    (IDENTIFY_ALWAYS_DROPPED | {"name"}, IDENTIFY_ALWAYS_DROPPED | {"name", "email"}),
)
# Traits that can feed FullStory's email or display_name (not once hashed or redacted).
NAMING_TRAITS = ("email", "displayName", "name", "firstName", "lastName")
NO_ACTIONS: tuple[Action, ...] = ()
# Properties the mapping adds to a user: never dropped by the 500-property cap.
IDENTIFY_KEPT = frozenset(("segmentAnonymousId",))
GROUP_KEPT = frozenset(("groupId",))
# page/screen: (word in the event name, property naming the page or screen)
VIEW_KINDS: dict[str, tuple[str, str]] = {
    "page": ("Page", "pageName"),
    "screen": ("Screen", "screenName"),
}

INVALID_EVENT = Invalid("invalid_event")
MISSING_IDENTITY = Invalid("missing_identity")
INVALID_UID = Invalid("invalid_uid")
MISSING_EVENT_NAME = Invalid("missing_event_name")
MISSING_GROUP_ID = Invalid("missing_group_id")
INTEGRATIONS_DISABLED = Skipped("integrations_disabled")
ANONYMOUS_IDENTIFY = Skipped("anonymous_identify")
PAGE_EVENTS_DISABLED = Skipped("page_events_disabled")
PAGE_NOT_TRACKED = Skipped("page_not_tracked")
GROUP_DISABLED = Skipped("group_disabled")
GROUP_WITHOUT_USER = Skipped("group_without_user")
ALIAS_UNSUPPORTED = Skipped("alias_unsupported")
DELETES_DISABLED = Skipped("deletes_disabled")
EVENTS_SKIPPED = {reason: Skipped(reason) for reason in (NOT_INCLUDED, EXCLUDED, SAMPLED_OUT)}
_LOWER_CACHE: dict[str, str] = {}


def id_string(value: object) -> str | None:
    """A Segment id as the string FullStory gets, or None when absent or unusable."""
    if type(value) is str:
        return value or None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        if not value.is_integer():
            return repr(float(value))
        value = int(value)
    try:
        return str(int(value))
    except ValueError:  # more digits than int→str conversion allows
        return None


def _text(value: object) -> str | None:
    if type(value) is not str or not value:
        return None
    return value if len(value) <= SAFE_TEXT_LEN else cut_text(value)


def _version(value: object) -> str | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return id_string(value)
    return _text(value)


def _dimension(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        return None
    return int(value) if 0 <= value < 2**31 else None


def _coordinate(limit: float) -> Callable[[object], float | int | None]:
    def convert(value: object) -> float | int | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        if -limit <= value <= limit:  # False for NaN
            return float(value) if isinstance(value, float) else int(value)
        return None

    return convert


Converter = Callable[[object], object]
# FullStory context part → where its fields come from, in the part's field order:
# (Segment context key holding an object, or None for the context itself,
#  ((FullStory field, key in that object, converter), ...)).
# A Segment object feeding several fields is looked up once; a missing one skips them all.
ContextSource = tuple[str | None, tuple[tuple[str, str, Converter], ...]]
CONTEXT_MAP: tuple[tuple[str, tuple[ContextSource, ...]], ...] = (
    (
        "browser",
        (
            ("page", (("url", "url", _text),)),
            (None, (("user_agent", "userAgent", _text),)),
            ("page", (("initial_referrer", "referrer", _text),)),
        ),
    ),
    (
        "mobile",
        (("app", (("app_name", "name", _text), ("app_version", "version", _version))),),
    ),
    (
        "device",
        (
            ("device", (("manufacturer", "manufacturer", _text), ("model", "model", _text))),
            (
                "screen",
                (("screen_width", "width", _dimension), ("screen_height", "height", _dimension)),
            ),
        ),
    ),
    (
        "location",
        (
            (None, (("ip_address", "ip", _text),)),
            (
                "location",
                (
                    ("city", "city", _text),
                    ("latitude", "latitude", _coordinate(90)),
                    ("longitude", "longitude", _coordinate(180)),
                ),
            ),
        ),
    ),
)


def map_context(context: object) -> dict[str, dict[str, object]] | None:
    """Segment `context` → FullStory event `context`; None when no field is present."""
    if type(context) is not dict or not context:
        return None
    out: dict[str, dict[str, object]] = {}
    for part, sources in CONTEXT_MAP:
        mapped: dict[str, object] | None = None  # made at the part's first field
        for key, fields in sources:
            source = context if key is None else context.get(key)
            if type(source) is not dict:
                continue
            for field, name, convert in fields:
                value = source.get(name)
                if value is not None:
                    converted = convert(value)
                    if converted is not None:
                        if mapped is None:
                            mapped = out[part] = {}
                        mapped[field] = converted
    location = context.get("location")
    if type(location) is dict:
        # Codes, not names (see location.py); a region is looked up within its country.
        country = country_code(location.get("country"))
        if country is not None:
            place = out.get("location")
            if place is None:
                place = out["location"] = {}
            region = region_code(country, location.get("region"))
            if region is not None:
                place["region"] = region
            place["country"] = country
    return out or None


def _lower(key: str) -> str:
    lowered = _LOWER_CACHE.get(key)
    if lowered is None:
        if len(_LOWER_CACHE) >= 1024:
            _LOWER_CACHE.clear()
        lowered = _LOWER_CACHE[key] = key.lower()
    return lowered


def integrations_allow(integrations: object) -> bool:
    """The integrations filter: False when the event must be skipped for this destination."""
    if type(integrations) is not dict or not integrations:
        return True
    named = False
    all_off = False
    for key, value in integrations.items():
        if type(key) is not str:
            continue
        lowered = _lower(key)
        if lowered in DESTINATION_NAMES:
            if value is False:
                return False
            named = True
        elif lowered == "all" and value is False:
            all_off = True
    return named or not all_off


def _send(
    event: dict[str, Any],
    method: str,
    path: str,
    body: dict[str, Any] | None,
    dropped: tuple[str, ...] = (),
) -> Requests:
    """The outcome of an event that maps to this one request."""
    key = idempotency_key(event, (method, path, body))
    return Requests((Request(method, path, body, key),), dropped)


def _event_body(
    event: dict[str, Any],
    settings: DestinationSettings,
    name: str,
    properties: dict[str, Any],
    schema: dict[str, str],
    uid: str | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "properties": properties}
    timestamp = event_timestamp(event)
    if timestamp is not None:
        body["timestamp"] = timestamp
    if uid is not None:
        body["user"] = {"uid": uid}
        if settings.use_recent_session:
            body["session"] = {"use_most_recent": True}
    if settings.send_context:
        context = map_context(event.get("context"))
        if context is not None:
            body["context"] = context
    if schema:
        body["schema"] = {"properties": schema}
    return body


def _events_skip(
    event: dict[str, Any],
    settings: DestinationSettings,
    name: str,
    uid: str | None,
    anon: str | None,
) -> Skipped | None:
    """The `events` rules' skip for the event request `name` sent as `uid`, or None to send."""
    events = settings.events
    if events is None:
        return None
    verdict = events.rules.decide_name(name)
    if verdict == SAMPLE:
        key = sample_key(uid, anon, id_string(event.get("messageId")))
        verdict = events.rules.decide(name, key)
    return None if verdict is None else EVENTS_SKIPPED[verdict]


def _stripped(value: object) -> str:
    return value.strip() if type(value) is str else ""


def _masked(actions: tuple[Action, ...], root: str) -> frozenset[str]:
    """The naming traits under `root` that privacy hashed or redacted."""
    paths = {action.path for action in actions if action.action != DROP}
    return frozenset(name for name in NAMING_TRAITS if f"{root}.{name}" in paths)


def _identify(
    event: dict[str, Any],
    settings: DestinationSettings,
    user_id: str | None,
    anon: str | None,
    uid: str | None,
    actions: tuple[Action, ...],
) -> Outcome:
    if user_id is None and settings.anonymous_identify == "skip":
        return ANONYMOUS_IDENTIFY
    root = "traits"
    traits = event.get("traits")
    if type(traits) is not dict or not traits:
        root = "context.traits"
        context = event.get("context")
        traits = context.get("traits") if type(context) is dict else None
        if type(traits) is not dict:
            traits = {}
    masked = _masked(actions, root) if actions else frozenset()
    naming = {k: v for k, v in traits.items() if k not in masked} if masked else traits
    body: dict[str, Any] = {}
    if uid is not None:
        body["uid"] = uid
    name_used = False
    display_name = _stripped(naming.get("displayName"))
    if not display_name:
        display_name = _stripped(naming.get("name"))
        if display_name:
            name_used = True
        else:
            first, last = _stripped(naming.get("firstName")), _stripped(naming.get("lastName"))
            if first and last:
                display_name = f"{first} {last}"
    if display_name:
        body["display_name"] = display_name[:MAX_DISPLAY_NAME]
    email = naming.get("email")
    email_used = type(email) is str and 0 < len(email) <= MAX_EMAIL
    if email_used:
        body["email"] = email
    extra: tuple[tuple[str, object], ...] = (("segmentAnonymousId", anon),) if anon else ()
    dropped = IDENTIFY_DROPPED[name_used][email_used]
    if "displayName" in masked:  # a masked displayName stays a property
        dropped = dropped - {"displayName"}
    properties, schema = normalise(traits, skip=dropped, extra=extra)
    properties, capped = cap_user_properties(properties, schema, IDENTIFY_KEPT)
    body["properties"] = properties
    if schema:
        body["schema"] = {"properties": schema}
    return _send(event, "POST", USERS_PATH, body, capped)


def _track(
    event: dict[str, Any], settings: DestinationSettings, uid: str | None, anon: str | None
) -> Outcome:
    name = event.get("event")
    if type(name) is not str or not name:
        return MISSING_EVENT_NAME
    skipped = _events_skip(event, settings, name, uid, anon)
    if skipped is not None:
        return skipped
    properties, schema = normalise(event.get("properties"))
    return _send(
        event, "POST", EVENTS_PATH, _event_body(event, settings, name, properties, schema, uid)
    )


def _view(
    event: dict[str, Any],
    settings: DestinationSettings,
    uid: str | None,
    anon: str | None,
    word: str,
    label: str,
) -> Outcome:
    if not settings.track_pages_with_events:
        return PAGE_EVENTS_DISABLED
    name = event.get("name")
    name = name if type(name) is str and name else None
    category = event.get("category")
    category = category if type(category) is str and category else None
    view_name: str | None
    if name is not None and settings.track_named_pages:
        view_name = f"{category} {name}" if category is not None else name
        event_name = f"Viewed {view_name} {word}"
    elif category is not None and settings.track_categorized_pages:
        view_name = category
        event_name = f"Viewed {category} {word}"
    elif settings.track_all_pages:
        view_name = None
        event_name = f"Loaded a {word}"
    else:
        return PAGE_NOT_TRACKED
    skipped = _events_skip(event, settings, event_name, uid, anon)
    if skipped is not None:
        return skipped
    extra: list[tuple[str, object]] = []
    if category is not None:
        extra.append(("category", category))
    if name is not None:
        extra.append(("name", name))
    if view_name is not None:
        extra.append((label, view_name))
    properties, schema = normalise(event.get("properties"), extra=tuple(extra))
    return _send(
        event,
        "POST",
        EVENTS_PATH,
        _event_body(event, settings, event_name, properties, schema, uid),
    )


def _group(event: dict[str, Any], settings: DestinationSettings) -> Outcome:
    if not settings.track_groups:
        return GROUP_DISABLED
    group_id = id_string(event.get("groupId"))
    if group_id is None:
        return MISSING_GROUP_ID
    user_id = id_string(event.get("userId"))
    if user_id is None:
        return GROUP_WITHOUT_USER
    if len(user_id) > MAX_UID:
        return INVALID_UID
    schema: dict[str, str] = {}
    traits, _ = normalise(event.get("traits"), prefix="group.", schema=schema)
    properties: dict[str, Any] = {"groupId": cut_text(group_id)}
    if traits:
        properties["group"] = traits
    properties, capped = cap_user_properties(properties, schema, GROUP_KEPT)
    body: dict[str, Any] = {"uid": user_id, "properties": properties}
    if schema:
        body["schema"] = {"properties": schema}
    return _send(event, "POST", USERS_PATH, body, capped)


def _delete(event: dict[str, Any], settings: DestinationSettings) -> Outcome:
    if not settings.process_deletes:
        return DELETES_DISABLED
    user_id = id_string(event.get("userId"))
    if user_id is None:
        return MISSING_IDENTITY
    if len(user_id) > MAX_UID:
        return INVALID_UID
    path = f"{USERS_PATH}?uid={quote(user_id, safe='', errors='surrogatepass')}"
    return _send(event, "DELETE", path, None)


_IDENTIFIED = frozenset(("identify", "track", "page", "screen"))
_OTHER = frozenset(("group", "alias", "delete"))


def transform(event: object, settings: DestinationSettings) -> Outcome:
    """Map one Segment event to what FullStory should receive (mapping-spec.md)."""
    return transform_explained(event, settings)[0]


def transform_explained(
    event: object, settings: DestinationSettings
) -> tuple[Outcome, tuple[Action, ...]]:
    """`transform`, and what the `privacy` rules did to the event on the way (never values)."""
    if not isinstance(event, dict):
        return INVALID_EVENT, NO_ACTIONS
    actions = NO_ACTIONS
    if settings.privacy is not None:
        event, actions = settings.privacy.rules.apply(event)
    return _map(event, settings, actions), actions


def _map(
    event: dict[str, Any], settings: DestinationSettings, actions: tuple[Action, ...]
) -> Outcome:
    kind = event.get("type")
    if type(kind) is not str or (kind not in _IDENTIFIED and kind not in _OTHER):
        return INVALID_EVENT
    integrations = event.get("integrations")
    if integrations and not integrations_allow(integrations):  # usually {}: no call
        return INTEGRATIONS_DISABLED
    if kind in _OTHER:
        if kind == "group":
            return _group(event, settings)
        if kind == "delete":
            return _delete(event, settings)
        return ALIAS_UNSUPPORTED
    user_id = id_string(event.get("userId"))
    anon = id_string(event.get("anonymousId"))
    if user_id is None and anon is None:
        return MISSING_IDENTITY
    uid = user_id if user_id is not None or settings.anonymous_identify != "uid" else anon
    if uid is not None and len(uid) > MAX_UID:
        return INVALID_UID
    if kind == "identify":
        return _identify(event, settings, user_id, anon, uid, actions)
    if kind == "track":
        return _track(event, settings, uid, anon)
    word, label = VIEW_KINDS[kind]
    return _view(event, settings, uid, anon, word, label)
