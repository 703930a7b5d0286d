"""Property normalisation: Segment traits/properties → FullStory v2 properties and schema.

Rules (mapping-spec.md, "Property normalisation"), applied key by key, recursively:
type suffix → name cleaning → value → dotted-path limit → declared type into the schema.

Choices the spec leaves open:
- Suffixes are matched case-sensitively (`count_INT` keeps its name: `count_INT`).
- "The later key wins" among keys whose value survives: a later key whose value is dropped
  (NaN, too long a path, ...) does not erase an earlier one. A winner replaces the earlier value
  and every schema entry under it; it moves to the end of the object.
- A declared suffix type is not written for an object value (an object has no scalar type);
  the object's own members still declare theirs.
- Arrays of numbers containing NaN or infinity are dropped, like a NaN scalar.
- Integers outside the signed 64-bit range are dropped (FullStory's `int` is 64-bit and a float
  would silently lose digits); arrays holding one are dropped too.
- String elements of arrays are cut to 8192 bytes each, like string values.
- Objects nested deeper than `MAX_DEPTH` levels are dropped, so that every body stays within the
  nesting limit of JSON encoders (orjson refuses more than 255 levels).
- Values that are not JSON types (never produced by the decoders) are converted when they are
  subclasses of a JSON type, tuples count as arrays, anything else is dropped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from itertools import chain
from math import isfinite
from typing import Any

import orjson

from consumer.transform.timestamps import MIN_DATETIME_LEN as _MIN_DATETIME_LEN
from consumer.transform.timestamps import is_datetime

MAX_VALUE_BYTES = 8192
MAX_PATH = 512
MAX_DEPTH = 128
MAX_USER_PROPERTIES = 500  # FullStory's users API: "Up to 500 unique properties", maxProperties
INT_MIN = -(2**63)
INT_MAX = 2**63 - 1
SUFFIX_TYPES: dict[str, str | None] = {
    "str": "str",
    "int": "int",
    "real": "real",
    "bool": "bool",
    "date": "date",
    "strs": "strs",
    "ints": "ints",
    "reals": "reals",
    "bools": "bools",
    "dates": "dates",
    "obj": None,
    "objs": None,
}
_NOT_NAME = re.compile(r"[^A-Za-z0-9_]+").sub
_NAME_CACHE: dict[str, tuple[str, str | None]] = {}
_NAME_CACHE_LIMIT = 16384
_DROP = object()
_PLAIN_TYPES = frozenset((str, int, float, bool, dict, list, type(None)))
# A str of n code points is at most 4n UTF-8 bytes: shorter ones never need encoding.
SAFE_TEXT_LEN = MAX_VALUE_BYTES // 4

Schema = dict[str, str]


def cut_text(text: str) -> str:
    """`text` cut to 8192 UTF-8 bytes on a character boundary."""
    if len(text) <= SAFE_TEXT_LEN:
        return text
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) <= MAX_VALUE_BYTES:
        return text
    return raw[:MAX_VALUE_BYTES].decode("utf-8", "ignore")


def _clean(key: str) -> tuple[str, str | None]:
    declared = None
    cut = key.rfind("_")
    if cut > 0:
        suffix = key[cut + 1 :]
        if suffix in SUFFIX_TYPES:
            declared = SUFFIX_TYPES[suffix]
            key = key[:cut]
    name = _NOT_NAME("", key)
    if name and not ("A" <= name[0] <= "Z" or "a" <= name[0] <= "z"):
        name = "p_" + name
    return name, declared


def clean_key(key: str) -> tuple[str, str | None]:
    """(final name, declared type); an empty name means the property is dropped. Cached."""
    entry = _NAME_CACHE.get(key)
    if entry is None:
        if len(_NAME_CACHE) >= _NAME_CACHE_LIMIT:
            _NAME_CACHE.clear()
        entry = _NAME_CACHE[key] = _clean(key)
    return entry


def _array(items: list[Any]) -> tuple[object, str | None]:
    """(normalised array or _DROP, inferred type); one pass per array kind."""
    if not items:
        return [], None
    first = type(items[0])
    if first is str:
        long_item = False
        dates = True
        for item in items:
            if type(item) is not str:
                break
            if len(item) > SAFE_TEXT_LEN:
                long_item = True
            if dates and not (
                len(item) >= _MIN_DATETIME_LEN and item[10] == "T" and is_datetime(item)
            ):
                dates = False
        else:
            if long_item:
                out = [cut_text(item) for item in items]
                dates = all(is_datetime(item) for item in out)
            else:
                out = list(items)
            return out, "dates" if dates else None
    elif first is bool:
        for item in items:
            if type(item) is not bool:
                break
        else:
            return list(items), None
    elif first is int or first is float:
        only_ints = True
        representable = True
        for item in items:
            kind = type(item)
            if kind is int:
                if not INT_MIN <= item <= INT_MAX:
                    representable = False
            elif kind is float:
                only_ints = False
                if not isfinite(item):
                    representable = False
            else:
                break
        else:
            if not representable:
                return _DROP, None
            return list(items), "ints" if only_ints else None
    try:
        text = orjson.dumps(items, option=orjson.OPT_NON_STR_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        return _DROP, None
    if len(text) > MAX_VALUE_BYTES:
        return _DROP, None
    return text.decode(), None


def _plain(value: object) -> object:
    """A subclass of a JSON type as the plain type; anything else as _DROP."""
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, list | tuple):
        return list(value)
    return _DROP


def _forget(out: dict[str, Any], schema: Schema, name: str, path: str) -> None:
    """Remove an earlier value of `name` and everything it declared."""
    del out[name]
    schema.pop(path, None)
    nested = path + "."
    for declared_path in [p for p in schema if p.startswith(nested)]:
        del schema[declared_path]


def _object(
    items: Iterable[tuple[Any, object]], prefix: str, schema: Schema, depth: int
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    cache = _NAME_CACHE
    for key, raw in items:
        entry = cache.get(key)
        if entry is None:
            if not isinstance(key, str):
                continue
            entry = clean_key(key)
        name, declared = entry
        if not name:
            continue
        path = prefix + name if prefix else name
        if len(path) > MAX_PATH:
            continue
        value: Any = raw
        kind = type(value)
        if kind not in _PLAIN_TYPES:
            value = _plain(value)
            if value is _DROP:
                continue
            kind = type(value)
        inferred: str | None = None
        if kind is str:
            if len(value) > SAFE_TEXT_LEN:
                value = cut_text(value)
            if len(value) >= _MIN_DATETIME_LEN and value[10] == "T" and is_datetime(value):
                inferred = "date"
        elif kind is float:
            if not isfinite(value):
                continue
        elif kind is int:
            if not INT_MIN <= value <= INT_MAX:
                continue
            inferred = "int"
        elif kind is dict:
            if depth >= MAX_DEPTH:
                continue
            if name in out:
                _forget(out, schema, name, path)
            out[name] = _object(value.items(), path + ".", schema, depth + 1)
            continue
        elif kind is list:
            value, inferred = _array(value)
            if value is _DROP:
                continue
        # bool and None pass through with no declared type.
        if name in out:
            _forget(out, schema, name, path)
        out[name] = value
        if declared is not None:
            schema[path] = declared
        elif inferred is not None:
            schema[path] = inferred
    return out


def normalise(
    source: object,
    *,
    skip: frozenset[str] = frozenset(),
    extra: tuple[tuple[str, object], ...] = (),
    prefix: str = "",
    schema: Schema | None = None,
) -> tuple[dict[str, Any], Schema]:
    """Normalise an object of properties: (properties, schema.properties entries).

    `skip` removes top-level keys before normalisation; `extra` appends top-level keys after
    the source's own (so they win over same-named ones); `prefix` is the dotted path of where
    the object will sit in the body (group traits sit under `group.`); entries are added to
    `schema` when given.
    """
    if schema is None:
        schema = {}
    # `type is dict` first: the ABC check costs more than the rest of an empty call.
    items: Iterable[tuple[Any, object]] = (
        source.items() if type(source) is dict or isinstance(source, Mapping) else ()
    )
    if skip:
        items = [(key, value) for key, value in items if key not in skip]
    if extra:
        items = chain(items, extra)
    depth = prefix.count(".") + 1 if prefix else 1
    return _object(items, prefix, schema, depth), schema


def _leaf_count(properties: dict[str, Any]) -> int:
    """Properties as FullStory counts them: every dotted leaf path, an empty object as one."""
    count = len(properties)
    for value in properties.values():
        if type(value) is dict and value:  # flat properties only pay this test
            count += _leaf_count(value) - 1
    return count


def _leaf_paths(properties: dict[str, Any], prefix: str, out: list[str]) -> None:
    for name, value in properties.items():
        path = prefix + name
        if type(value) is dict and value:
            _leaf_paths(value, path + ".", out)
        else:
            out.append(path)


def leaf_paths(properties: dict[str, Any]) -> list[str]:
    """The dotted leaf paths of mapped properties: the names FullStory counts, in order."""
    out: list[str] = []
    _leaf_paths(properties, "", out)
    return out


def _without(properties: dict[str, Any], prefix: str, dropped: set[str]) -> dict[str, Any]:
    """`properties` less the `dropped` leaf paths, in their order; emptied objects go too."""
    out: dict[str, Any] = {}
    for name, value in properties.items():
        path = prefix + name
        if type(value) is dict and value:
            kept = _without(value, path + ".", dropped)
            if kept:
                out[name] = kept
        elif path not in dropped:
            out[name] = value
    return out


def cap_user_properties(
    properties: dict[str, Any], schema: Schema, keep: frozenset[str]
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """At most `MAX_USER_PROPERTIES` leaf properties, or FullStory refuses the whole user.

    Counting leaf paths, not top-level names, satisfies both readings of the limit. The kept ones
    are the top-level scalars named in `keep` (the mapping's own: they identify the user or
    group), then the first leaf paths in code-point order: the same event keeps the same ones
    whatever its key order. Dropped paths leave `schema` too. Returns (properties, dropped
    paths in order).
    """
    if len(properties) <= MAX_USER_PROPERTIES and _leaf_count(properties) <= MAX_USER_PROPERTIES:
        return properties, ()
    paths = sorted(path for path in leaf_paths(properties) if path not in keep)
    dropped = paths[MAX_USER_PROPERTIES - len(keep.intersection(properties)) :]
    for path in dropped:
        schema.pop(path, None)
    return _without(properties, "", set(dropped)), tuple(dropped)
