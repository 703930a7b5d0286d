"""The `transform` command's line format: what the running consumer would send, one line each;
with `explain`, each line also lists what the `privacy` rules did (path, action, rule; never a
value)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import orjson

from consumer.transform.mapping import transform_explained
from consumer.transform.outcome import Invalid, Outcome, Requests, Skipped
from consumer.transform.settings import DestinationSettings

_INT_MIN = -(2**63)
_UINT_MAX = 2**64 - 1


def _shown_message_id(event: object) -> object:
    """The event's messageId when it is a string or an integer JSON can carry, else None."""
    if not isinstance(event, dict):
        return None
    value = event.get("messageId")
    if type(value) is str:
        return value
    if type(value) is int and _INT_MIN <= value <= _UINT_MAX:
        return value
    return None


def outcome_to_json(event: object, outcome: Outcome) -> dict[str, object]:
    """The `transform` command's object for one event: requests (with `dropped_properties`
    when the 500-property cap left some out), skipped or error."""
    shown = _shown_message_id(event)
    if isinstance(outcome, Requests):
        shape: dict[str, object] = {
            "messageId": shown,
            "requests": [
                {
                    "method": request.method,
                    "path": request.path,
                    "body": request.body,
                    "idempotency_key": request.idempotency_key,
                }
                for request in outcome.requests
            ],
        }
        if outcome.dropped_properties:
            shape["dropped_properties"] = list(outcome.dropped_properties)
        return shape
    if isinstance(outcome, Skipped):
        return {"messageId": shown, "skipped": outcome.reason}
    return {"messageId": shown, "error": outcome.reason}


def transform_lines(
    lines: Iterable[str | bytes], settings: DestinationSettings, *, explain: bool = False
) -> Iterator[bytes]:
    """One JSON document per input line, in order, without a trailing newline (the caller
    writes the line separator); non-JSON → `invalid_json`. `explain` adds `"privacy"`."""
    for line in lines:
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            shape = outcome_to_json(None, Invalid("invalid_json"))
            if explain:
                shape["privacy"] = []
            yield orjson.dumps(shape)
            continue
        outcome, actions = transform_explained(event, settings)
        shape = outcome_to_json(event, outcome)
        if explain:
            shape["privacy"] = [
                {"path": act.path, "action": act.action, "rule": act.rule} for act in actions
            ]
        yield orjson.dumps(shape)
