"""`fullstory-consumer demo`: the whole pipeline on one machine — a local Kafka broker, the
FullStory emulator, the sample Segment events — ending with a table of what FullStory received.
Exits 0 only when every request the transform expects arrived exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from consumer.codec.schema_files import schema_file
from consumer.config import load_config, read_settings_file
from consumer.errors import UserError
from consumer.transform import DestinationSettings, Requests, Skipped, transform

SAMPLE_EVENTS = schema_file("sample-events.jsonl")
DEMO_SETTINGS = schema_file("demo-settings.json")
DEMO_KEY = "demo-key"
DEMO_ORG = "o-DEMO-na1"
TOPIC = "segment-events"


def _say(text: str) -> None:
    print(f"demo: {text}", flush=True)


def _load_events(path: Path) -> list[dict[str, Any]]:
    """The events of a JSON lines file; a UserError naming the file (and line) when unusable."""
    from consumer.produce import json_lines

    try:
        with path.open("rb") as stream:
            return [event for _, event in json_lines(stream, str(path))]
    except OSError as exc:
        raise UserError(f"cannot read events file {path} ({exc.strerror}); fix --events") from None


def expected_requests(
    events: list[dict[str, Any]], settings: DestinationSettings
) -> tuple[dict[str, tuple[str, str]], Counter[str]]:
    """Idempotency key → (call type, endpoint) of every request the transform makes, and the
    skip/invalid reasons of the rest."""
    expected: dict[str, tuple[str, str]] = {}
    others: Counter[str] = Counter()
    for event in events:
        outcome = transform(event, settings)
        if isinstance(outcome, Requests):
            for req in outcome.requests:
                endpoint = f"{req.method} {req.path.split('?', 1)[0]}"
                expected[req.idempotency_key] = (str(event.get("type")), endpoint)
        elif isinstance(outcome, Skipped):
            others[f"skipped: {outcome.reason}"] += 1
        else:
            others[f"dead-lettered: {outcome.reason}"] += 1
    return expected, others


def _describe(req: dict[str, Any]) -> str:
    body = req.get("body") or {}
    if req["path"].startswith("/v2/events"):
        uid = (body.get("user") or {}).get("uid", "(no user)")
        return f"event {body.get('name')!r} for {uid}"
    if req["method"] == "DELETE":
        return f"delete user {(req.get('query') or {}).get('uid')}"
    return f"user {body.get('uid', '(anonymous)')} {body.get('display_name') or ''}".rstrip()


def _print_table(
    received: list[dict[str, Any]], expected: dict[str, tuple[str, str]], others: Counter[str]
) -> None:
    print()
    print("What FullStory received")
    print(f"  {'segment call':<14}{'FullStory request':<22}detail")
    for req in received:
        call = expected.get(req.get("idempotency_key") or "", ("?", ""))[0]
        print(f"  {call:<14}{req['method'] + ' ' + req['path'].split('?')[0]:<22}{_describe(req)}")
    print()
    print("Counts")
    by_endpoint = Counter(f"{r['method']} {r['path'].split('?')[0]}" for r in received)
    for endpoint, n in sorted(by_endpoint.items()):
        print(f"  {endpoint:<36}{n}")
    for reason, n in sorted(others.items()):
        print(f"  {reason:<36}{n}")
    print()


async def _consume_until(config: Any, done: Any, timeout: float) -> bool:
    from consumer.app import Pipeline

    pipeline = Pipeline(config)
    task = asyncio.create_task(pipeline.run())
    deadline = time.monotonic() + timeout
    ok = False
    while time.monotonic() < deadline and not task.done():
        if await asyncio.to_thread(done):
            ok = True
            break
        await asyncio.sleep(0.5)
    pipeline.stop()
    await task
    return ok


def run_demo(events: str | None = None, settings: str | None = None, timeout: float = 120.0) -> int:
    from consumer.localenv.broker import LocalBroker, create_topic
    from consumer.localenv.emulator import EmulatorProcess
    from consumer.produce import produce_file

    logging.basicConfig(level=logging.ERROR)
    events_path = Path(events) if events else SAMPLE_EVENTS
    settings_path = Path(settings) if settings else DEMO_SETTINGS
    dest_settings, _ = DestinationSettings.from_mapping(
        {**read_settings_file(settings_path), "org": DEMO_ORG}
    )
    expected, others = expected_requests(_load_events(events_path), dest_settings)

    workdir = Path(tempfile.mkdtemp(prefix="fullstory-demo-"))
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, True)
        _say(
            "starting a local Kafka broker (the first run downloads its jars from Maven Central)..."
        )
        broker = LocalBroker(workdir / "kafka")
        broker.start()
        stack.callback(broker.stop)
        _say(f"broker ready at {broker.bootstrap_servers}")
        emulator = EmulatorProcess(api_keys=(DEMO_KEY,), org_id=DEMO_ORG)
        emulator.start()
        stack.callback(emulator.stop)
        _say(f"FullStory emulator ready at {emulator.url}")
        create_topic(broker.bootstrap_servers, TOPIC, partitions=3)
        count = produce_file(broker.bootstrap_servers, TOPIC, events_path, "raw")
        _say(f"produced {count} Segment events to topic {TOPIC!r}; consuming...")

        config = load_config(
            {
                "bootstrap_servers": broker.bootstrap_servers,
                "topics": [TOPIC],
                "group_id": "fullstory-demo",
                "api_host": emulator.url,
                "api_key": DEMO_KEY,
                "settings": str(settings_path),
                "log_format": "text",
            },
            env={},
        )

        def all_arrived() -> bool:
            keys = {r.get("idempotency_key") for r in emulator.deliveries()}
            return set(expected) <= keys

        started = time.monotonic()
        arrived = asyncio.run(_consume_until(config, all_arrived, timeout))
        received = emulator.deliveries()
        _print_table(received, expected, others)
        keys = Counter(r.get("idempotency_key") for r in received)
        missing = [k for k in expected if keys[k] == 0]
        duplicated = [k for k, n in keys.items() if n > 1]
        unexpected = [k for k in keys if k not in expected]
        if arrived and not missing and not duplicated and not unexpected:
            _say(
                f"OK: all {len(expected)} expected requests arrived exactly once "
                f"({time.monotonic() - started:.1f} s)"
            )
            return 0
        _say(
            f"FAILED: {len(missing)} missing, {len(duplicated)} duplicated, "
            f"{len(unexpected)} unexpected of {len(expected)} expected requests"
        )
        return 1
