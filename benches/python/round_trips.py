"""Publish round trips per second from Python (benches/clients.py): one
publish at a time, each waiting for its ack, for SECONDS.

    python round_trips.py asyncio|blocking URL SECONDS
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

PAD = "x" * 170


def report(done: int, started: float) -> None:
    seconds = time.perf_counter() - started
    print(json.dumps({"round_trips": done, "seconds": seconds, "per_s": done / seconds}), flush=True)


async def with_asyncio(url: str, seconds: float) -> None:
    import sacred_client

    async with sacred_client.connect(url, name="bench-caller") as client:
        started = time.perf_counter()
        done = 0
        while time.perf_counter() - started < seconds:
            await client.publish("bench-rtt", {"seq": done, "pad": PAD})
            done += 1
        report(done, started)


def with_blocking(url: str, seconds: float) -> None:
    from sacred_client import blocking

    with blocking.connect(url, name="bench-caller") as client:
        started = time.perf_counter()
        done = 0
        while time.perf_counter() - started < seconds:
            client.publish("bench-rtt", {"seq": done, "pad": PAD})
            done += 1
        report(done, started)


if __name__ == "__main__":
    mode, url, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    if mode == "asyncio":
        asyncio.run(with_asyncio(url, seconds))
    else:
        with_blocking(url, seconds)
