"""A terminal chat over Sacred: reads lines from stdin, publishes them to a
room, and prints what everyone in the room says (history first).

    python examples/python/chat.py ws://127.0.0.1:8000/ws ada
"""

from __future__ import annotations

import asyncio
import sys

import sacred_client


async def read_lines(queue: "asyncio.Queue[str | None]") -> None:
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        await queue.put(line.rstrip("\n") if line else None)
        if not line:
            return


async def main(url: str, name: str, room: str = "lobby") -> None:
    async with sacred_client.connect(url, name=name, kind="app") as client:

        @client.on("disconnected")
        def lost(event: sacred_client.Disconnected) -> None:
            print(f"* connection lost ({event.code}: {event.reason}), reconnecting", file=sys.stderr)

        sub = await client.subscribe(room)
        for pub in (await client.history(room, limit=20)).publications:
            print(f"[{pub.publisher.name if pub.publisher else 'host'}] {pub.data['text']}")

        async def show() -> None:
            async for pub in sub:
                sender = pub.publisher.name if pub.publisher else "host"
                print(f"[{sender}] {pub.data['text']}")

        printer = asyncio.create_task(show())
        lines: "asyncio.Queue[str | None]" = asyncio.Queue()
        reader = asyncio.create_task(read_lines(lines))
        while (line := await lines.get()) is not None:
            if line:
                await client.publish(room, {"text": line})
        printer.cancel()
        reader.cancel()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8000/ws",
                     sys.argv[2] if len(sys.argv) > 2 else "guest"))
