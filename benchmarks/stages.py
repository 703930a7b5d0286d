"""What each record costs in the stages every design must run: decode, transform, JSON.

Run: `python benchmarks/stages.py [--events N] [--repeat R]`. One thread, no Kafka, no HTTP: the
`datagen` events are decoded, mapped and serialised one record at a time, as the service does, and
each stage's CPU per event is printed (the best of R passes). Together they are the floor under any
pipeline's CPU per event on this machine; docs/benchmarks.md sets them against the batch target.
The transform is also timed with the `privacy` detectors on (e-mail hashed, cards redacted), on
the same events, for the detectors' cost (issue #14's target: at most +15%).
"""

from __future__ import annotations

import argparse
import os
import time

from datagen import SETTINGS as BENCH_SETTINGS
from datagen import encoded

from consumer.codec.decode import Decoder
from consumer.sink.client import json_body
from consumer.transform import DestinationSettings, Requests, transform

SETTINGS, _ = DestinationSettings.from_mapping(BENCH_SETTINGS)  # what run.py's contenders use
os.environ.setdefault("FULLSTORY_CONSUMER_HASH_KEY", "benchmark-only-key")
DETECT_SETTINGS, _ = DestinationSettings.from_mapping(
    {**BENCH_SETTINGS, "privacy": {"detect": {"email": "hash", "card": "redact"}}}
)
STAGES = ("decode", "transform", "JSON", "transform with detect")


def one_pass(values: list[bytes]) -> list[float]:
    """Seconds of thread CPU spent in each of STAGES over `values`."""
    decode = Decoder("raw").decode
    clock = time.thread_time
    spent = [0.0] * len(STAGES)
    for value in values:
        t0 = clock()
        event = decode(value)
        t1 = clock()
        outcome = transform(event, SETTINGS)
        t2 = clock()
        if isinstance(outcome, Requests):
            for request in outcome.requests:
                if request.body is not None:
                    json_body(request.body)
        t3 = clock()
        transform(event, DETECT_SETTINGS)
        t4 = clock()
        spent[0] += t1 - t0
        spent[1] += t2 - t1
        spent[2] += t3 - t2
        spent[3] += t4 - t3
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    values = [value for _, value in encoded(args.events)]
    passes = [one_pass(values) for _ in range(args.repeat)]
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
    extra = best[3] / best[1] - 1
    print(f"{STAGES[3]}: {best[3] * 1e6:.1f} µs per event ({extra:+.1%} on the transform)")


if __name__ == "__main__":
    main()
