"""Idempotency keys: the same Segment message always yields the same keys.

A key is the UUIDv5 of `"{messageId}:{index}"` in `MESSAGE_NAMESPACE` (index = the request's
position in the outcome). A `messageId` may be a non-empty string or an integer (its decimal
string). Without one, the name is the SHA-256 of the event's canonical JSON (orjson, sorted keys)
in a second namespace, so it can never collide with a real messageId. An event that orjson cannot
encode (integers beyond 64 bits, nesting beyond 255 levels: never produced by the decoders) is
hashed through the text of its requests instead, which is still deterministic.

The key depends on nothing else: changing the destination settings and replaying a message within
FullStory's 24-hour idempotency window sends a different body under the same key, which FullStory
rejects; replay after the window, or keep the settings.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence

import orjson

MESSAGE_NAMESPACE = uuid.UUID("5b1f8c0e-7d0a-5f7e-9c55-3f2b6a1d4e10")
HASH_NAMESPACE = uuid.UUID("9e3c2a41-0b7d-5c7a-8a7e-6d0f1b2c3d4e")
_MESSAGE_NS = MESSAGE_NAMESPACE.bytes
_HASH_NS = HASH_NAMESPACE.bytes
_CANONICAL = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def _uuid5(namespace: bytes, name: str) -> str:
    """uuid.uuid5(namespace, name) as a string, without building UUID objects (hot path)."""
    digest = bytearray(
        hashlib.sha1(
            namespace + name.encode("utf-8", "surrogatepass"), usedforsecurity=False
        ).digest()[:16]
    )
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    text = digest.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


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


def idempotency_keys(
    event: dict[str, object], requests: Sequence[tuple[str, str, object]]
) -> list[str]:
    """One key per request (method, path, body) of `event`, in order."""
    base = message_id(event)
    if base is not None:
        return [_uuid5(_MESSAGE_NS, f"{base}:{index}") for index in range(len(requests))]
    try:
        canonical = orjson.dumps(event, option=_CANONICAL)
    except (TypeError, orjson.JSONEncodeError):
        canonical = repr(list(requests)).encode("utf-8", "surrogatepass")
    digest = hashlib.sha256(canonical).hexdigest()
    return [_uuid5(_HASH_NS, f"{digest}:{index}") for index in range(len(requests))]
