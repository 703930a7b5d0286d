"""The ceilings, run as a child process by run.py: a bare confluent-kafka consume loop, optionally
with the service's Avro decode of each value. Nothing else happens per record, so the rest of the
pipeline can only be slower than these.

    python benchmarks/ceiling.py --bootstrap-servers B --topic T --group-id G --events N [--decode]

Prints one JSON line: records, the wall-clock times of the first and the last record, and this
process's CPU seconds (all threads, librdkafka's included) at those two moments.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer

from consumer.codec.decode import Decoder


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(bootstrap: str, topic: str, group: str, events: int, decode: bool, timeout: float) -> int:
    """Consume `events` records (1,000 a call) and print the measurement."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    work: Callable[[bytes], Any] | None = Decoder("raw").decode if decode else None
    count = 0
    t_first = cpu_first = 0.0
    deadline = time.monotonic() + timeout
    while count < events and time.monotonic() < deadline:
        messages = consumer.consume(num_messages=1000, timeout=1.0)
        if not messages:
            continue
        if count == 0:
            t_first, cpu_first = time.time(), _cpu()
        for msg in messages:
            if msg.error() is not None:
                continue
            if work is not None:
                work(msg.value())
            count += 1
    t_last, cpu_last = time.time(), _cpu()
    consumer.close()
    result = {
        "records": count,
        "t_first": t_first,
        "t_last": t_last,
        "cpu_first": cpu_first,
        "cpu_last": cpu_last,
    }
    print(json.dumps(result), flush=True)
    return 0 if count >= events else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group-id", required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--decode", action="store_true")
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()
    return run(
        args.bootstrap_servers, args.topic, args.group_id, args.events, args.decode, args.timeout
    )


if __name__ == "__main__":
    sys.exit(main())
