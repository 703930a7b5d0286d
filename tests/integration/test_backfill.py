"""`backfill` and `run --start-from` on the real broker and the emulator, over five days of records
with explicit Kafka timestamps: a middle window is delivered exactly once, also through a SIGKILL
and a rerun; a budget smaller than the window stops it there; `--dry-run` sends nothing; a window
the topic no longer holds is refused; a new group starts where `--start-from` says."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient
from harness import (
    API_KEY,
    assert_exactly_once,
    expected_identities,
    lag,
    many_events,
    wait_for,
)

from consumer.budget_log import read_book
from consumer.localenv import LocalBroker
from consumer.localenv.emulator import EmulatorProcess
from consumer.produce import produce_history
from consumer.transform import DestinationSettings

pytestmark = pytest.mark.integration

DAY = timedelta(days=1)
PER_DAY = 400


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _history(bootstrap: str, topic: str) -> tuple[datetime, dict[int, list[dict[str, Any]]]]:
    """Five days of events, day d stamped base + d days + i seconds; base is 5 days ago."""
    base = (datetime.now(UTC) - 5 * DAY).replace(microsecond=0)
    days = {d: many_events(PER_DAY, prefix=f"day{d}") for d in range(5)}
    for d, events in days.items():  # each day's writes differ from every other day's
        for event in events:
            event.get("traits", event.get("properties", {}))["day"] = d
    produce_history(
        bootstrap,
        topic,
        (
            (event, int((base + d * DAY + timedelta(seconds=i)).timestamp() * 1000))
            for d, events in days.items()
            for i, event in enumerate(events)
        ),
    )
    return base, days


def _command(
    bootstrap: str, topic: str, group: str, emulator: EmulatorProcess, *args: str
) -> list[str]:
    return [
        *(sys.executable, "-m", "consumer.cli", "backfill", "--json", "--log-format", "json"),
        *("--bootstrap-servers", bootstrap, "--topic", topic, "--group-id", group),
        *("--api-host", emulator.url, *args),
    ]


def _window(since: datetime, until: datetime) -> tuple[str, ...]:
    return ("--since", _iso(since), "--until", _iso(until))


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "FULLSTORY_API_KEY": API_KEY, **extra}


def _backfill(cmd: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, env=_env(**env), check=False
    )


def _summary(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(proc.stdout.splitlines()[-1])
    return doc


def test_a_middle_window_is_delivered_exactly_once_and_a_rerun_sends_nothing(
    kafka_broker: LocalBroker, topic_name: str, emulator: EmulatorProcess
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    base, days = _history(bootstrap, topic_name)
    cmd = _command(bootstrap, topic_name, "live", emulator, *_window(base + DAY, base + 3 * DAY))

    dry = _backfill([*cmd, "--dry-run"])
    assert dry.returncode == 0, dry.stderr
    estimate = orjson.loads(dry.stdout)
    assert estimate["destinations"][0]["records"] == 2 * PER_DAY
    assert emulator.deliveries() == []  # the dry run sent nothing

    proc = _backfill(cmd)
    assert proc.returncode == 0, proc.stderr
    inside = days[1] + days[2]
    assert_exactly_once(emulator.deliveries(), expected_identities(inside, DestinationSettings()))
    summary = _summary(proc)
    users = sum(1 for e in inside if e["type"] == "identify")
    assert (summary["records"], summary["users"], summary["events"]) == (
        len(inside),
        users,
        len(inside) - users,
    )
    assert summary["finished"] and summary["group"].startswith("live.backfill.")
    stored = len(emulator.deliveries())

    again = _backfill(cmd)
    assert again.returncode == 0, again.stderr
    assert _summary(again)["records"] == 0  # everything was committed under its group
    assert len(emulator.deliveries()) == stored


def test_a_sigkilled_backfill_continues_on_a_rerun_and_stores_each_event_once(
    kafka_broker: LocalBroker, topic_name: str, emulator: EmulatorProcess, tmp_path: Path
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    base, days = _history(bootstrap, topic_name)
    cmd = _command(bootstrap, topic_name, "live", emulator, *_window(base + DAY, base + 4 * DAY))
    small = {"FULLSTORY_CONSUMER_BATCH_MAX_ITEMS": "40", "FULLSTORY_CONSUMER_BATCH_MAX_JOBS": "2"}
    emulator.faults(batch_processing_ms=500)
    log = (tmp_path / "first.log").open("wb")
    first = subprocess.Popen(cmd, stdout=log, stderr=log, env=_env(**small))
    wait_for(
        lambda: len(emulator.deliveries()) >= 200 or first.poll() is not None,
        180,
        "the first deliveries",
        lambda: (tmp_path / "first.log").read_text(),
    )
    emulator.faults(outage_seconds=600)  # nothing more gets through until the kill
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    emulator.faults(outage_seconds=0, batch_processing_ms=0)

    proc = _backfill(cmd, **small)
    assert proc.returncode == 0, proc.stderr
    inside = days[1] + days[2] + days[3]
    assert_exactly_once(emulator.deliveries(), expected_identities(inside, DestinationSettings()))


def test_a_budget_smaller_than_the_window_stops_the_backfill_there(
    kafka_broker: LocalBroker, topic_name: str, emulator: EmulatorProcess, tmp_path: Path
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    base, _days = _history(bootstrap, topic_name)
    budget = 150
    settings = tmp_path / "settings.json"
    settings.write_bytes(orjson.dumps({"budget": {"events_per_cycle": budget}}))
    group = f"live-{uuid.uuid4().hex[:8]}"
    window = _window(base + DAY, base + 3 * DAY)
    cmd = _command(bootstrap, topic_name, group, emulator, *window, "--settings", str(settings))
    proc = _backfill(cmd)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("error: the server-event budget is used up")
    summary = _summary(proc)
    assert summary["budget_exhausted"] == ["default"] and not summary["finished"]
    events = [r for r in emulator.deliveries() if r["path"] == "/v2/events"]
    assert len(events) == budget == summary["events"]
    (count,) = read_book({"bootstrap.servers": bootstrap}, f"{group}.budget").cycles.values()
    assert count.granted == budget and count.exhausted  # the destination group's budget


def test_a_window_without_records_or_past_the_retention_is_refused(
    kafka_broker: LocalBroker, topic_name: str, emulator: EmulatorProcess
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    base, _days = _history(bootstrap, topic_name)
    empty = _backfill(
        _command(bootstrap, topic_name, "live", emulator, *_window(base - 3 * DAY, base - 2 * DAY))
    )
    assert empty.returncode == 2 and empty.stderr.startswith("error: no records between"), (
        empty.stderr
    )
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.delete_records([TopicPartition(topic_name, 0, 50)]).values():
        future.result(timeout=30)
    gone = _backfill(_command(bootstrap, topic_name, "live", emulator, "--since", "6d"))
    lines = gone.stderr.splitlines()
    assert gone.returncode == 2 and len(lines) == 1, gone.stderr
    assert "no longer holds" in lines[0] and "of history, from" in lines[0], lines[0]
    assert emulator.deliveries() == []


def test_run_start_from_starts_a_new_group_at_that_time_and_ignores_it_once_committed(
    kafka_broker: LocalBroker, topic_name: str, emulator: EmulatorProcess, consumers: Any
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    base, days = _history(bootstrap, topic_name)
    group = f"g-{uuid.uuid4().hex[:8]}"
    start = ("--start-from", _iso(base + 3 * DAY))
    member = consumers(bootstrap, topic_name, group, emulator.url, args=start).start()
    after = days[3] + days[4]
    expected = expected_identities(after, DestinationSettings())
    wait_for(lambda: len(emulator.deliveries()) >= len(expected), 120, "days 3 and 4", member.log)
    wait_for(lambda: lag(bootstrap, group, topic_name) == 0, 60, "the commits")
    assert member.stop() == 0, member.log()
    assert_exactly_once(emulator.deliveries(), expected)

    again = consumers(
        bootstrap, topic_name, group, emulator.url, args=("--start-from", "earliest")
    ).start()
    wait_for(
        lambda: "start_from ignored for partitions with committed offsets" in again.log(),
        60,
        "the log line",
        again.log,
    )
    assert again.stop() == 0, again.log()
    assert_exactly_once(emulator.deliveries(), expected)
