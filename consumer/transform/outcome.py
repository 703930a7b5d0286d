"""What the transform decides for one Segment event: send requests, skip it, or reject it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Request:
    """One FullStory HTTP request; the key makes a redelivered event harmless."""

    method: str
    path: str
    body: dict[str, Any] | None
    idempotency_key: str


@dataclass(frozen=True, slots=True)
class Requests:
    """Send these requests, in order; the event is done when all are acknowledged.

    `dropped_properties`: dotted paths of user properties left out to stay within FullStory's
    500-property limit, so the consumer can count them and `transform` can show them.
    """

    requests: tuple[Request, ...]
    dropped_properties: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Skipped:
    """Deliberately not sent (a setting or the spec says so); its offset still counts as done."""

    reason: str


@dataclass(frozen=True, slots=True)
class Invalid:
    """The event cannot be mapped; it goes to the dead-letter topic with this reason."""

    reason: str


Outcome = Requests | Skipped | Invalid
