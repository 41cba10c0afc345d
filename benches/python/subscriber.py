"""One subscriber of the client benchmarks (benches/clients.py): subscribes,
prints "subscribed", counts COUNT publications and prints a JSON line with
the rate from the first to the last.

    python subscriber.py asyncio|blocking|websockets URL CHANNEL COUNT

``websockets`` is a pure-Python client of the protocol (the websockets
package and json), reading the same stream without sacred_client.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time


def report(received: int, started: float) -> None:
    seconds = time.perf_counter() - started
    print(json.dumps({"received": received, "seconds": seconds, "per_s": received / seconds}), flush=True)


async def with_asyncio(url: str, channel: str, count: int) -> None:
    import sacred_client

    async with sacred_client.connect(url, name="bench-python", subscription_buffer=count) as client:
        sub = await client.subscribe(channel)
        print("subscribed", flush=True)
        received = 0
        started = 0.0
        async for _ in sub:
            if received == 0:
                started = time.perf_counter()
            received += 1
            if received == count:
                break
        report(received, started)


def with_blocking(url: str, channel: str, count: int) -> None:
    from sacred_client import blocking

    with blocking.connect(url, name="bench-python", subscription_buffer=count) as client:
        sub = client.subscribe(channel)
        print("subscribed", flush=True)
        received = 0
        started = 0.0
        for _ in sub:
            if received == 0:
                started = time.perf_counter()
            received += 1
            if received == count:
                break
        report(received, started)


async def with_websockets(url: str, channel: str, count: int) -> None:
    import websockets

    async with websockets.connect(url, subprotocols=["sacred.v1.json"], max_size=None) as ws:
        await ws.send(json.dumps({"id": 1, "connect": {"client": {"name": "bench-websockets", "runtime": "python"}}}))
        await ws.recv()
        await ws.send(json.dumps({"id": 2, "subscribe": {"channel": channel}}))
        print("subscribed", flush=True)
        received = 0
        started = 0.0
        async for frame in ws:
            decoded = json.loads(frame)
            for message in decoded if isinstance(decoded, list) else [decoded]:
                if "publication" in message:
                    if received == 0:
                        started = time.perf_counter()
                    received += 1
                elif "ping" in message:
                    await ws.send(json.dumps({"pong": {}}))
            if received >= count:
                break
        report(received, started)


def main() -> None:
    mode, url, channel, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    if mode == "asyncio":
        asyncio.run(with_asyncio(url, channel, count))
    elif mode == "blocking":
        with_blocking(url, channel, count)
    else:
        asyncio.run(with_websockets(url, channel, count))


if __name__ == "__main__":
    main()
