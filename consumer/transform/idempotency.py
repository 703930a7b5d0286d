"""Idempotency keys: the same Segment message always yields the same key.

A key is the UUIDv5 of `"{messageId}:0"` in `MESSAGE_NAMESPACE` (0 = the request's position in
the outcome: every outcome holds one request). A `messageId` may be a non-empty string or an
integer (its decimal string). Without one, the messageId's place is taken by the SHA-256 of the
event's canonical JSON (orjson, sorted keys) in a second namespace, so it can never collide with a
real messageId. An event that orjson cannot encode (integers beyond 64 bits, nesting beyond 255
levels: never produced by the decoders) is hashed through the text of its request instead
(`repr([(method, path, body)])`), which is still deterministic.

The key depends on nothing else: changing the destination settings and replaying a message within
FullStory's 24-hour idempotency window sends a different body under the same key, which FullStory
rejects; replay after the window, or keep the settings.
"""

from __future__ import annotations

import hashlib
import uuid

import orjson

MESSAGE_NAMESPACE = uuid.UUID("5b1f8c0e-7d0a-5f7e-9c55-3f2b6a1d4e10")
HASH_NAMESPACE = uuid.UUID("9e3c2a41-0b7d-5c7a-8a7e-6d0f1b2c3d4e")
_MESSAGE_NS = MESSAGE_NAMESPACE.bytes
_HASH_NS = HASH_NAMESPACE.bytes
_CANONICAL = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


# The RFC 4122 variant bits (10xx) set on the top hex digit of the clock sequence.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def _uuid5(namespace: bytes, name: str) -> str:
    """str(uuid.uuid5(namespace, name)), stamped straight onto the hex digest (hot path)."""
    text = hashlib.sha1(
        namespace + name.encode("utf-8", "surrogatepass"), usedforsecurity=False
    ).hexdigest()
    return f"{text[:8]}-{text[8:12]}-5{text[13:16]}-{_VARIANT[text[16]]}{text[17:20]}-{text[20:32]}"


def message_id(event: dict[str, object]) -> str | None:
    """The event's messageId as a string, when it has a usable one."""
    value = event.get("messageId")
    if type(value) is str:
        return value or None
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return str(value)
        except ValueError:  # more digits than int→str allows: not a real id
            return None
    return None


def idempotency_key(event: dict[str, object], request: tuple[str, str, object]) -> str:
    """The key of `event`'s one request (method, path, body)."""
    base = message_id(event)
    if base is not None:
        return _uuid5(_MESSAGE_NS, base + ":0")
    try:
        canonical = orjson.dumps(event, option=_CANONICAL)
    except (TypeError, orjson.JSONEncodeError):
        canonical = repr([request]).encode("utf-8", "surrogatepass")
    return _uuid5(_HASH_NS, hashlib.sha256(canonical).hexdigest() + ":0")
