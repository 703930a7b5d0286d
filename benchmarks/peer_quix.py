"""The peer: the same job built on Quix Streams, run as a child process by run.py.

Quix's Application does the consuming, checkpointing and committing; a custom Deserializer decodes
each value with `consumer.codec.decode.Decoder("raw").decode`, `sdf.apply` maps it with
`consumer.transform.transform`, and a `BatchingSink` subclass POSTs each mapped request to the
emulator's single-item endpoints (the emulator has no batch endpoint) with the same body and
Idempotency-Key the service sends. Quix flushes a sink batch per partition at every checkpoint,
then commits; `write` sends a batch's requests concurrently over 32 keep-alive connections, one
lane per Kafka key so each user's requests keep their order, as the service's realtime senders do.

The sink sends with aiohttp, the fastest general asyncio HTTP client we measured (one
`ClientSession` with a keep-alive `TCPConnector` of 32 connections, on one asyncio event loop the
sink owns for its whole life). The service sends with its own httptools-based keep-alive transport
(`consumer/sink/transport.py`): that is one of the hot-path optimisations being measured, not
something a Quix user would find in Quix's docs. 408, 429, 5xx and network errors are retried in
place with capped exponential backoff (Retry-After as a floor), so a batch is never dropped and
replayed; Quix's `SinkBackpressureError` would re-send the whole batch.

Tuning, from Quix's docs: `commit_interval` 1 s (the service's auto-commit cadence, so the "all
committed" moment lags alike), no changelog topics (the job is stateless), `auto_offset_reset`
earliest, and the service's librdkafka prefetch bounds (4 MiB queued, 4 MiB per fetch).

    python benchmarks/peer_quix.py --bootstrap-servers B --topic T --group-id G \
        --api-host URL --api-key K

Prints one JSON line at the first record: its wall-clock time and this process's CPU seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import resource
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from quixstreams import Application
from quixstreams.models.serializers import Deserializer, SerializationContext
from quixstreams.sinks import BatchingSink, SinkBatch

from consumer.codec.decode import Decoder
from consumer.transform import DestinationSettings, Outcome, Request, Requests, transform

LANES = 32
MAX_ATTEMPTS = 20


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class SegmentAvro(Deserializer):
    """Kafka value → Segment event dict with the service's public one-record decoder."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._decode = Decoder("raw").decode
        self._first = True

    def __call__(self, value: bytes, ctx: SerializationContext) -> Any:
        if self._first:
            self._first = False
            print(json.dumps({"t_first": time.time(), "cpu_first": _cpu()}), flush=True)
        return self._decode(value)


class FullStorySink(BatchingSink):
    """Sends the mapped requests of each checkpoint's batch; skipped records need nothing."""

    def __init__(self, api_host: str, api_key: str) -> None:
        super().__init__()
        self._api_host = api_host
        self._headers = {
            "Authorization": f"Basic {api_key}",
            "Content-Type": "application/json",
        }
        self._loop = asyncio.new_event_loop()
        self._session: aiohttp.ClientSession | None = None
        self.sent = 0

    def setup(self) -> None:
        self._session = self._loop.run_until_complete(self._open())

    async def _open(self) -> aiohttp.ClientSession:
        """Created inside the sink's loop: aiohttp binds a session to the loop it starts on."""
        return aiohttp.ClientSession(
            base_url=self._api_host,
            headers=self._headers,
            timeout=aiohttp.ClientTimeout(total=10.0),
            connector=aiohttp.TCPConnector(limit=LANES, keepalive_timeout=30),
        )

    def close(self) -> None:
        """Quix has no sink close hook; run() calls this once app.run() returns."""
        if self._session is not None:
            self._loop.run_until_complete(self._session.close())
            self._session = None
        self._loop.close()

    def write(self, batch: SinkBatch) -> None:
        lanes: list[list[Request]] = [[] for _ in range(LANES)]
        for item in batch:
            outcome = item.value
            if isinstance(outcome, Requests):
                lanes[hash(item.key) % LANES].extend(outcome.requests)
        self._loop.run_until_complete(self._send(lanes))

    async def _send(self, lanes: list[list[Request]]) -> None:
        await asyncio.gather(*(self._send_lane(lane) for lane in lanes if lane))

    async def _send_lane(self, requests: list[Request]) -> None:
        assert self._session is not None, "setup() opens the session"
        for request in requests:
            content = orjson.dumps(request.body) if request.body is not None else None
            headers = {"Idempotency-Key": request.idempotency_key}
            for attempt in range(MAX_ATTEMPTS):
                retry_after = 0.0
                try:
                    async with self._session.request(
                        request.method, request.path, data=content, headers=headers
                    ) as response:
                        await response.read()
                        status = response.status
                        retry_after = _seconds(response.headers.get("Retry-After"))
                except (aiohttp.ClientError, TimeoutError):
                    status = 0
                if status and status < 500 and status not in (408, 429):
                    break  # 2xx done; a final 4xx would go to a DLQ, which this job lacks
                await asyncio.sleep(max(retry_after, min(1.0, 0.05 * 2**attempt)))
            else:
                raise RuntimeError(f"{request.path}: no answer after {MAX_ATTEMPTS} attempts")
            self.sent += 1


def _seconds(retry_after: str | None) -> float:
    """Retry-After in seconds (the emulator sends seconds; an HTTP date counts as none)."""
    try:
        return float(retry_after) if retry_after else 0.0
    except ValueError:
        return 0.0


def run(args: argparse.Namespace) -> None:
    """Build and run the Quix application until SIGTERM."""
    settings_data = json.loads(Path(args.settings).read_text()) if args.settings else {}
    settings, _unknown = DestinationSettings.from_mapping(settings_data)
    app = Application(
        broker_address=args.bootstrap_servers,
        consumer_group=args.group_id,
        auto_offset_reset="earliest",
        commit_interval=args.commit_interval,
        consumer_extra_config={
            "queued.max.messages.kbytes": 4096,
            "fetch.max.bytes": 4 * 1024 * 1024,
        },
        use_changelog_topics=False,
        loglevel="WARNING",
    )
    topic = app.topic(args.topic, key_deserializer="bytes", value_deserializer=SegmentAvro())

    def mapped(event: dict[str, Any]) -> Outcome:
        return transform(event, settings)

    sdf = app.dataframe(topic)
    sdf = sdf.apply(mapped)
    sink = FullStorySink(args.api_host, args.api_key)
    sdf.sink(sink)
    try:
        app.run()
    finally:
        sink.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group-id", required=True)
    parser.add_argument("--api-host", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--settings")
    parser.add_argument("--commit-interval", type=float, default=1.0)
    logging.basicConfig(level=logging.WARNING)
    run(parser.parse_args())
    return 0


if __name__ == "__main__":
    sys.exit(main())
