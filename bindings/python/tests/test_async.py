"""The asyncio API against a real hub: every call, both codecs, payloads,
events, errors, tokens, the offline queue, reconnect and recovery."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any, List, Optional

import pytest

import sacred_client
from sacred_client.exceptions import (
    ClientClosedError,
    DuplicateSubscriptionError,
    InvalidError,
    OperationTimeoutError,
    RefusedError,
    ReplyError,
    SacredError,
    TooLargeError,
    UnauthorizedError,
)

from conftest import Hub, Process, binary

WAIT = 10.0


async def test_publish_subscribe_and_the_ack(hub: Hub, codec: str) -> None:
    async with sacred_client.connect(hub.url, codec=codec, name="reader", kind="agent") as client:
        assert client.state is sacred_client.State.CONNECTED
        assert client.id
        sub = await client.subscribe("lobby")
        first = await client.publish("lobby", {"text": "hello"})
        second = await client.publish("lobby", {"text": "again"})
        assert first.offset is not None and second.offset == first.offset + 1
        assert first.epoch == second.epoch
        pub = await sub.next(timeout=WAIT)
        assert pub.channel == "lobby" and pub.data == {"text": "hello"}
        assert pub.offset == first.offset and pub.epoch == first.epoch
        assert pub.publisher is not None and pub.publisher.id == client.id
        assert pub.publisher.name == "reader" and pub.publisher.kind == "agent"
        assert pub.publisher.runtime == "python"
        assert pub.time > 1_600_000_000_000
        received = []
        async for pub in sub:
            received.append(pub.data["text"])
            break
        assert received == ["again"]
    assert client.state is sacred_client.State.CLOSED


PAYLOADS: List[Any] = [
    None,
    True,
    False,
    0,
    -1,
    2**63 - 1,
    -(2**63),
    2**64 - 1,
    1.5,
    -0.25,
    "",
    "héllo ✓",
    [],
    [1, "two", None, [3.5]],
    {},
    {"nested": {"list": [1, {"deep": True}]}, "n": 3},
]


async def test_payloads_round_trip_as_plain_python_values(hub: Hub, codec: str) -> None:
    async with sacred_client.connect(hub.url, codec=codec) as client:
        sub = await client.subscribe("values")
        for value in PAYLOADS:
            await client.publish("values", value)
        for value in PAYLOADS:
            got = (await sub.next(timeout=WAIT)).data
            assert got == value and type(got) is type(value), (value, got)
        # Tuples travel as lists; bytes stay bytes on MessagePack and become
        # base64 text for a JSON reader.
        await client.publish("values", (1, 2))
        assert (await sub.next(timeout=WAIT)).data == [1, 2]
        await client.publish("values", {"raw": b"\x00\xffbin", "view": memoryview(b"ab"), "array": bytearray(b"c")})
        data = (await sub.next(timeout=WAIT)).data
        if codec == "msgpack":
            assert data == {"raw": b"\x00\xffbin", "view": b"ab", "array": b"c"}
        else:
            assert data == {"raw": "AP9iaW4=", "view": "YWI=", "array": "Yw=="}


@pytest.mark.parametrize(
    "value, words",
    [
        (2**64, "beyond 64 bits"),
        (-(2**63) - 1, "beyond 64 bits"),
        ({"n": [1, 2**70]}, 'data["n"][1]'),
        (float("nan"), "not a finite number"),
        (float("inf"), "not a finite number"),
        ({1: "x"}, "not a string"),
        (object(), "no place in a payload"),
        ({"s": {1, 2}}, "set"),
    ],
)
async def test_values_the_protocol_cannot_carry_raise_invalid_error(hub: Hub, value: Any, words: str) -> None:
    async with sacred_client.connect(hub.url) as client:
        with pytest.raises(InvalidError, match=words.replace("[", r"\[").replace("]", r"\]")) as raised:
            await client.publish("values", value)
        assert isinstance(raised.value, ValueError) and isinstance(raised.value, SacredError)
        # Nothing was sent and the client goes on.
        assert (await client.publish("values", 1)).offset is not None


async def test_nesting_too_deep_is_refused(hub: Hub) -> None:
    deep: Any = 1
    for _ in range(200):
        deep = [deep]
    async with sacred_client.connect(hub.url) as client:
        with pytest.raises(InvalidError):
            await client.publish("values", deep)
        await client.publish("values", [[["fine"]]])


async def test_history_presence_rpc_and_server_time(hub: Hub, codec: str) -> None:
    async with sacred_client.connect(hub.url, codec=codec, name="bot", kind="agent") as client:
        sub = await client.subscribe("room")
        for n in range(5):
            await client.publish("room", n)
        history = await client.history("room", limit=3)
        assert [p.data for p in history.publications] == [0, 1, 2]
        assert history.offset == history.publications[0].offset + 4 if history.publications[0].offset else True
        newest = await client.history("room", limit=2, reverse=True)
        assert [p.data for p in newest.publications] == [4, 3]
        after = await client.history("room", since=(history.publications[1].offset or 0, history.epoch))
        assert [p.data for p in after.publications] == [2, 3, 4]
        peers = await client.presence("room")
        assert [(p.id, p.name, p.kind, p.runtime) for p in peers] == [(client.id, "bot", "agent", "python")]
        assert await client.rpc("test.echo", {"ask": [1, 2]}) == {"ask": [1, 2]}
        now = await client.server_time()
        assert now is not None and now > 1_600_000_000_000
        await sub.unsubscribe()


async def test_search_is_ranked_paged_and_refused_where_off(hub: Hub, codec: str) -> None:
    channel = f"search:py-{codec}"
    async with sacred_client.connect(hub.url, codec=codec) as client:
        for words in ["rollback on node 3", "lunch", "node 4 is fine", "rollback done", "coffee", "standup"]:
            await client.publish(channel, {"text": words})
        found = await client.search(channel, "rollback node*")
        assert isinstance(found, sacred_client.SearchResult)
        assert found.total == 1
        assert [p.data for p in found.publications] == [{"text": "rollback on node 3"}]
        page = await client.search(channel, "NODE", limit=1, skip=1)
        assert page.total == 2 and len(page.publications) == 1
        with pytest.raises(ReplyError) as raised:
            await client.search("room", "node")
        assert raised.value.code == 108


async def test_direct_messages_between_two_clients(hub: Hub) -> None:
    async with sacred_client.connect(hub.url, name="a") as a, sacred_client.connect(hub.url, name="b") as b:
        inbox = b.messages()
        assert b.id is not None
        await a.send(b.id, {"hi": "b"})
        message = await inbox.next(timeout=WAIT)
        assert isinstance(message, sacred_client.Message)
        assert message.data == {"hi": "b"}
        assert message.sender is not None and message.sender.id == a.id and message.sender.name == "a"
        with pytest.raises(ReplyError) as raised:
            await a.send("nobody-has-this-id", 1)
        assert raised.value.code == 114


async def test_errors_are_the_classes_a_caller_catches(hub: Hub) -> None:
    async with sacred_client.connect(hub.url) as client:
        with pytest.raises(ReplyError) as raised:
            await client.rpc("no.such.method")
        assert raised.value.code == 104 and raised.value.temporary is False
        assert "method not found" in str(raised.value)

        sub = await client.subscribe("once")
        with pytest.raises(DuplicateSubscriptionError) as duplicate:
            await client.subscribe("once")
        assert duplicate.value.code == 105
        await client.publish("once", "still subscribed")
        assert (await sub.next(timeout=WAIT)).data == "still subscribed"

        with pytest.raises(TooLargeError):
            await client.publish("once", "x" * (2 * 1024 * 1024))
        assert (await client.publish("once", "the client goes on")).offset is not None

        with pytest.raises(InvalidError):
            await client.publish("not a valid channel name!", 1)

        assert (await sub.next(timeout=WAIT)).data == "the client goes on"
        with pytest.raises(OperationTimeoutError) as timed_out:
            await sub.next(timeout=0.05)
        assert isinstance(timed_out.value, TimeoutError)
        # A timed-out read lost nothing.
        await client.publish("once", "after the timeout")
        assert (await sub.next(timeout=WAIT)).data == "after the timeout"

    with pytest.raises(ClientClosedError):
        await client.publish("once", 1)


async def test_a_refused_token_raises_unauthorized(hub: Hub) -> None:
    with pytest.raises(UnauthorizedError) as raised:
        await sacred_client.connect(hub.url, token="not-a-valid-token", connect_timeout=WAIT)
    assert isinstance(raised.value, RefusedError) and isinstance(raised.value, ConnectionError)
    assert raised.value.code == 3500


async def test_get_token_that_raises_unauthorized_stops_the_client(hub: Hub) -> None:
    asked = 0

    async def get_token() -> str:
        nonlocal asked
        asked += 1
        raise UnauthorizedError("signed out")

    client = sacred_client.Client(hub.url, get_token=get_token, reconnect_delay=(0.01, 0.02))
    with pytest.raises(UnauthorizedError, match="signed out"):
        await client.connect()
    assert client.state is sacred_client.State.CLOSED
    assert asked == 1
    await client.close()


async def test_short_lived_tokens_are_refreshed_before_they_expire(hub: Hub) -> None:
    asked = 0
    enough = asyncio.Event()

    async def get_token() -> str:
        nonlocal asked
        asked += 1
        if asked >= 4:
            enough.set()
        return "short:ada:600"

    client = sacred_client.Client(hub.url, get_token=get_token)
    disconnects: List[sacred_client.Disconnected] = []
    client.on("disconnected", disconnects.append)
    async with client:
        # The connect and three refreshes, each before a 600 ms expiry.
        await asyncio.wait_for(enough.wait(), WAIT)
        assert (await client.publish("after-refresh", 1)).offset is not None
    assert [d for d in disconnects if d.code != 3000 and d.reconnect] == []


async def test_a_blocking_get_token_works_too(hub: Hub) -> None:
    async with sacred_client.connect(hub.url, get_token=lambda: "user:grace") as client:
        sub = await client.subscribe("who")
        peers = await client.presence("who")
        assert [p.user for p in peers] == ["grace"]
        await sub.unsubscribe()


async def test_events_and_handlers_see_every_state_change(hub: Hub) -> None:
    client = sacred_client.Client(hub.url, reconnect_delay=(0.01, 0.05))
    seen: List[str] = []
    handler_ran = asyncio.Event()

    @client.on("connected")
    def broken(event: sacred_client.Connected) -> None:
        raise RuntimeError("a handler that raises")

    @client.on("connected")
    async def fine(event: sacred_client.Connected) -> None:
        handler_ran.set()

    events = client.events()
    client.on("connecting", lambda e: seen.append(e.kind))
    async with client:
        first = await asyncio.wait_for(events.__anext__(), WAIT)
        assert isinstance(first, sacred_client.Connecting)
        second = await asyncio.wait_for(events.__anext__(), WAIT)
        assert isinstance(second, sacred_client.Connected) and second.client_id == client.id
        await asyncio.wait_for(handler_ran.wait(), WAIT)
        # The raising handler did not hurt the connection.
        assert (await client.publish("ok", 1)).offset is not None

        # A kick: disconnected with the code and reason, then connected again.
        async with sacred_client.connect(hub.url) as other:
            watcher = await client.subscribe("kick-me")
            assert await other.rpc("test.kick", {"channel": "kick-me"}) == 1
        disconnected = await asyncio.wait_for(events.__anext__(), WAIT)
        assert isinstance(disconnected, sacred_client.Disconnected)
        assert disconnected.code == 3006 and disconnected.reconnect and disconnected.reason
        kinds = []
        while not kinds or kinds[-1] != "connected":
            kinds.append((await asyncio.wait_for(events.__anext__(), WAIT)).kind)
        assert kinds == ["connecting", "connected"]
        await watcher.unsubscribe()
    assert seen.count("connecting") >= 2


async def test_a_kick_recovers_everything_in_order(hub: Hub, codec: str) -> None:
    async with sacred_client.connect(hub.url, codec=codec, reconnect_delay=(0.01, 0.05)) as reader, \
            sacred_client.connect(hub.url, codec=codec) as writer:
        sub = await reader.subscribe("stream")
        resubscribed: List[bool] = []
        sub.on("resubscribed", lambda e: resubscribed.append(e.recovered))
        for n in range(50):
            await writer.publish("stream", n)
        assert await writer.rpc("test.kick", {"channel": "stream"}) == 1
        for n in range(50, 100):
            await writer.publish("stream", n)
        got: List[int] = []
        # The resubscription is announced in the stream, where the replay
        # ends: read until both are in.
        while len(got) < 100 or not resubscribed:
            item = await sub.next_event(timeout=WAIT)
            if isinstance(item, sacred_client.Publication):
                got.append(item.data)
        assert got == list(range(100))
        assert resubscribed == [True] and sub.recovered is True
        with pytest.raises(OperationTimeoutError):
            await sub.next(timeout=0.2)  # nothing repeated


async def test_a_server_restart_recovers_everything_in_order(hub: Hub) -> None:
    async with sacred_client.connect(hub.url, reconnect_delay=(0.01, 0.05)) as reader:
        sub = await reader.subscribe("restart")
        async with sacred_client.connect(hub.url) as writer:
            for n in range(20):
                await writer.publish("restart", n)
            await writer.rpc("test.restart")
        # The writer reconnects to the new process too.
        async with sacred_client.connect(hub.url, connect_timeout=WAIT) as writer:
            for n in range(20, 40):
                await writer.publish("restart", n)
        got: List[int] = []
        while len(got) < 40 or sub.recovered is None:
            item = await sub.next_event(timeout=WAIT)
            if isinstance(item, sacred_client.Publication):
                got.append(item.data)
        assert got == list(range(40))
        assert sub.recovered is True


async def test_publishes_while_the_hub_is_down_wait_in_the_offline_queue(hub: Hub) -> None:
    client = sacred_client.Client(hub.url, reconnect_delay=(0.02, 0.1), offline_deadline=WAIT)
    down = asyncio.Event()
    client.on("disconnected", lambda e: down.set())
    async with client:
        sub = await client.subscribe("offline")
        hub.kill()
        await asyncio.wait_for(down.wait(), WAIT)
        queued = [asyncio.ensure_future(client.publish("offline", n)) for n in range(5)]
        await asyncio.sleep(0)
        assert not any(task.done() for task in queued)
        hub.start_again()
        acks = await asyncio.wait_for(asyncio.gather(*queued), WAIT)
        assert [ack.offset for ack in acks] == sorted(ack.offset for ack in acks)
        # The new process has a new stream: the subscription resubscribes
        # (not recovered) and reads what was queued.
        got: List[int] = []
        while len(got) < 5 or sub.recovered is None:
            item = await sub.next_event(timeout=WAIT)
            if isinstance(item, sacred_client.Publication):
                got.append(item.data)
        assert got == list(range(5))
        assert sub.recovered is False


async def test_cancelled_reads_lose_nothing(hub: Hub) -> None:
    async with sacred_client.connect(hub.url) as client:
        sub = await client.subscribe("cancel")
        writer = asyncio.ensure_future(asyncio.gather(*(client.publish("cancel", n) for n in range(300))))
        got: List[int] = []
        while len(got) < 300:
            try:
                got.append((await asyncio.wait_for(sub.next(), 0.001)).data)
            except asyncio.TimeoutError:
                pass
        await writer
        assert got == list(range(300))


async def test_join_and_leave_events(hub: Hub) -> None:
    async with sacred_client.connect(hub.url) as watcher:
        sub = await watcher.subscribe("party", join_leave=True)
        async with sacred_client.connect(hub.url, name="guest") as guest:
            guest_sub = await guest.subscribe("party")
            joined = await sub.next_event(timeout=WAIT)
            assert isinstance(joined, sacred_client.Join) and joined.peer.name == "guest"
            await guest_sub.unsubscribe()
            left = await sub.next_event(timeout=WAIT)
            assert isinstance(left, sacred_client.Leave) and left.peer.id == guest.id


async def test_unusable_settings_raise_configuration_or_value_errors(hub: Hub) -> None:
    with pytest.raises(ValueError):
        await sacred_client.connect(hub.url, codec="xml")
    with pytest.raises(ValueError):
        await sacred_client.connect(hub.url, timeout=-1)
    with pytest.raises(SacredError):
        await sacred_client.connect("http://not-a-websocket-url")


async def test_connect_to_nothing_times_out_with_the_cause(hub: Hub) -> None:
    hub.kill()
    with pytest.raises(OperationTimeoutError) as raised:
        await sacred_client.connect(hub.url, connect_timeout=0.5, reconnect_delay=(0.01, 0.05))
    assert "refused" in str(raised.value).lower() or "connect" in str(raised.value).lower()


async def test_handlers_are_logged_not_raised(caplog: pytest.LogCaptureFixture, hub: Hub) -> None:
    client = sacred_client.Client(hub.url)
    client.on("connected", lambda e: 1 / 0)
    with caplog.at_level(logging.ERROR, logger="sacred_client"):
        async with client:
            await client.publish("x", 1)
            await asyncio.sleep(0)
    assert any("handler raised" in record.message for record in caplog.records)


async def test_calls_before_connect_say_so_instead_of_waiting(hub: Hub) -> None:
    client = sacred_client.Client(hub.url)
    with pytest.raises(ClientClosedError, match="connect"):
        await client.publish("x", 1)
    assert client.state is sacred_client.State.DISCONNECTED and client.id is None
    await client.close()


async def test_a_subscription_stays_open_without_a_reference(hub: Hub) -> None:
    import gc

    async with sacred_client.connect(hub.url) as client:
        await client.subscribe("kept")
        gc.collect()
        await asyncio.sleep(0.1)
        assert [p.id for p in await client.presence("kept")] == [client.id]
        sub = client.get_subscription("kept")
        assert sub is not None
        await sub.unsubscribe()
        assert client.get_subscription("kept") is None


async def test_reprs_and_hashes_read_as_python(hub: Hub) -> None:
    async with sacred_client.connect(hub.url, name="repr") as client:
        sub = await client.subscribe("repr")
        ack = await client.publish("repr", 1)
        assert repr(ack) == f"PublishResult(offset={ack.offset}, epoch='{ack.epoch}')"
        pub = await sub.next(timeout=WAIT)
        assert "Some(" not in repr(pub) and "offset=1" in repr(pub)
        peers = await client.presence("repr")
        assert len(set(peers) | set(peers)) == 1 and "name='repr'" in repr(peers[0])
        with pytest.raises(OperationTimeoutError, match="within 0.05 s"):
            await sub.next(timeout=0.05)


TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TRACE_TEXT = "traceparent is not a W3C trace context"


def same_trace(carried: Optional[str]) -> bool:
    """Same trace id and flags (the parent id is the server's span when it traces)."""
    return carried is not None and len(carried) == 55 and (carried[3:35], carried[53:]) == (TRACEPARENT[3:35], TRACEPARENT[53:])


async def test_a_traceparent_reaches_the_subscriber_and_history(hub: Hub, codec: str) -> None:
    async with sacred_client.connect(hub.url, codec=codec) as client:
        sub = await client.subscribe("traced")
        await client.publish("traced", "traced", traceparent=TRACEPARENT)
        await client.publish("traced", "plain")
        traced = await sub.next(timeout=WAIT)
        assert traced.data == "traced" and same_trace(traced.traceparent), traced.traceparent
        plain = await sub.next(timeout=WAIT)
        assert plain.data == "plain" and plain.traceparent is None
        stored = (await client.history("traced")).publications
        assert [same_trace(p.traceparent) for p in stored] == [True, False]
        assert [p.traceparent for p in stored] == [traced.traceparent, None]


async def test_the_operators_binary_carries_the_traceparent(sacred_server: str) -> None:
    async with sacred_client.connect(sacred_server) as subscriber, sacred_client.connect(sacred_server) as publisher:
        sub = await subscriber.subscribe("traced")
        await publisher.publish("traced", {"order": 7}, traceparent=TRACEPARENT)
        pub = await sub.next(timeout=WAIT)
        assert pub.data == {"order": 7} and same_trace(pub.traceparent), pub.traceparent


@pytest.mark.parametrize(
    "traceparent",
    [
        "",
        "not-a-trace",
        TRACEPARENT.upper(),
        TRACEPARENT[:54],
        "ff" + TRACEPARENT[2:],
        "00-" + "0" * 32 + TRACEPARENT[35:],
    ],
)
async def test_a_malformed_traceparent_raises_invalid_error_before_sending(hub: Hub, traceparent: str) -> None:
    async with sacred_client.connect(hub.url) as client:
        sub = await client.subscribe("malformed")
        with pytest.raises(InvalidError, match=TRACE_TEXT) as raised:
            await client.publish("malformed", "never", traceparent=traceparent)
        assert raised.value.code is None, "refused by the client, not answered with 107"
        # Nothing was sent and the client goes on.
        await client.publish("malformed", "after")
        assert (await sub.next(timeout=WAIT)).data == "after"


async def test_a_tracing_server_becomes_the_parent_and_exports_under_the_same_trace() -> None:
    """The operator's binary exporting to an OTLP/HTTP receiver served here:
    the subscriber's traceparent keeps the trace id and flags, names the
    server's span as parent, and that span reaches the receiver."""
    import http.server
    import threading

    bodies: List[bytes] = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{receiver.server_address[1]}"
    os.environ["OTEL_BSP_SCHEDULE_DELAY"] = "100"  # export within 0.1 s, not 5 s
    try:
        server = Process([binary("SACRED_SERVER", "sacred-server"), "--bind", "127.0.0.1:0", "--log-format", "json", "--otlp-endpoint", endpoint])
    finally:
        del os.environ["OTEL_BSP_SCHEDULE_DELAY"]
    try:
        line = json.loads(server.line('"address"'))
        url = f"ws://{line.get('address') or line['fields']['address']}/ws"
        async with sacred_client.connect(url) as subscriber, sacred_client.connect(url) as publisher:
            sub = await subscriber.subscribe("traced")
            await publisher.publish("traced", 1, traceparent=TRACEPARENT)
            carried = (await sub.next(timeout=WAIT)).traceparent
        assert same_trace(carried), carried
        assert carried is not None and carried[36:52] != TRACEPARENT[36:52], "the server's span is the parent"
        trace_id, server_span = bytes.fromhex(TRACEPARENT[3:35]), bytes.fromhex(carried[36:52])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while not any(trace_id in body and server_span in body for body in bodies):
            assert loop.time() < deadline, f"no exported span {carried[36:52]} of the trace in {len(bodies)} exports"
            await asyncio.sleep(0.05)
    finally:
        server.stop()
        receiver.shutdown()
        receiver.server_close()
