"""`context.location`: ISO 3166 country and region codes from Segment's names or codes."""

from __future__ import annotations

from typing import Any

import pycountry
import pytest

from consumer.transform import DestinationSettings, Requests, transform
from consumer.transform import location as loc
from consumer.transform.location import COUNTRY_ALIASES, MAX_NAME, country_code, region_code

DEFAULT = DestinationSettings()


def sent_location(location: object) -> Any:
    event = {"type": "track", "event": "E", "userId": "u", "context": {"location": location}}
    outcome = transform(event, DEFAULT)
    assert isinstance(outcome, Requests)
    body = outcome.requests[0].body
    assert body is not None
    return body.get("context", {}).get("location")


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("US", "US"),
        ("us", "US"),
        ("USA", "US"),
        ("deu", "DE"),
        ("Germany", "DE"),
        ("GERMANY", "DE"),
        ("United States", "US"),
        ("United States of America", "US"),  # official_name
        ("  united   kingdom ", "GB"),
        ("South Korea", "KR"),  # common_name
        ("Korea, Republic of", "KR"),
        ("Türkiye", "TR"),
        ("Turkiye", "TR"),
        ("Côte d\u2019Ivoire", "CI"),  # the typographic apostrophe
        ("cote d'ivoire", "CI"),
        ("UK", "GB"),  # aliases
        ("Russia", "RU"),
        ("Turkey", "TR"),
    ],
)
def test_country_codes_and_names(value: str, code: str) -> None:
    assert country_code(value) == code


def test_every_alias_names_a_current_country() -> None:
    """An alias must not shadow an ISO name, nor point at a code pycountry no longer has."""
    for alias, code in COUNTRY_ALIASES.items():
        assert country_code(alias) == code
        assert pycountry.countries.get(alpha_2=code) is not None
        assert pycountry.countries.get(name=alias) is None


@pytest.mark.parametrize(
    "value",
    ["Atlantis", "Korea", "United", "XX", "XXX", "US-CA", "", "Germany!", "D", 276, None, ["DE"]],
)
def test_unknown_countries_are_none(value: object) -> None:
    assert country_code(value) is None


@pytest.mark.parametrize(
    ("country", "value", "code"),
    [
        ("US", "CA", "CA"),
        ("US", "ca", "CA"),
        ("US", "US-CA", "CA"),
        ("US", "California", "CA"),
        ("US", "georgia", "GA"),
        ("CA", "Ontario", "ON"),
        ("DE", "Bayern", "BY"),
        ("DE", "Bavaria", "BY"),  # pycountry's English translation
        ("DE", "Baden-Wurttemberg", "BW"),
        ("FR", "IDF", "IDF"),
        ("FR", "Île-de-France", "IDF"),
        ("ES", "Cataluña", "CT"),  # the bracketed half of "Catalunya [Cataluña]"
        ("GB", "Wales", "WLS"),
        ("JP", "Tokyo", "13"),
        ("BD", "Dhaka", "C"),  # the division, not the district of the same name
    ],
)
def test_region_codes_and_names_within_the_country(country: str, value: str, code: str) -> None:
    assert region_code(country, value) == code


@pytest.mark.parametrize(
    ("country", "value"),
    [
        ("US", "Bavaria"),  # a region of another country
        ("US", "CA-ON"),
        ("DE", "US-CA"),
        ("US", "Nowhere"),
        ("US", ""),
        ("US", 6),
        ("XX", "CA"),
        ("AZ", "Şəki"),  # two top-level subdivisions share the name
    ],
)
def test_unknown_regions_are_none(country: str, value: object) -> None:
    assert region_code(country, value) is None


def test_over_long_values_are_unknown_without_a_lookup() -> None:
    padded = "Germany" + " " * MAX_NAME
    assert country_code(padded) is None
    assert region_code("DE", "Bayern" + " " * MAX_NAME) is None


def test_lookups_are_remembered_and_bounded() -> None:
    loc._countries.clear()
    for i in range(loc._MEMO_LIMIT + 10):
        country_code(f"nowhere {i}")
    assert 0 < len(loc._countries) <= loc._MEMO_LIMIT
    country_code("Germany")
    assert loc._countries["Germany"] == "DE"
    assert loc._country_table.cache_info().currsize == 1


def test_the_event_carries_codes() -> None:
    assert sent_location(
        {"city": "Munich", "country": "Germany", "region": "Bavaria", "latitude": 48.1}
    ) == {"city": "Munich", "latitude": 48.1, "region": "BY", "country": "DE"}
    assert sent_location({"country": "united states", "region": "US-CA"}) == {
        "region": "CA",
        "country": "US",
    }


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ({"country": "Atlantis", "city": "Poseidonia"}, {"city": "Poseidonia"}),
        ({"country": "Atlantis", "region": "California"}, None),
        ({"region": "California", "city": "LA"}, {"city": "LA"}),  # no country to look it in
        ({"country": "DE", "region": "Narnia"}, {"country": "DE"}),
        ({"country": 49, "region": "BY"}, None),
    ],
)
def test_unknown_countries_and_regions_are_left_out(location: object, expected: object) -> None:
    assert sent_location(location) == expected
