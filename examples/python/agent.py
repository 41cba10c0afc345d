"""An AI-agent-style worker: it announces itself (kind="agent"), watches a
task channel, calls an RPC of the host for each task when the host has one,
and publishes its results; the blocking API would do the same without await.

    python examples/python/agent.py ws://127.0.0.1:8000/ws

With no task arriving within a few seconds it publishes one itself, so that
it shows the whole loop against a bare hub and exits.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any, Dict

import sacred_client
from sacred_client.exceptions import OperationTimeoutError, ReplyError


def solve(task: Dict[str, Any]) -> Dict[str, Any]:
    numbers = [float(n) for n in task.get("numbers", [])]
    return {"task": task.get("id"), "sum": sum(numbers), "count": len(numbers)}


async def main(url: str) -> None:
    async with sacred_client.connect(url, name="summing-agent", kind="agent", version="1.0") as client:
        print(f"agent {client.id} connected", flush=True)
        tasks = await client.subscribe("agent-tasks")
        try:
            task = (await tasks.next(timeout=3.0)).data
        except OperationTimeoutError:
            # Nobody gave work: make some, so the example shows the whole loop.
            await client.publish("agent-tasks", {"id": "demo", "numbers": [1, 2, 3.5]})
            task = (await tasks.next(timeout=5.0)).data
        try:
            # A host can offer tools over RPC; a bare hub has none.
            context = await client.rpc("tools.context", {"task": task.get("id")})
        except ReplyError as err:
            context = f"no tools ({err.code})"
        result = solve(task) | {"context": context}
        ack = await client.publish("agent-results", result)
        print(f"published {result} at offset {ack.offset}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8000/ws"))
