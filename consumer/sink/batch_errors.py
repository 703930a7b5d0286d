"""Which items of a batch import job FullStory refused, from the job's `/errors` answers.

FullStory's error items carry `message`, `code` and the refused `user` / `event` echoed back, but
no position, and the echo is FullStory's parsed copy rather than the bytes sent: the OpenAPI
example adds `"schema": null, "type_conflicts": null` to each user. So an error is matched to the
items it could have come from, best evidence first:

1. `same`: the echo equals the item once null fields are dropped (numbers by value, timestamps by
   instant, key order ignored);
2. `contains`: the echo holds every field of the item, plus fields FullStory derived (an `id`);
3. `identity`: the fields that identify it agree (a user's `uid`; an event's `name`, `timestamp`
   and user).

An error whose candidates are several items it cannot tell apart, or that matches no item, or an
error FullStory counted but did not list, never lets an item count as imported: every candidate
(for an unmatched or missing error, every item not refused otherwise) is refused with a reason
that says so, and goes to the dead-letter topic. At-least-once wins over precision here: a
dead-lettered item can be replayed; an item wrongly counted as imported is lost.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from consumer.sink.client import Rejected

AMBIGUOUS = "batch_error_ambiguous"
UNMATCHED = "batch_error_unmatched"


@dataclass(frozen=True, slots=True)
class ErrorMapping:
    """Each item's outcome (None = imported), and how many errors could not be placed exactly."""

    results: list[Rejected | None]
    ambiguous: int  # errors that matched several items
    unmatched: int  # errors that matched none, or that FullStory counted but did not list


def _instant(text: str) -> datetime | None:
    if len(text) < 10 or not text[:4].isdigit() or text[4] != "-":
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _scalar_equal(sent: Any, echo: Any) -> bool:
    if isinstance(sent, bool) or isinstance(echo, bool):
        return sent is echo
    if isinstance(sent, int | float) and isinstance(echo, int | float):
        return sent == echo
    if isinstance(sent, str) and isinstance(echo, str):
        if sent == echo:
            return True
        a, b = _instant(sent), _instant(echo)
        return a is not None and b is not None and a.tzinfo is not None and a == b
    return bool(sent == echo)


def _equal(sent: Any, echo: Any, *, extra_ok: bool) -> bool:
    """`sent` and `echo` agree; with `extra_ok` the echo may also hold non-null fields the item
    did not have (at any depth)."""
    if isinstance(sent, dict):
        if not isinstance(echo, dict):
            return False
        for key, value in sent.items():
            other = echo.get(key)
            if value is None or other is None:
                if (value is None) != (other is None):
                    return False
            elif not _equal(value, other, extra_ok=extra_ok):
                return False
        return extra_ok or all(echo[k] is None or k in sent for k in echo)
    if isinstance(sent, list):
        return (
            isinstance(echo, list)
            and len(sent) == len(echo)
            and all(_equal(a, b, extra_ok=extra_ok) for a, b in zip(sent, echo, strict=True))
        )
    return _scalar_equal(sent, echo)


def _same(sent: Any, echo: Any) -> bool:
    return _equal(sent, echo, extra_ok=False)


def _contains(sent: Any, echo: Any) -> bool:
    return _equal(sent, echo, extra_ok=True)


def _identity(kind: str) -> Callable[[Any, Any], bool]:
    fields = ("uid",) if kind == "users" else ("name", "timestamp", "user")

    def agree(sent: Any, echo: Any) -> bool:
        if not isinstance(sent, dict) or not isinstance(echo, dict):
            return False
        present = [f for f in fields if sent.get(f) is not None]
        return bool(present) and all(_contains(sent[f], echo.get(f)) for f in present)

    return agree


def _candidates(kind: str, bodies: Sequence[Any], echo: Any) -> list[int]:
    """The items `echo` may stand for, at the best tier at which any matches."""
    if echo is None:
        return []
    for tier in (_same, _contains, _identity(kind)):
        found = [i for i, body in enumerate(bodies) if tier(body, echo)]
        if found:
            return found
    return []


def _rejected(error: dict[str, Any]) -> Rejected:
    return Rejected(400, str(error.get("code", "unknown")), str(error.get("message", ""))[:500])


def map_errors(
    kind: str,
    bodies: Sequence[Any],
    errors: Sequence[dict[str, Any]],
    expected: int | None = None,
) -> ErrorMapping:
    """Each item's outcome from a finished job's error items. `expected` is the job status's
    `errors` count: errors it counts beyond those listed refuse every item not refused yet."""
    label = "user" if kind == "users" else "event"
    results: list[Rejected | None] = [None] * len(bodies)
    open_errors: list[tuple[dict[str, Any], list[int]]] = []
    unmatched: list[dict[str, Any]] = []
    for error in errors:
        candidates = _candidates(kind, bodies, error.get(label))
        if candidates:
            open_errors.append((error, candidates))
        else:
            unmatched.append(error)
    # An error with one candidate left takes it; errors sharing a candidate set at least as
    # large as their number take all of it. Repeat, as each placement narrows the others.
    progress = True
    while progress and open_errors:
        progress = False
        groups: dict[tuple[int, ...], list[dict[str, Any]]] = {}
        for error, candidates in open_errors:
            left = tuple(i for i in candidates if results[i] is None)
            groups.setdefault(left, []).append(error)
        open_errors = []
        for left, group in groups.items():
            if not left:
                progress = True  # its item is refused already (a repeated error)
            elif len(group) >= len(left):
                for i, error in zip(left, group, strict=False):
                    results[i] = _rejected(error)
                progress = True
            else:
                open_errors.extend((error, list(left)) for error in group)
    for error, candidates in open_errors:
        for i in candidates:
            if results[i] is None:
                found = _rejected(error)
                results[i] = Rejected(
                    400,
                    AMBIGUOUS,
                    f"FullStory refused one of {len(candidates)} items of a batch import that "
                    f"its error answer cannot tell apart, so none counts as imported "
                    f"({found.code}: {found.message})",
                )
    missing = len(unmatched) + max(0, (expected or 0) - len(errors))
    if missing:
        detail = "; ".join(f"{e.get('code', 'unknown')}: {e.get('message', '')}" for e in unmatched)
        for i, result in enumerate(results):
            if result is None:
                results[i] = Rejected(
                    400,
                    UNMATCHED,
                    f"FullStory refused {missing} item(s) of a batch import that its error answer "
                    f"does not identify, so no item without an error of its own counts as "
                    f"imported" + (f" ({detail[:300]})" if detail else ""),
                )
    return ErrorMapping(results, len(open_errors), missing)
