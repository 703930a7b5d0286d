"""The `events` and `budget` settings objects: defaults, every wrong value refused with what is
wrong and how to fix it, unknown keys refused, and both loaded from JSON settings and TOML."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from consumer.config import ConfigError, load_config
from consumer.transform import DestinationSettings, SettingsError
from consumer.transform.settings import BudgetSettings, EventsSettings

BASE = {"bootstrap_servers": "127.0.0.1:9092", "group_id": "g", "topics": ["t"], "api_key": "k"}


def parse(**given: Any) -> DestinationSettings:
    settings, unknown = DestinationSettings.from_mapping(given)
    assert unknown == []
    return settings


def test_absent_by_default() -> None:
    settings = DestinationSettings()
    assert settings.events is None
    assert settings.budget is None
    assert parse(events=None, budget=None) == settings


def test_events_defaults_and_parsed_form() -> None:
    assert parse(events={}).events == EventsSettings(include=("*",), exclude=(), sample=())
    events = parse(
        events={
            "include": ["Order *", "Viewed *"],
            "exclude": ["Debug *"],
            "sample": {"b": 1, "a": 0.5},
        }
    ).events
    assert events == EventsSettings(("Order *", "Viewed *"), ("Debug *",), (("b", 1.0), ("a", 0.5)))
    assert events is not None
    assert events.rules.decide_name("Debug x") == "event_not_included"


def test_budget_defaults_and_parsed_form() -> None:
    budget = parse(budget={"events_per_cycle": 500_000}).budget
    assert budget == BudgetSettings(
        events_per_cycle=500_000,
        cycle="monthly",
        cycle_start=datetime(2000, 1, 1, tzinfo=UTC),
        warn_at=0.8,
        when_exhausted="skip",
    )
    full = parse(
        budget={
            "events_per_cycle": 0,
            "cycle": "daily",
            "cycle_start": "2024-03-15T09:00:00+01:00",
            "warn_at": 1,
            "when_exhausted": "pause",
        }
    ).budget
    assert full == BudgetSettings(0, "daily", datetime(2024, 3, 15, 8, tzinfo=UTC), 1.0, "pause")
    assert full is not None
    assert full.cycle_start.tzinfo is UTC
    assert full.cycle_at(datetime(2024, 3, 20, 8, tzinfo=UTC)).id == "2024-03-20T08:00:00Z"


@pytest.mark.parametrize(
    "text",
    [
        "2024-03-15T09:00:00Z",
        "2024-03-15T09:00Z",
        "2024-03-15T09:00:00.000+00:00",
        "20240315T090000Z",
    ],
)
def test_cycle_start_accepts_iso_instants(text: str) -> None:
    budget = parse(budget={"events_per_cycle": 1, "cycle_start": text}).budget
    assert budget is not None
    assert budget.cycle_start == datetime(2024, 3, 15, 9, tzinfo=UTC)


@pytest.mark.parametrize(
    ("events", "needles"),
    [
        ("Debug *", ["'events' must be an object", "got 'Debug *'", '{"exclude": ["Debug *"]}']),
        ({"include": "Order *"}, ["'events.include' must be a list", 'e.g. ["Order *"]']),
        ({"exclude": {"a": 1}}, ["'events.exclude' must be a list", "got an object"]),
        ({"include": ["ok", 3]}, ["events.include[1] must be a pattern string", "got 3", "quotes"]),
        ({"exclude": [None]}, ["events.exclude[0]", "got a null"]),
        ({"sample": ["Page *", 0.1]}, ["'events.sample' must be an object", "got an array"]),
        ({"sample": 0.5}, ["'events.sample' must be an object", "got 0.5"]),
        ({"sample": {1: 0.5}}, ["pattern that is not a string", "got 1", "quotes"]),
        (
            {"sample": {"Page *": 1.5}},
            ["events.sample['Page *'] must be a number from 0 to 1", "1.5"],
        ),
        ({"sample": {"Page *": -0.1}}, ["from 0 to 1", "got -0.1", "e.g. 0.25"]),
        ({"sample": {"Page *": "0.5"}}, ["from 0 to 1", "got '0.5'"]),
        ({"sample": {"Page *": True}}, ["from 0 to 1", "got a boolean"]),
        ({"sample": {"Page *": float("nan")}}, ["from 0 to 1", "got nan"]),
        (
            {"exlude": ["a"]},
            ["unknown key 'exlude'", "did you mean 'exclude'?", "include, exclude"],
        ),
        ({"rate": 1}, ["unknown key 'rate' in setting 'events':", "refused"]),
    ],
)
def test_bad_events_say_what_and_how(events: object, needles: list[str]) -> None:
    with pytest.raises(SettingsError) as caught:
        parse(events=events)
    for needle in needles:
        assert needle in str(caught.value)


ONE = {"events_per_cycle": 1}
BUDGET_NEEDLES = [
    ({"events_per_cycle": -1}, ["'budget.events_per_cycle' must be a whole number", "got -1"]),
    ({"events_per_cycle": 1.5}, ["whole number", "got 1.5", "decimal point", "500000"]),
    ({"events_per_cycle": 500000.0}, ["whole number", "got 500000.0"]),
    ({"events_per_cycle": True}, ["whole number", "got a boolean"]),
    ({"events_per_cycle": "500000"}, ["whole number", "got '500000'", "without quotes"]),
    ({"cycle": "monthly"}, ["'budget' needs events_per_cycle", "remove the budget"]),
    ({**ONE, "cycle": "weekly"}, ['\'budget.cycle\' must be "monthly" or "daily"', "'weekly'"]),
    ({**ONE, "cycle": 30}, ["'budget.cycle'", "got 30"]),
    ({**ONE, "cycle_start": "soon"}, ["ISO-8601 instant with a time zone", "got 'soon'"]),
    ({**ONE, "cycle_start": "soon"}, ["'budget.cycle_start'", "2024-03-15T09:00:00Z"]),
    ({**ONE, "cycle_start": "2024-03-15T09:00:00"}, ["has no time zone", "add Z"]),
    ({**ONE, "cycle_start": "2024-03-15"}, ["has no time zone"]),
    ({**ONE, "cycle_start": "2024-02-30T00:00:00Z"}, ["ISO-8601 instant"]),
    ({**ONE, "cycle_start": 946684800}, ["ISO-8601 instant", "got 946684800"]),
    ({**ONE, "cycle_start": datetime(2024, 1, 1)}, ["has no time zone"]),
    ({**ONE, "warn_at": 0}, ["'budget.warn_at' must be a share", "above 0 and at most 1", "got 0"]),
    ({**ONE, "warn_at": 1.01}, ["warn_at", "got 1.01", "e.g. 0.8"]),
    ({**ONE, "warn_at": "80%"}, ["warn_at", "got '80%'"]),
    ({**ONE, "warn_at": True}, ["warn_at", "got a boolean"]),
    ({**ONE, "when_exhausted": "stop"}, ['\'budget.when_exhausted\' must be "skip" or "pause"']),
    ({**ONE, "when_exhausted": None}, ["when_exhausted", "got a null"]),
    ({**ONE, "warn": 0.5}, ["unknown key 'warn' in setting 'budget'", "did you mean 'warn_at'?"]),
    ([1], ["'budget' must be an object", "got an array", '{"events_per_cycle": 500000}']),
]


@pytest.mark.parametrize(("budget", "needles"), BUDGET_NEEDLES)
def test_bad_budgets_say_what_and_how(budget: object, needles: list[str]) -> None:
    with pytest.raises(SettingsError) as caught:
        parse(budget=budget)
    for needle in needles:
        assert needle in str(caught.value)


def test_choices_are_trimmed_and_case_insensitive() -> None:
    budget = parse(
        budget={"events_per_cycle": 1, "cycle": " Daily", "when_exhausted": "PAUSE"}
    ).budget
    assert budget is not None
    assert (budget.cycle, budget.when_exhausted) == ("daily", "pause")


def test_direct_construction_is_parsed_too() -> None:
    settings = DestinationSettings(events={"exclude": ["x"]}, budget={"events_per_cycle": 3})  # type: ignore[arg-type]
    assert settings.events == EventsSettings(exclude=("x",))
    assert settings.budget == BudgetSettings(3)
    with pytest.raises(SettingsError, match="events_per_cycle"):
        DestinationSettings(budget={})  # type: ignore[arg-type]


def test_json_settings_file(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(
        '{"apiKey": "k", "events": {"exclude": ["Debug *"], "sample": {"Viewed *": 0.25}},'
        ' "budget": {"events_per_cycle": 5000, "cycle_start": "2024-03-15T09:00:00Z"}}'
    )
    (dest,) = load_config({**BASE, "settings": str(path)}, env={}).destinations
    assert dest.settings.events == EventsSettings(
        exclude=("Debug *",), sample=(("Viewed *", 0.25),)
    )
    assert dest.settings.budget == BudgetSettings(
        5000, cycle_start=datetime(2024, 3, 15, 9, tzinfo=UTC)
    )
    assert dest.unknown_settings == ()


def test_toml_tables(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        'bootstrap_servers = "b:9092"\ngroup_id = "g"\napi_key = "k"\ntopics = ["t"]\n'
        '[fullstory.events]\nexclude = ["Debug *"]\n'
        '[fullstory.events.sample]\n"Viewed *" = 0.5\n"*" = 1\n'
        "[fullstory.budget]\nevents_per_cycle = 500000\ncycle_start = 2024-03-15T09:00:00+01:00\n"
    )
    (dest,) = load_config({"config": str(path)}, env={}).destinations
    assert dest.settings.events == EventsSettings(
        exclude=("Debug *",), sample=(("Viewed *", 0.5), ("*", 1.0))
    )
    assert dest.settings.budget == BudgetSettings(
        500_000, cycle_start=datetime(2024, 3, 15, 9, tzinfo=timezone(timedelta(hours=1)))
    )


def test_toml_per_destination_tables(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        'bootstrap_servers = "b:9092"\ngroup_id = "g"\napi_key = "k"\n'
        '[[destinations]]\nname = "web"\ntopics = ["web"]\n'
        '[destinations.fullstory.budget]\nevents_per_cycle = 5000\ncycle = "daily"\n'
        '[[destinations]]\nname = "app"\ntopics = ["app"]\n'
        '[destinations.fullstory.events]\ninclude = ["Order *"]\n'
    )
    web, app = load_config({"config": str(path)}, env={}).destinations
    assert web.settings.budget == BudgetSettings(5000, cycle="daily")
    assert web.settings.events is None
    assert app.settings.events == EventsSettings(include=("Order *",))
    assert app.settings.budget is None


def test_inline_toml_object_replaces_the_settings_file_one_whole(tmp_path: Path) -> None:
    settings = tmp_path / "s.json"
    settings.write_text('{"events": {"exclude": ["Debug *"], "sample": {"*": 0.5}}}')
    path = tmp_path / "c.toml"
    path.write_text(
        'bootstrap_servers = "b:9092"\ngroup_id = "g"\napi_key = "k"\ntopics = ["t"]\n'
        'settings = "s.json"\n[fullstory.events]\ninclude = ["Order *"]\n'
    )
    (dest,) = load_config({"config": str(path)}, env={}).destinations
    assert dest.settings.events == EventsSettings(include=("Order *",))


def test_a_bad_value_in_toml_names_the_destination(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        'bootstrap_servers = "b:9092"\ngroup_id = "g"\napi_key = "k"\ntopics = ["t"]\n'
        '[fullstory.budget]\nevents_per_cycle = 10\nwhen_exausted = "pause"\n'
    )
    with pytest.raises(ConfigError, match="destination 'default': unknown key 'when_exausted'"):
        load_config({"config": str(path)}, env={})
