"""How many POST /v2/events a second the FullStory emulator answers, and at what CPU cost.

Starts `python -m consumer.emulator` on a free loopback port, hammers it with httpx (async,
keep-alive, 64 concurrent connections, a realistic event body with an Idempotency-Key) for a few
seconds, and prints requests/s plus the CPU seconds the emulator and the client each used.
Requests per emulator CPU-second is the emulator's capacity when it has a whole core.

    python benchmarks/emulator_capacity.py [--seconds 5] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid

import httpx
import orjson

KEY = "bench-key"
EVENT = {
    "name": "Order Completed",
    "timestamp": "2024-05-01T12:34:56.789Z",
    "user": {"uid": "user-42"},
    "session": {"use_most_recent": True},
    "properties": {
        "orderId": "50314b8e9bcf000000000000",
        "total": 27.5,
        "currency": "USD",
        "coupon": "hasbros",
        "products": ['{"sku":"45790-32","price":19}'],
        "address": {"city": "Paris", "zip": 75001},
    },
    "schema": {"properties": {"address.zip": "int"}},
    "context": {
        "browser": {"url": "https://example.com/checkout", "user_agent": "Mozilla/5.0"},
        "location": {"ip_address": "203.0.113.7", "city": "Paris"},
    },
}


def start_emulator() -> tuple[subprocess.Popen[str], str]:
    """Start the emulator on a free port; return the process and its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "consumer.emulator", "--port", "0", "--api-key", KEY],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("emulator listening on "):
        proc.kill()
        raise SystemExit(f"emulator did not start: {line!r}")
    return proc, line.rsplit(" ", 1)[1]


async def hammer(base: str, seconds: float, concurrency: int) -> tuple[int, int, float, float]:
    """Return (ok, failed, wall seconds, emulator CPU seconds) for one timed run.

    Each worker has its own single-connection AsyncClient: one httpx pool shared by 64
    concurrent requests measured about 10x slower here (httpcore's pool, not the emulator).
    """
    body = orjson.dumps(EVENT)
    headers = {"Authorization": f"Basic {KEY}", "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    clients = [
        httpx.AsyncClient(base_url=base, limits=limits, headers=headers) for _ in range(concurrency)
    ]
    ok = failed = 0
    deadline = 0.0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal ok, failed
        while time.monotonic() < deadline:
            extra = {"Idempotency-Key": str(uuid.uuid4())}
            response = await client.post("/v2/events", content=body, headers=extra)
            if response.status_code == 200:
                ok += 1
            else:
                failed += 1

    async def emulator_cpu() -> float:
        stats = (await clients[0].get("/emulator/stats")).json()
        return float(stats["process_cpu_seconds"])

    try:
        deadline = time.monotonic() + 1.0  # warm-up: open connections, fill caches
        await asyncio.gather(*(worker(client) for client in clients))
        ok = failed = 0
        cpu_before = await emulator_cpu()
        start = time.monotonic()
        deadline = start + seconds
        await asyncio.gather(*(worker(client) for client in clients))
        wall = time.monotonic() - start
        cpu_after = await emulator_cpu()
    finally:
        for client in clients:
            await client.aclose()
    return ok, failed, wall, cpu_after - cpu_before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    proc, base = start_emulator()
    try:
        client_cpu = time.process_time()
        ok, failed, wall, emulator_cpu = asyncio.run(hammer(base, args.seconds, args.concurrency))
        client_cpu = time.process_time() - client_cpu
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    rate = ok / wall
    print(f"cpus available:        {os.cpu_count()}")
    print(f"requests ok / failed:  {ok} / {failed} in {wall:.2f} s, {args.concurrency} concurrent")
    print(f"throughput:            {rate:,.0f} requests/s")
    share = 100 * emulator_cpu / wall
    print(f"emulator CPU:          {emulator_cpu:.2f} s ({share:.0f}% of a core)")
    print(f"client CPU (+warm-up): {client_cpu:.2f} s")
    if emulator_cpu > 0:
        print(f"emulator capacity:     {ok / emulator_cpu:,.0f} requests per CPU-second")


if __name__ == "__main__":
    main()
