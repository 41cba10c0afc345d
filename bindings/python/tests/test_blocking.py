"""The blocking API, the GIL, Ctrl-C and interpreter exit."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
import threading
import time
from typing import List

import pytest

from sacred_client import State, blocking
from sacred_client.exceptions import InvalidError, OperationTimeoutError, ReplyError

from conftest import Hub

WAIT = 10.0


def test_the_same_calls_without_await(hub: Hub, codec: str) -> None:
    with blocking.connect(hub.url, codec=codec, name="script") as client:
        assert client.state is State.CONNECTED and client.id
        sub = client.subscribe("notes")
        ack = client.publish("notes", {"n": 1})
        client.publish("notes", {"n": 2})
        assert ack.offset is not None
        assert sub.next(timeout=WAIT).data == {"n": 1}
        for pub in sub:
            assert pub.data == {"n": 2}
            break
        assert [p.data for p in client.history("notes").publications] == [{"n": 1}, {"n": 2}]
        assert [p.name for p in client.presence("notes")] == ["script"]
        client.publish(f"search:blocking-{codec}", "a searchable note")
        assert client.search(f"search:blocking-{codec}", "searchable").total == 1
        assert client.rpc("test.echo", [1, "two"]) == [1, "two"]
        assert (client.server_time() or 0) > 1_600_000_000_000
        inbox = client.messages()
        client.send(client.id or "", "to myself")
        message = inbox.next(timeout=WAIT)
        assert getattr(message, "data", None) == "to myself"
        with pytest.raises(ReplyError):
            client.rpc("nope")
        with pytest.raises(OperationTimeoutError):
            sub.next(timeout=0.05)
        sub.unsubscribe()
    assert client.state is State.CLOSED


def test_handlers_run_on_the_event_thread(hub: Hub) -> None:
    client = blocking.Client(hub.url)
    connected = threading.Event()
    threads: List[str] = []

    def on_connected(event: object) -> None:
        threads.append(threading.current_thread().name)
        connected.set()

    client.on("connected", on_connected)
    client.on("connected", lambda e: 1 / 0)  # logged, not raised
    with client:
        assert connected.wait(WAIT)
        events = client.events(timeout=WAIT)
        with blocking.connect(hub.url) as other:
            sub = client.subscribe("kick-blocking")
            other.rpc("test.kick", {"channel": "kick-blocking"})
        kinds = [next(events).kind for _ in range(3)]
        assert kinds == ["disconnected", "connecting", "connected"]
        sub.unsubscribe()
    assert threads == ["sacred-client-events"] * 2  # the connect and the reconnect


async def test_inside_a_running_event_loop_it_refuses_instead_of_blocking(hub: Hub) -> None:
    # Made outside the loop (as a script would), then misused inside it.
    client = await asyncio.get_running_loop().run_in_executor(None, blocking.connect, hub.url)
    with pytest.raises(RuntimeError, match="running asyncio event loop"):
        client.publish("x", 1)
    await asyncio.get_running_loop().run_in_executor(None, client.close)


def test_a_blocking_wait_releases_the_gil(hub: Hub) -> None:
    with blocking.connect(hub.url) as client:
        sub = client.subscribe("gil")
        ticks = 0
        stop = threading.Event()

        def count() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1

        counter = threading.Thread(target=count)
        counter.start()
        before = ticks
        with pytest.raises(OperationTimeoutError):
            sub.next(timeout=0.3)
        stop.set()
        counter.join()
        assert ticks - before > 1000, "the other thread ran while the call waited"


def run_script(hub: Hub, body: str, **kwargs: object) -> "subprocess.Popen[str]":
    script = textwrap.dedent(body).replace("URL", repr(hub.url))
    return subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs  # type: ignore[call-overload]
    )


def test_ctrl_c_interrupts_a_blocking_call(hub: Hub) -> None:
    process = run_script(
        hub,
        """
        import signal
        # A shell's background job starts with SIGINT ignored, and Python
        # then installs no handler: put back the one an interactive run has.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        from sacred_client import blocking
        client = blocking.connect(URL)
        sub = client.subscribe("forever")
        print("waiting", flush=True)
        sub.next()
        """,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "waiting"
    time.sleep(0.2)  # into the wait; an earlier signal is handled just the same
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=WAIT)
    assert "KeyboardInterrupt" in stderr, stderr
    assert process.returncode != 0


@pytest.mark.parametrize("api", ["blocking", "asyncio"])
def test_a_client_left_open_does_not_hang_the_exit(hub: Hub, api: str) -> None:
    if api == "blocking":
        body = """
        from sacred_client import blocking
        client = blocking.connect(URL)
        client.subscribe("left-open")
        client.publish("left-open", 1)
        print("done", flush=True)
        """
    else:
        body = """
        import asyncio, sacred_client
        async def main():
            client = await sacred_client.connect(URL)
            await client.subscribe("left-open")
            await client.publish("left-open", 1)
        asyncio.run(main())
        print("done", flush=True)
        """
    process = run_script(hub, body)
    stdout, stderr = process.communicate(timeout=WAIT)
    assert stdout.strip() == "done", stderr
    assert process.returncode == 0, stderr


def test_the_asyncio_exit_is_clean_every_time(hub: Hub) -> None:
    # Runtime threads finishing a call once raced the interpreter's
    # finalisation (a crash in about 1 run in 30); many runs, all clean.
    body = """
    import asyncio, sacred_client
    async def main():
        async with sacred_client.connect(URL, name="exit") as client:
            sub = await client.subscribe("exit")
            await client.publish("exit", {"n": 1})
            await sub.next(timeout=5)
    asyncio.run(main())
    """
    for _ in range(25):
        process = run_script(hub, body)
        _, stderr = process.communicate(timeout=WAIT)
        assert process.returncode == 0, stderr


def test_a_traceparent_without_await(hub: Hub) -> None:
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    with blocking.connect(hub.url) as client:
        sub = client.subscribe("traced")
        client.publish("traced", 1, traceparent=traceparent)
        client.publish("traced", 2)
        traced = sub.next(timeout=WAIT)
        assert traced.traceparent is not None and traced.traceparent[3:35] == traceparent[3:35]
        assert sub.next(timeout=WAIT).traceparent is None
        with pytest.raises(InvalidError, match="traceparent is not a W3C trace context"):
            client.publish("traced", 3, traceparent=traceparent.upper())
