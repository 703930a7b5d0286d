"""The backfill's arguments and its window logic, without Kafka: a bad window is one `error:`
line, `start_from` is checked as configuration, the default group follows `--since`, the config
a backfill runs with, and `Bounded` keeps the pipeline inside each partition's range."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END
from pipeline_fakes import FakeSource, track

from consumer.app import budget_topic
from consumer.backfill import Bounded, Plan, backfill_config, backfill_group
from consumer.cli import main
from consumer.config import ConfigError, load_config
from consumer.estimate import Range, Window, parse_window
from consumer.source import Listeners, start_position

REQUIRED = ("--bootstrap-servers", "127.0.0.1:9", "--topic", "t", "--group-id", "live")
NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)


def _error(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return code, lines[0]


@pytest.mark.parametrize(
    ("window", "says"),
    [
        (("--since", "2999-01-01T00:00:00Z"), "is in the future"),
        (
            ("--since", "1d", "--until", "2999-01-01"),
            "--until 2999-01-01T00:00:00Z is in the future",
        ),
        (("--since", "2026-01-02", "--until", "2026-01-01"), "must be before --until"),
        (("--since", "last tuesday"), "or a duration (7d, 24h, 90m)"),
    ],
)
def test_a_bad_window_is_one_error_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, window: Any, says: str
) -> None:
    monkeypatch.setenv("FULLSTORY_API_KEY", "k")
    code, line = _error(capsys, "backfill", *REQUIRED, *window)
    assert code == 2 and says in line, line


def test_start_from_takes_earliest_latest_or_an_instant() -> None:
    assert start_position("earliest") == OFFSET_BEGINNING
    assert start_position(" Latest ") == OFFSET_END
    assert start_position("2026-11-01T00:00:00Z") == start_position("2026-11-01T00:00:00")
    assert start_position("2026-11-01T01:00:00+01:00") == 1793491200000
    with pytest.raises(ValueError):
        start_position("yesterday")


def test_a_bad_start_from_is_a_configuration_error() -> None:
    flags = {"bootstrap_servers": "b", "topics": ["t"], "group_id": "g", "api_key": "k"}
    assert load_config({**flags, "start_from": "latest"}).kafka.start_from == "latest"
    assert load_config(flags).kafka.start_from is None
    with pytest.raises(ConfigError, match="start_from must be earliest, latest or an ISO-8601"):
        load_config({**flags, "start_from": "soon"})


def test_the_default_group_follows_since_so_a_rerun_continues() -> None:
    instant = parse_window("2026-11-01T00:00:00+01:00", None, NOW)
    assert backfill_group("live", "2026-11-01T00:00:00+01:00", instant) == (
        "live.backfill.20261031T230000Z"
    )
    later = parse_window("7d", None, NOW + timedelta(hours=5))
    assert backfill_group("live", "7d", later) == backfill_group("live", " 7d", later)
    assert backfill_group("live", "7d", later) == "live.backfill.7d"


def test_a_backfill_runs_in_its_own_group_on_the_destination_groups_budget(tmp_path: Path) -> None:
    settings = tmp_path / "settings.json"
    settings.write_text('{"budget": {"events_per_cycle": 10, "when_exhausted": "skip"}}')
    config = load_config(
        {
            "bootstrap_servers": "b",
            "topics": ["t"],
            "group_id": "live",
            "api_key": "k",
            "kafka": {"group.instance.id": "live-0", "client.id": "c"},
            "settings": str(settings),
        }
    )
    run = backfill_config(config, "live.backfill.7d")
    assert run.kafka.group_id == "live.backfill.7d"
    assert run.kafka.librdkafka == {"client.id": "c"}  # never a static member of another group
    assert budget_topic(run) == budget_topic(config) == "live.budget"
    (dest,) = run.destinations
    assert dest.settings.budget is not None and dest.settings.budget.when_exhausted == "pause"


def _plan(end: int, start: int = 0, committed: int | None = None) -> Plan:
    window = Window(datetime.fromtimestamp(0, UTC), datetime.fromtimestamp(2, UTC))
    plan = Plan(window, "g", {("t", 0): Range("default", start, end)})
    if committed is not None:
        plan.committed = {("t", 0): committed}
    return plan


def _bounded(logs: dict[Any, list[bytes]], plan: Plan) -> tuple[FakeSource, Bounded]:
    async def nothing(*_: Any) -> Any:
        return []

    inner = FakeSource(Listeners(nothing, nothing, nothing), logs)
    inner.positions = dict.fromkeys(logs, 0)
    return inner, Bounded(inner, plan)


def _offsets(messages: list[Any]) -> list[tuple[Any, int]]:
    return [((m.topic(), m.partition()), m.offset()) for m in messages]


def test_bounded_stops_each_partition_at_its_end_and_drops_the_rest() -> None:
    logs = {("t", 0): [track(i) for i in range(10)], ("t", 1): [track(i) for i in range(3)]}
    inner, bounded = _bounded(logs, _plan(end=6))
    got = asyncio.run(bounded.consume(100, 0.1))
    assert _offsets(got) == [(("t", 0), i) for i in range(6)]  # ("t", 1) is outside the window
    assert bounded.reached == {("t", 0), ("t", 1)} and inner.paused == {("t", 0), ("t", 1)}
    bounded.resume([("t", 0), ("t", 1)])  # flow control's resume keeps them paused
    assert inner.paused == {("t", 0), ("t", 1)}


def test_a_rewind_before_the_end_reopens_the_partition() -> None:
    inner, bounded = _bounded({("t", 0): [track(i) for i in range(5)]}, _plan(end=5))
    assert len(asyncio.run(bounded.consume(100, 0.1))) == 5
    bounded.seek(("t", 0), 3)  # the budget or the registry wants offset 3 again
    bounded.resume([("t", 0)])
    assert bounded.reached == set() and inner.paused == set()
    assert _offsets(asyncio.run(bounded.consume(100, 0.1))) == [(("t", 0), 3), (("t", 0), 4)]
    assert bounded.reached == {("t", 0)}


def test_records_stamped_outside_the_window_are_not_handed_on() -> None:
    plan = _plan(end=3)
    plan.window = Window(datetime.fromtimestamp(2, UTC), datetime.fromtimestamp(3, UTC))
    _inner, bounded = _bounded({("t", 0): [track(i) for i in range(3)]}, plan)
    assert asyncio.run(bounded.consume(100, 0.1)) == []  # stamped at 1 s
    assert bounded.reached == {("t", 0)}


def test_the_plan_knows_what_an_earlier_run_finished() -> None:
    assert (_plan(end=10, start=4).first(("t", 0)), _plan(end=10).totals()) == (4, {"default": 10})
    resumed = _plan(end=10, start=4, committed=7)
    assert resumed.first(("t", 0)) == 7 and not resumed.complete(("t", 0))
    assert _plan(end=10, committed=10).complete(("t", 0))
