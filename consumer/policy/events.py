"""Which server events are sent: the `events` rules (policy-spec.md, "`events`"), compiled once.

The rules act on a FullStory event request's `name` (after the mapping and its page rules) and on
a sampling key; users (identify, group) and deletes never reach them. Standard library only, so
the settings module can build them without an import cycle.

API (`rules = EventsRules(include, exclude, sample)`, e.g. `settings.events.rules`):
- `rules.decide_name(name)` → `"event_not_included"`, `"event_excluded"`, `"sampled_out"` (rate
  0), None (send: no sample pattern, or rate 1), or `SAMPLE` (the answer depends on the key: call
  `decide`). The name's answer is remembered, so a repeated excluded name costs one dict lookup;
  the mapping calls it before building the request body, so an excluded event skips that work.
- `rules.decide(name, key)` → None (send) or the skip reason, for any name.
- `rules.rate(name)` → the sampling rate the name's first matching pattern gives (1 without one),
  for reports (`budget estimate`).
- `sample_key(uid, anonymous_id, message_id)` → the key the spec samples on.

Choices the spec leaves open: keys are encoded UTF-8 with `surrogatepass` (the same bytes as
`.encode()` for every string that has them, and no crash on a lone surrogate); an event with no
key at all samples on "" (the mapping never produces one: track/page/screen need an identity).
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from collections.abc import Sequence

NOT_INCLUDED = "event_not_included"
EXCLUDED = "event_excluded"
SAMPLED_OUT = "sampled_out"
SAMPLE = "sample"  # decide_name's "depends on the sampling key"
CACHE_SIZE = 4096
_SCALE = 2**64

# A name's verdict: (skip reason or None, the sample pattern that decides it, rate * 2**64).
_Verdict = tuple[str | None, str, float]
_SEND: _Verdict = (None, "", float(_SCALE))


def _any_of(patterns: Sequence[str]) -> re.Pattern[str] | None:
    """One regex matching a whole name iff some pattern matches it (fnmatchcase), or None."""
    if not patterns:
        return None
    return re.compile("|".join(fnmatch.translate(pattern) for pattern in patterns))


def sample_key(uid: str | None, anonymous_id: str | None, message_id: str | None) -> str:
    """The request's user.uid, else the event's anonymousId, else its messageId (else "")."""
    return uid or anonymous_id or message_id or ""


def _hash_position(pattern: str, key: str) -> int:
    """Where `key` falls in [0, 2**64) for `pattern`: the same on every member, for ever."""
    digest = hashlib.sha256(f"{pattern}\x00{key}".encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big")


class EventsRules:
    """Compiled `include` / `exclude` / `sample` rules with a bounded per-name decision cache."""

    __slots__ = ("_exclude", "_include", "_sample", "_verdicts")

    def __init__(
        self,
        include: Sequence[str] = ("*",),
        exclude: Sequence[str] = (),
        sample: Sequence[tuple[str, float]] = (),
    ) -> None:
        self._include = _any_of(include)
        self._exclude = _any_of(exclude)
        self._sample = tuple(
            (re.compile(fnmatch.translate(pattern)), pattern, rate * _SCALE)
            for pattern, rate in sample
        )
        self._verdicts: dict[str, _Verdict] = {}

    def _verdict(self, name: str) -> _Verdict:
        verdict = self._verdicts.get(name)
        if verdict is None:
            if len(self._verdicts) >= CACHE_SIZE:
                self._verdicts.clear()  # names are few in practice; a flood only costs misses
            verdict = self._verdicts[name] = self._judge(name)
        return verdict

    def _judge(self, name: str) -> _Verdict:
        if self._include is None or self._include.match(name) is None:
            return (NOT_INCLUDED, "", 0.0)
        if self._exclude is not None and self._exclude.match(name) is not None:
            return (EXCLUDED, "", 0.0)
        for regex, pattern, threshold in self._sample:  # file order: the first match wins
            if regex.match(name) is not None:
                return (None, pattern, threshold)
        return _SEND

    def decide_name(self, name: str) -> str | None:
        """What the name alone decides: a skip reason, None (send), or SAMPLE (ask `decide`)."""
        reason, _, threshold = self._verdict(name)
        if reason is not None:
            return reason
        if threshold >= _SCALE:  # every 64-bit position is below it
            return None
        return SAMPLED_OUT if threshold <= 0 else SAMPLE

    def rate(self, name: str) -> float:
        """The share of keys whose `name` events sampling keeps (1 when no pattern matches); for
        a name that `include` / `exclude` skip, ask `decide_name` first."""
        return min(self._verdict(name)[2] / _SCALE, 1.0)

    def decide(self, name: str, key: str) -> str | None:
        """None to send the event named `name` for sampling key `key`, else the skip reason."""
        reason, pattern, threshold = self._verdict(name)
        if reason is not None:
            return reason
        if threshold >= _SCALE or _hash_position(pattern, key) < threshold:
            return None
        return SAMPLED_OUT
