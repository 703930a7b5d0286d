"""What may leave: the `privacy` rules (policy-spec.md, "`privacy`"), compiled once.

They act on the Segment event before the mapping, so every later stage (the mapping, the batch
and realtime sinks, `transform`, `budget estimate`) only ever sees the protected event. Standard
library only, so the settings module can build them without an import cycle.

API (`rules = PrivacyRules(drop, redact, hash, allow, detect, key)`, e.g.
`settings.privacy.rules`):
- `rules.apply(event)` → `(protected event, actions)`; `actions` is a tuple of
  `Action(path, action, rule)` naming what was done where and by which rule, never a value. The
  input is never changed: a changed object is copied, an untouched one is shared.
- `hmac_hex(key, value)` → the spec's `hash` of one value.

Speed (docs/benchmarks.md): with only detectors, a root is first scanned without building paths
or copying, through a prefilter (an `in` test for `@`, one cheap regex on strings of 13 or more
characters); only a root with a candidate is walked with paths, and only candidates get the exact
e-mail regex and the Luhn check. Path verdicts are cached per path, as `events` caches names.

Choices the spec leaves open:
- Paths start one level below a root (`traits.plan`, not `traits`), so no pattern removes a root
  object itself; `context.traits` is a path under `context` and a root of its own.
- An array's elements have the array's own path (`properties.items.sku` is the `sku` of every
  object in `properties.items`), since an index means nothing in a glob.
- Inside a value that `hash` matches, stronger rules (`drop`, `redact`) on paths below are applied
  first and the result is hashed; other `hash` patterns and detectors there are not (the whole
  value is hashed anyway).
- `allow` keeps an object whose own path matches nothing when some path below it matches
  (`company.name` keeps `{"company": {"name": ...}}`); an object or array left empty by it is
  removed. Keys it removes are reported as `drop` by rule `allow.traits` / `allow.properties`.
- Detectors look at string values only (not keys, not numbers). A card candidate is a maximal run
  of digits joined by single spaces or dashes; the run, and each part of it that starts and ends
  at a separator or the run's end, is Luhn-checked when it holds 13 to 19 digits.
- When both detectors find something in one string, the stronger action wins.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

DROP = "drop"
REDACT = "redact"
HASH = "hash"
ACTIONS = (DROP, REDACT, HASH)  # strongest first
DETECTORS = ("email", "card")
ALLOW_ROOTS = ("traits", "properties")
REDACTED = "[redacted]"
CACHE_SIZE = 4096
_STRENGTH = {DROP: 0, REDACT: 1, HASH: 2}
_EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}"
)
# The prefilter: 13 or more digits joined by at most single separators (Luhn runs only on these).
_CARD_RUN = re.compile(r"\d(?:[ -]?\d){12,}")
_SEPARATOR = re.compile(r"[ -]")
# What a string must hold before the card detector looks at it: 13 or more digits, spaces or
# dashes from a digit to a digit (a cheap superset of `_CARD_RUN`, which backtracks more).
_CARD_CANDIDATE = re.compile(r"[0-9][0-9 -]{11,}[0-9]")
_DETECTED_ROOTS = ("traits", "properties")  # and context.traits, inside context


class Action(NamedTuple):
    """One rule applied at one path: what `--explain` shows and the metrics count."""

    path: str
    action: str
    rule: str


def hmac_hex(key: bytes, value: object) -> str:
    """Lowercase hex HMAC-SHA256 of the string, or of any other value's compact sorted JSON."""
    text = (
        value
        if type(value) is str
        else json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    )
    return hmac.new(key, text.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def luhn(digits: str) -> bool:
    """The Luhn check digit test of a string of ASCII digits."""
    total = 0
    for i, char in enumerate(reversed(digits)):
        digit = ord(char) - 48
        if i % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def has_card(text: str) -> bool:
    """Whether `text` holds a payment card number (13-19 digits passing Luhn)."""
    for run in _CARD_RUN.finditer(text):
        parts = _SEPARATOR.split(run.group())
        for start in range(len(parts)):
            digits = ""
            for part in parts[start:]:
                digits += part
                if len(digits) > 19:
                    break
                if len(digits) >= 13 and luhn(digits):
                    return True
    return False


def has_email(text: str) -> bool:
    """Whether `text` holds an e-mail address (`local@domain.tld`)."""
    return "@" in text and _EMAIL.search(text) is not None


def _any_of(patterns: Sequence[str]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(fnmatch.translate(pattern) for pattern in patterns))


class _Globs:
    """Patterns of one rule with a bounded per-path cache of the first matching pattern."""

    __slots__ = ("_any", "_cache", "_each")

    def __init__(self, patterns: Sequence[str]) -> None:
        self._any = _any_of(patterns)
        self._each = tuple((re.compile(fnmatch.translate(p)), p) for p in patterns)
        self._cache: dict[str, str | None] = {}

    def first(self, path: str) -> str | None:
        """The first pattern matching the whole path, or None."""
        cache = self._cache
        if path in cache:
            return cache[path]
        found = None
        if self._any is not None and self._any.match(path) is not None:
            found = next(p for regex, p in self._each if regex.match(path) is not None)
        if len(cache) >= CACHE_SIZE:
            cache.clear()
        cache[path] = found
        return found


_Verdict = tuple[str, str] | None  # (action, rule)


class PrivacyRules:
    """Compiled `drop` / `redact` / `hash` / `allow` / `detect` rules and the HMAC key."""

    __slots__ = (
        "_allow",
        "_cache",
        "_card",
        "_detect",
        "_email",
        "_key",
        "_paths",
        "_rules",
        "_scan",
    )

    def __init__(
        self,
        drop: Sequence[str] = (),
        redact: Sequence[str] = (),
        hash: Sequence[str] = (),
        allow: Mapping[str, Sequence[str]] | None = None,
        detect: Mapping[str, str] | None = None,
        key: bytes | None = None,
    ) -> None:
        if key is None and (hash or HASH in (detect or {}).values()):
            raise ValueError("a hash rule needs the HMAC key")
        self._key = key or b""
        self._rules = tuple(
            (action, _Globs(patterns))
            for action, patterns in ((DROP, drop), (REDACT, redact), (HASH, hash))
            if patterns
        )
        self._paths = bool(self._rules)
        self._allow = {root: _Globs(patterns) for root, patterns in (allow or {}).items()}
        self._detect = tuple(sorted((detect or {}).items(), key=lambda kv: _STRENGTH[kv[1]]))
        # The prefilter, per string leaf: an `in` test, and one C-level search on strings long
        # enough for a card; the detectors proper run only on its hits.
        kinds = dict(self._detect)
        self._email = "email" in kinds
        self._card = _CARD_CANDIDATE.search if "card" in kinds else None
        self._scan = bool(kinds)
        self._cache: dict[str, _Verdict] = {}

    def __repr__(self) -> str:  # never the key
        return "PrivacyRules(...)"

    def apply(self, event: dict[str, Any]) -> tuple[dict[str, Any], tuple[Action, ...]]:
        """The event with every rule applied, and what was done; `event` itself is unchanged."""
        acts: list[Action] = []
        changed: dict[str, Any] = {}
        paths, scan, allow = self._paths, self._scan, self._allow
        for root in _DETECTED_ROOTS:
            value = event.get(root)
            if type(value) is not dict or not value:
                continue
            new = value
            globs = allow.get(root) if allow else None
            if globs is not None:
                new = self._allowed(new, "", globs, root, f"allow.{root}", acts)
            if paths or (scan and self._suspect_root(new, root)):
                new = self._walk(new, root, True, False, acts)
            if new is not value:
                changed[root] = new
        context = event.get("context")
        if type(context) is dict and (paths or type(context.get("traits")) is dict):
            new = self._context(context, acts)
            if new is not context:
                changed["context"] = new
        done = tuple(acts) if acts else _NONE
        return ({**event, **changed} if changed else event), done

    def _context(self, context: dict[str, Any], acts: list[Action]) -> dict[str, Any]:
        """`context` with `allow.traits` on its traits, the path rules on all of it and the
        detectors on its traits; without path rules only its traits are visited."""
        traits = context.get("traits")
        if type(traits) is dict:
            globs = self._allow.get("traits")
            new = traits
            if globs is not None:
                new = self._allowed(traits, "", globs, "context.traits", "allow.traits", acts)
            if not self._paths and self._scan and self._suspect_root(new, "context.traits"):
                new = self._walk(new, "context.traits", True, False, acts)
            if new is not traits:
                context = {**context, "traits": new}
        if self._paths:
            context = self._walk(context, "context", False, False, acts)
        return context

    def _allowed(
        self,
        obj: dict[str, Any],
        relative: str,
        globs: _Globs,
        path: str,
        rule: str,
        acts: list[Action],
    ) -> dict[str, Any]:
        """`obj` keeping only the keys whose path relative to the root matches (or holds one)."""
        out: dict[str, Any] = {}
        changed = False
        for key, value in obj.items():
            rel = f"{relative}{key}"
            full = f"{path}.{key}"
            if globs.first(rel) is not None:
                out[key] = value
                continue
            kept = self._allowed_inner(value, rel, globs, full, rule, acts)
            if kept is None:
                changed = True
                acts.append(Action(full, DROP, rule))
            else:
                changed = changed or kept is not value
                out[key] = kept
        return out if changed else obj

    def _allowed_inner(
        self, value: object, rel: str, globs: _Globs, full: str, rule: str, acts: list[Action]
    ) -> object:
        """The part of an unmatched value that `allow` keeps, or None for nothing."""
        if type(value) is dict:
            return self._allowed(value, f"{rel}.", globs, full, rule, acts) or None
        if type(value) is list:
            items = [self._allowed_inner(item, rel, globs, full, rule, acts) for item in value]
            kept = [item for item in items if item is not None]
            if len(kept) < len(items) and kept:
                acts.append(Action(full, DROP, rule))  # some elements, not the whole array
            return kept or None
        return None

    def _verdict(self, path: str) -> _Verdict:
        cache = self._cache
        if path in cache:
            return cache[path]
        verdict: _Verdict = None
        for action, globs in self._rules:  # strongest first
            pattern = globs.first(path)
            if pattern is not None:
                verdict = (action, f"{action}:{pattern}")
                break
        if len(cache) >= CACHE_SIZE:
            cache.clear()
        cache[path] = verdict
        return verdict

    def _suspect(self, values: Iterable[object], email: bool) -> bool:
        """Whether a string among `values` (or below them) passes the prefilter: the detectors'
        fast path, with no paths built and nothing copied (most events have nothing to find).
        `email`: whether the e-mail detector counts here."""
        card = self._card
        for value in values:
            if type(value) is str:
                if (email and "@" in value) or (
                    card is not None and len(value) >= 13 and card(value) is not None
                ):
                    return True
            elif type(value) is dict:
                if self._suspect(value.values(), email):
                    return True
            elif type(value) is list and self._suspect(value, email):
                return True
        return False

    def _suspect_root(self, obj: dict[str, Any], root: str) -> bool:
        """`_suspect` on a root's values; `traits.email` is exempt from the e-mail detector."""
        exempt = obj.get("email") if root == "traits" and self._email else None
        if type(exempt) is not str:
            return self._suspect(obj.values(), self._email)
        rest = [value for key, value in obj.items() if key != "email"]
        return self._suspect(rest, True) or self._suspect((exempt,), False)

    def _walk(
        self, obj: dict[str, Any], path: str, detect: bool, hashing: bool, acts: list[Action]
    ) -> dict[str, Any]:
        """`obj` (at `path`) with the path rules and, where `detect`, the detectors applied.

        `hashing`: inside a value about to be hashed, where only `drop` and `redact` count.
        A child's path is only built when a rule may need it (the detectors' common case, a
        string with nothing to find, builds none).
        """
        out: dict[str, Any] | None = None
        paths = self._paths
        scan = detect and not hashing and self._scan
        email, card = self._email, self._card
        for key, value in obj.items():
            kind = type(value)
            if paths or kind is dict or kind is list:
                child = f"{path}.{key}"
                new = self._value(value, child, detect or child == "context.traits", hashing, acts)
            elif (
                scan
                and kind is str
                and (
                    (email and "@" in value)
                    or (card is not None and len(value) >= 13 and card(value) is not None)
                )
            ):
                new = self._detected(value, f"{path}.{key}", acts)
            else:
                continue
            if new is not value:
                if out is None:
                    out = dict(obj)
                if new is _GONE:
                    del out[key]
                else:
                    out[key] = new
        return obj if out is None else out

    def _value(
        self, value: object, path: str, detect: bool, hashing: bool, acts: list[Action]
    ) -> object:
        """One value at `path` as it leaves, or _GONE when it is dropped."""
        if self._paths:
            verdict = self._verdict(path)
            if verdict is not None and not (hashing and verdict[0] == HASH):
                return self._act(value, path, verdict[0], verdict[1], acts)
        if type(value) is str:
            return self._detected(value, path, acts) if detect and not hashing else value
        if type(value) is dict:
            return self._walk(value, path, detect, hashing, acts)
        if type(value) is list:
            items = [self._value(item, path, detect, hashing, acts) for item in value]
            if all(new is old for new, old in zip(items, value, strict=True)):
                return value
            return [item for item in items if item is not _GONE]
        return value

    def _detected(self, text: str, path: str, acts: list[Action]) -> object:
        """A string leaf with the strongest detector that finds something applied."""
        for name, action in self._detect:  # strongest action first
            if name == "card":
                if has_card(text):
                    return self._act(text, path, action, "detect.card", acts)
            elif "@" in text and path != "traits.email" and has_email(text):
                return self._act(text, path, action, "detect.email", acts)
        return text

    def _act(self, value: object, path: str, action: str, rule: str, acts: list[Action]) -> object:
        acts.append(Action(path, action, rule))
        if action == DROP:
            return _GONE
        if action == REDACT:
            return REDACTED
        # Stronger rules below a hashed object or array first (`hashing`), then the hash.
        inner = self._value(value, path, False, True, acts) if type(value) in _CONTAINERS else value
        return hmac_hex(self._key, inner)


_GONE = object()  # a dropped value's marker
_NONE: tuple[Action, ...] = ()
_CONTAINERS = (dict, list)
