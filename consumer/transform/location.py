"""ISO 3166 codes for `context.location`: FullStory takes `country` as an ISO 3166-1 alpha-2 code
and `region` as an ISO 3166-2 code, while Segment events usually carry names.

Accepted, case- and accent-insensitively (whitespace runs count as one space):
- country: an alpha-2 or alpha-3 code; pycountry's `name`, `official_name` or `common_name`; or one
  of `COUNTRY_ALIASES`. Sent as the alpha-2 code.
- region, only within the resolved country: the full ISO 3166-2 code (`US-CA`) or its part after
  the country (`CA`); the subdivision's ISO name or pycountry's English translation of it
  (`Bayern`, `Bavaria`), also each half of a bracketed name (`Catalunya [Cataluña]`). Sent as the
  part after the country (`CA`), as FullStory's own example (`GA`) writes it.
A name two subdivisions of a country share resolves to the top-level one (a state, not a county);
still shared, it is unknown. No fuzzy matching: a near-miss is unknown, and unknown values are
left out rather than sent wrong.

The tables are built once, at the first lookup (pycountry's subdivisions take ~0.1 s to load);
each distinct input string is resolved once and remembered, so an event pays a dict lookup.
"""

from __future__ import annotations

import gettext
import re
import unicodedata
from collections import defaultdict
from functools import cache
from typing import TypeVar

import pycountry

# English names in common use that ISO 3166-1 spells otherwise ("UK" is ISO's own reservation).
COUNTRY_ALIASES = {
    "UK": "GB",
    "Great Britain": "GB",
    "Russia": "RU",
    "Turkey": "TR",
    "Ivory Coast": "CI",
    "Cape Verde": "CV",
    "Brunei": "BN",
    "Vatican City": "VA",
    "Palestine": "PS",
    "Macau": "MO",
    "Micronesia": "FM",
    "DR Congo": "CD",
    "Swaziland": "SZ",
    "Burma": "MM",
    "East Timor": "TL",
    "The Netherlands": "NL",
}
# No ISO country or subdivision name is this long: longer values are unknown without a lookup,
# and the memo never holds big strings.
MAX_NAME = 128
_MEMO_LIMIT = 4096
# "Lleida [Lérida]", "Bridgend [Pen-y-bont ar Ogwr GB-POG]": two names, the second's code dropped.
_BRACKETED = re.compile(r"(.+?) \[(.+?)(?: [A-Z]{2}-[A-Z0-9]+)?\]")
_SPACES = re.compile(r"\s+")
K = TypeVar("K")
_countries: dict[str, str] = {}  # input → alpha-2 code, "" when unknown
_regions: dict[tuple[str, str], str] = {}  # (country, input) → code after the country, or ""


def fold(text: str) -> str:
    """The form names are compared in: case, accents, apostrophe and spacing variants erased."""
    decomposed = unicodedata.normalize("NFKD", text.casefold().replace("\u2019", "'"))
    plain = "".join(char for char in decomposed if not unicodedata.combining(char))
    return _SPACES.sub(" ", plain).strip()


def _unique(names: dict[str, set[str]], codes: dict[str, str]) -> dict[str, str]:
    """`codes` plus each name that means exactly one code; a code wins over a like name."""
    table = dict(codes)
    for name, meant in names.items():
        if len(meant) == 1 and name not in table:
            table[name] = next(iter(meant))
    return table


@cache
def _country_table() -> dict[str, str]:
    codes: dict[str, str] = {}
    names: dict[str, set[str]] = defaultdict(set)
    for country in pycountry.countries:
        code: str = country.alpha_2
        codes[code.casefold()] = code
        codes[country.alpha_3.casefold()] = code
        for field in ("name", "official_name", "common_name"):
            name = getattr(country, field, None)
            if name:
                names[fold(name)].add(code)
    for alias, code in COUNTRY_ALIASES.items():
        names[fold(alias)].add(code)
    return _unique(names, codes)


def _names(name: str, english: str) -> set[str]:
    found = set()
    for text in (name, english):
        found.add(fold(text))
        bracketed = _BRACKETED.fullmatch(text)
        if bracketed:
            found.update(fold(part) for part in bracketed.groups())
    return found


@cache
def _region_tables() -> dict[str, dict[str, str]]:
    """Country → (folded code or name → the code's part after the country)."""
    english = gettext.translation(
        "iso3166-2", pycountry.LOCALES_DIR, languages=["en"], fallback=True
    ).gettext
    codes: dict[str, dict[str, str]] = defaultdict(dict)
    # country → name → (codes of top-level subdivisions, codes of the others)
    names: dict[str, dict[str, tuple[set[str], set[str]]]] = defaultdict(dict)
    for subdivision in pycountry.subdivisions:
        country: str = subdivision.country_code
        full: str = subdivision.code
        part = full.partition("-")[2]
        codes[country][full.casefold()] = part
        codes[country][part.casefold()] = part
        top = subdivision.parent_code is None
        for name in _names(subdivision.name, english(subdivision.name)):
            names[country].setdefault(name, (set(), set()))[0 if top else 1].add(part)
    return {
        country: _unique(
            {name: top or other for name, (top, other) in names[country].items()}, table
        )
        for country, table in codes.items()
    }


def _remember(memo: dict[K, str], key: K, code: str) -> str:
    if len(memo) >= _MEMO_LIMIT:
        memo.clear()
    memo[key] = code
    return code


def country_code(value: object) -> str | None:
    """The ISO 3166-1 alpha-2 code `value` names, or None when it names none."""
    if type(value) is not str:
        return None
    code = _countries.get(value)
    if code is None:
        found = _country_table().get(fold(value)) if len(value) <= MAX_NAME else None
        code = _remember(_countries, value, found or "")
    return code or None


def region_code(country: str, value: object) -> str | None:
    """The ISO 3166-2 code (the part after `country`) `value` names within `country`, or None."""
    if type(value) is not str:
        return None
    key = (country, value)
    code = _regions.get(key)
    if code is None:
        table = _region_tables().get(country) if len(value) <= MAX_NAME else None
        found = table.get(fold(value)) if table is not None else None
        code = _remember(_regions, key, found or "")
    return code or None
