"""What each record costs in the stages every design must run: decode, transform, JSON.

Run: `python benchmarks/stages.py [--events N] [--repeat R] [--filtered]`. One thread, no Kafka, no
HTTP: the `datagen` events are decoded, mapped and serialised one record at a time, as the service
does, and each stage's CPU per event is printed (the best of R passes). Together they are the floor
under any pipeline's CPU per event on this machine; docs/benchmarks.md sets them against the batch
target.

Then `route`: the service's own `Router.route` over the same records in consume-sized batches
(stand-in messages, a sink that only keeps the jobs), i.e. decode and transform plus what the
router adds for each record (the Record, the ledger's track and finish, flow checks, metrics):
that addition is printed as `bookkeeping` (a second pass whose decoder only looks up the
decoded event, less the transform stage). With `--filtered` the stream is `filtered_events` with
its settings (99% excluded by `events`), where bookkeeping is most of what follows the decode.

The transform is also timed with the `privacy` detectors on (e-mail hashed, cards redacted), on
the same events, for the detectors' cost (issue #14's target: at most +15%).
"""

from __future__ import annotations

import argparse
import os
import time
from itertools import repeat
from types import SimpleNamespace
from typing import Any

from datagen import FILTERED_SETTINGS, SETTINGS, encoded, events, filtered_events

from consumer.codec.decode import Decoder
from consumer.config import Destination
from consumer.metrics import Metrics
from consumer.pipeline.flow import FlowControl
from consumer.pipeline.ledger import Ledger
from consumer.pipeline.router import Router
from consumer.sink.client import json_body
from consumer.transform import DestinationSettings, Requests, transform

TOPIC = "bench-stages"
BATCH = 500  # records per consume call, the service's default
os.environ.setdefault("FULLSTORY_CONSUMER_HASH_KEY", "benchmark-only-key")
DETECT = {"privacy": {"detect": {"email": "hash", "card": "redact"}}}
STAGES = ("decode", "transform", "JSON", "transform with detect")


def one_pass(
    values: list[bytes], settings: DestinationSettings, detecting: DestinationSettings
) -> list[float]:
    """Seconds of thread CPU spent in each of STAGES over `values`."""
    decode = Decoder("raw").decode
    clock = time.thread_time
    spent = [0.0] * len(STAGES)
    for value in values:
        t0 = clock()
        event = decode(value)
        t1 = clock()
        outcome = transform(event, settings)
        t2 = clock()
        if isinstance(outcome, Requests):
            for request in outcome.requests:
                if request.body is not None:
                    json_body(request.body)
        t3 = clock()
        transform(event, detecting)
        t4 = clock()
        spent[0] += t1 - t0
        spent[1] += t2 - t1
        spent[2] += t3 - t2
        spent[3] += t4 - t3
    return spent


def _message(offset: int, key: bytes | None, value: bytes) -> Any:
    """A stand-in for a consumed confluent_kafka.Message: what Router.route calls on one."""
    fields = {
        "error": None,
        "topic": TOPIC,
        "partition": 0,
        "offset": offset,
        "key": key,
        "value": value,
        "headers": None,
        "timestamp": (1, 1_700_000_000_000),
    }
    # C callables (~0.05 µs a call), as cheap as the real Message's methods
    return SimpleNamespace(**{name: repeat(v).__next__ for name, v in fields.items()})


def route_pass(
    pairs: list[tuple[bytes | None, bytes]],
    settings: DestinationSettings,
    decoded: dict[bytes, Any] | None = None,
) -> float:
    """Seconds of thread CPU `Router.route` spends over `pairs`, BATCH messages a call; with
    `decoded` (value → event) its decoder only looks the event up, so decode is left out."""
    metrics, ledger = Metrics(), Ledger()
    ledger.assign((TOPIC, 0))
    flow = FlowControl(None, ledger, metrics, max_records=2**62, max_bytes=2**62)  # type: ignore[arg-type]
    decoder = Decoder("raw") if decoded is None else SimpleNamespace(decode=decoded.__getitem__)
    router = Router(
        decoder=decoder,  # type: ignore[arg-type]
        destinations={TOPIC: Destination("bench", (TOPIC,), settings)},
        clients={"bench": None},  # type: ignore[dict-item]
        ledger=ledger,
        flow=flow,
        dead_letters=None,  # type: ignore[arg-type]
        metrics=metrics,
    )
    router.sink = SimpleNamespace(submit=[].append)  # type: ignore[assignment]
    messages = [_message(offset, key, value) for offset, (key, value) in enumerate(pairs)]
    batches = [messages[i : i + BATCH] for i in range(0, len(messages), BATCH)]
    t0 = time.thread_time()
    for batch in batches:
        router.route(batch)
    return time.thread_time() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--filtered", action="store_true", help="the filtered stream (99%% excluded by `events`)"
    )
    args = parser.parse_args()
    stream, mapping = (filtered_events, FILTERED_SETTINGS) if args.filtered else (events, SETTINGS)
    settings, _ = DestinationSettings.from_mapping(mapping)  # what run.py's contenders use
    detecting, _ = DestinationSettings.from_mapping({**mapping, **DETECT})
    pairs = list(encoded(args.events, stream=stream))
    values = [value for _, value in pairs]
    passes = [one_pass(values, settings, detecting) for _ in range(args.repeat)]
    routed = min(route_pass(pairs, settings) for _ in range(args.repeat)) / len(values)
    decoder = Decoder("raw")
    decoded = {value: decoder.decode(value) for value in values}
    undecoded = min(route_pass(pairs, settings, decoded) for _ in range(args.repeat)) / len(values)
    # Each timer read costs too: measure it and take it off each stage.
    clock = time.thread_time
    t0 = clock()
    for _ in range(len(values)):
        clock()
    timer = (clock() - t0) / len(values)
    best = [min(p[i] for p in passes) / len(values) - timer for i in range(len(STAGES))]
    for name, seconds in zip(STAGES[:3], best, strict=False):
        print(f"{name:<10} {seconds * 1e6:6.1f} µs per event")
    print(f"{'all three':<10} {sum(best[:3]) * 1e6:6.1f} µs per event ({len(values):,} events)")
    detect = best[3] / best[1] - 1
    print(
        f"{'detect':<10} {best[3] * 1e6:6.1f} µs per event: the transform with the privacy "
        f"detectors on ({detect:+.1%})"
    )
    extra = undecoded - best[1]
    print(
        f"{'route':<10} {routed * 1e6:6.1f} µs per event: Router.route (decode, transform, "
        f"bookkeeping); without decode {undecoded * 1e6:.1f} µs, of which bookkeeping "
        f"{extra * 1e6:.1f} µs (Record, ledger, flow, metrics)"
    )


if __name__ == "__main__":
    main()
