"""The server-event budget on the real broker and the emulator: group-wide over several members,
through a SIGKILL, a restart and a member joining, in both delivery modes, FullStory stores no
more than the budget + max(0.5%, 50) events and at least 98% of it, and every user still goes;
with `when_exhausted = "pause"` the partitions wait for the next cycle and lose nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from harness import API_KEY, lag, many_events, offsets, wait_for, write_jsonl

from consumer.budget_log import read_book
from consumer.localenv import LocalBroker
from consumer.localenv.emulator import EmulatorProcess
from consumer.produce import produce_file

pytestmark = pytest.mark.integration

BUDGET = 1500


def _stored(emulator: EmulatorProcess, path: str) -> list[dict[str, Any]]:
    return [r for r in emulator.deliveries() if r["path"] == path]


def _settings(tmp_path: Path, **budget: Any) -> Path:
    path = tmp_path / "settings.json"
    path.write_bytes(orjson.dumps({"budget": budget}))
    return path


@pytest.mark.parametrize("delivery", ["realtime", "batch"])
def test_the_budget_holds_group_wide_through_a_kill_a_restart_and_a_join(
    kafka_broker: LocalBroker,
    topic_name: str,
    emulator: EmulatorProcess,
    consumers: Any,
    tmp_path: Path,
    delivery: str,
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    group = f"g-{uuid.uuid4().hex[:8]}"
    settings = _settings(tmp_path, events_per_cycle=BUDGET)
    first, second = many_events(3000, prefix="a"), many_events(3000, prefix="b")
    users = sum(1 for e in first + second if e["type"] == "identify")

    def member() -> Any:
        return consumers(
            bootstrap,
            topic_name,
            group,
            emulator.url,
            settings=settings,
            args=("--delivery", delivery),
        ).start()

    produce_file(bootstrap, topic_name, write_jsonl(tmp_path / "a.jsonl", first))
    members = [member(), member()]
    wait_for(
        lambda: len(_stored(emulator, "/v2/events")) >= 300,
        90,
        "the first events",
        members[0].log,
    )
    members[0].kill()  # SIGKILL: its claims and uncommitted records stay behind
    members[0] = member()
    produce_file(bootstrap, topic_name, write_jsonl(tmp_path / "b.jsonl", second))
    members.append(member())  # a third joins mid-run
    wait_for(
        lambda: lag(bootstrap, group, topic_name) == 0,
        180,
        "every record done",
        lambda: (
            offsets(bootstrap, group, topic_name)
            + "\n"
            + "\n".join(m.log()[-6000:] for m in members)
        ),
    )
    for proc in members:
        assert proc.stop() == 0, proc.log()

    events = _stored(emulator, "/v2/events")
    keys = {r["idempotency_key"] for r in events}
    assert len(keys) == len(events)  # none stored twice
    assert 0.98 * BUDGET <= len(events) <= BUDGET + max(0.005 * BUDGET, 50), len(events)
    assert len(_stored(emulator, "/v2/users")) == users  # users are never held back
    meter = emulator.server_events(API_KEY)  # the emulator's own meter agrees
    assert meter == {"server_events": len(events), "over_quota": 0}
    book = read_book({"bootstrap.servers": bootstrap}, f"{group}.budget")
    (count,) = book.cycles.values()
    assert count.granted == len(events) and count.exhausted
    status = subprocess.run(
        [
            *(sys.executable, "-m", "consumer.cli", "budget", "status", "--json"),
            *("--bootstrap-servers", bootstrap, "--topic", topic_name, "--group-id", group),
            *("--settings", str(settings)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "FULLSTORY_API_KEY": API_KEY},
        check=False,
    )
    assert status.returncode == 0, status.stderr
    (report,) = orjson.loads(status.stdout)
    assert (report["used"], report["limit"], report["exhausted"]) == (len(events), BUDGET, True)


def test_pause_waits_for_the_next_cycle_and_loses_nothing(
    kafka_broker: LocalBroker,
    topic_name: str,
    emulator: EmulatorProcess,
    consumers: Any,
    tmp_path: Path,
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    group = f"g-{uuid.uuid4().hex[:8]}"
    boundary = datetime.now(UTC) + timedelta(seconds=12)
    settings = _settings(
        tmp_path,
        events_per_cycle=200,
        cycle="daily",
        cycle_start=boundary.isoformat(),
        when_exhausted="pause",
    )
    tracks = [e for e in many_events(700, prefix="p") if e["type"] == "track"]  # 560
    produce_file(bootstrap, topic_name, write_jsonl(tmp_path / "p.jsonl", tracks))
    member = consumers(bootstrap, topic_name, group, emulator.url, settings=settings).start()

    wait_for(lambda: len(_stored(emulator, "/v2/events")) >= 200, 60, "the first cycle", member.log)
    time.sleep(1.0)
    if datetime.now(UTC) < boundary - timedelta(seconds=1):
        assert len(_stored(emulator, "/v2/events")) == 200  # paused, not skipped
        assert lag(bootstrap, group, topic_name) == len(tracks) - 200
    wait_for(
        lambda: len(_stored(emulator, "/v2/events")) >= 400,
        60,
        "the next cycle's events",
        member.log,
    )
    time.sleep(1.0)
    assert member.stop() == 0, member.log()
    assert len(_stored(emulator, "/v2/events")) == 400
    assert lag(bootstrap, group, topic_name) == len(tracks) - 400  # waiting, not lost
    assert "budget_exhausted" not in member.log()  # nothing was skipped
