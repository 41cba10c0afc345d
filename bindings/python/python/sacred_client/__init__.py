"""Sacred's real-time client for Python, asyncio first.

::

    import asyncio
    import sacred_client

    async def main() -> None:
        async with sacred_client.connect("ws://127.0.0.1:8000/ws", name="notebook") as client:
            sub = await client.subscribe("lobby")
            await client.publish("lobby", {"text": "hello"})
            async for pub in sub:
                print(pub.data)

    asyncio.run(main())

Reconnect, recovery, batching, the offline queue and the clock are the Rust
client's (``sacred-client``); this package translates. ``sacred_client.blocking``
has the same API without ``await``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import (
    Any,
    AsyncIterator,
    Awaitable,
    Callable,
    Deque,
    Dict,
    Generator,
    List,
    Optional,
    Set,
    Tuple,
    TypeVar,
    Union,
)

from . import _native
from ._common import (
    CLIENT_EVENTS,
    SUBSCRIPTION_EVENTS,
    ClientEvent,
    Connected,
    Connecting,
    Data,
    Disconnected,
    Error,
    Events,
    Handlers,
    Join,
    Lagged,
    Leave,
    Resubscribed,
    State,
    SubscriptionEvent,
    Unsubscribed,
    client_event,
    close_native,
    ended,
    logger,
    native_options,
    subscription_event,
    track,
    untrack,
)
from ._native import History, Message, Peer, Publication, PublishResult, SearchResult
from .exceptions import (
    ClientClosedError,
    OperationTimeoutError,
    SacredError,
    SubscriptionClosedError,
)

__version__: str = _native.__version__

__all__ = [
    "connect",
    "Client",
    "Subscription",
    "Messages",
    "State",
    "Publication",
    "Peer",
    "Message",
    "History",
    "SearchResult",
    "PublishResult",
    "ClientEvent",
    "Connecting",
    "Connected",
    "Disconnected",
    "Error",
    "Lagged",
    "SubscriptionEvent",
    "Join",
    "Leave",
    "Resubscribed",
    "Unsubscribed",
    "Data",
    "SacredError",
    "__version__",
]

T = TypeVar("T")
TokenProvider = Callable[[], Union[str, Awaitable[str]]]
"""Returns a token (a plain function or a coroutine function); asked before
every connect and before the token expires. Raise
:class:`~sacred_client.exceptions.UnauthorizedError` to stop the client."""

# How many stream items one wake-up hands over.
_BATCH = 256

class Client(Events):
    """A client of one Sacred hub.

    Nothing happens until :meth:`connect` (or ``async with``); from then on
    the client keeps the connection: it reconnects with backoff, resubscribes
    with recovery, and holds calls made while disconnected in its offline
    queue. Times are in seconds.

    :param url: ``ws://`` or ``wss://`` URL of the hub's WebSocket endpoint.
    :param token: a fixed token sent with every connect.
    :param get_token: a function or coroutine function returning a token,
        asked before every connect and before the token expires (instead of
        ``token``). Raising ``UnauthorizedError`` in it stops the client.
    :param name: the name others see (presence, publications).
    :param kind: what the client is: ``"app"``, ``"agent"``, ``"service"``...
    :param version: the application's version.
    :param codec: ``"json"`` or ``"msgpack"``.
    :param timeout: how long a call waits for its reply (5 s by default).
    :param connect_timeout: how long :meth:`connect` waits (10 s by default).
    :param reconnect_delay: ``(min, max)`` of the reconnect backoff.
    :param max_batch: most commands sent in one frame.
    :param offline_queue: how many calls wait while disconnected (1024).
    :param offline_deadline: how long each may wait there (30 s).
    :param subscription_buffer: events each subscription buffers.
    :param message_buffer: direct messages each reader buffers.
    """

    def __init__(
        self,
        url: str,
        *,
        token: Optional[str] = None,
        get_token: Optional[TokenProvider] = None,
        name: Optional[str] = None,
        kind: Optional[str] = None,
        version: Optional[str] = None,
        codec: str = "json",
        timeout: Optional[float] = None,
        connect_timeout: Optional[float] = None,
        reconnect_delay: Optional[Tuple[float, float]] = None,
        max_batch: Optional[int] = None,
        offline_queue: Optional[int] = None,
        offline_deadline: Optional[float] = None,
        subscription_buffer: Optional[int] = None,
        message_buffer: Optional[int] = None,
    ) -> None:
        self.url = url
        self._options = native_options(
            token=token,
            get_token=get_token,
            name=name,
            kind=kind,
            version=version,
            codec=codec,
            timeout=timeout,
            connect_timeout=connect_timeout,
            reconnect_delay=reconnect_delay,
            max_batch=max_batch,
            offline_queue=offline_queue,
            offline_deadline=offline_deadline,
            subscription_buffer=subscription_buffer,
            message_buffer=message_buffer,
        )
        self._native: Optional[_native.Client] = None
        self._handlers = Handlers(CLIENT_EVENTS)
        self._listeners: List[asyncio.Queue[Optional[ClientEvent]]] = []
        self._pump: Optional[asyncio.Task[None]] = None
        self._tasks: Set[asyncio.Task[Any]] = set()
        self._closed: Optional[asyncio.Event] = None
        self._subscriptions: Dict[str, Subscription] = {}

    # The native client is made on the event loop, so that an async
    # ``get_token`` runs on it.
    def _client(self) -> _native.Client:
        if self._native is None:
            native = self._native = _native.Client(self.url, **self._options)
            track(self, lambda: close_native(native))
            self._closed = asyncio.Event()
            self._pump = asyncio.get_running_loop().create_task(self._dispatch())
        return self._native

    def _started(self) -> _native.Client:
        if self._native is None:
            raise ClientClosedError("the client is not connected yet: await connect() first")
        return self._native

    async def _dispatch(self) -> None:
        native = self._started()
        try:
            while True:
                await native.wait_events(64)
                batch = native.take_events(64)
                if batch is None:
                    break
                for raw in batch:
                    event = client_event(raw)
                    for queue in self._listeners:
                        queue.put_nowait(event)
                    self._handlers.run(event, self._spawn)
        finally:
            for queue in self._listeners:
                queue.put_nowait(None)
            if self._closed is not None:
                self._closed.set()

    def _spawn(self, coroutine: Awaitable[Any]) -> None:
        async def guarded() -> None:
            try:
                await coroutine
            except Exception:
                logger.exception("an event handler raised; the client goes on")

        task = asyncio.get_running_loop().create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def state(self) -> State:
        """The connection's state now."""
        return State(self._native.state) if self._native is not None else State.DISCONNECTED

    @property
    def id(self) -> Optional[str]:
        """The id the server assigned to this connection; ``None`` while not connected."""
        return self._native.id if self._native is not None else None

    def events(self) -> AsyncIterator[ClientEvent]:
        """Connection events from this call on, until the client closes:
        ``async for event in client.events()``. Ask before :meth:`connect`
        to see the first connection."""
        queue: asyncio.Queue[Optional[ClientEvent]] = asyncio.Queue()
        self._listeners.append(queue)
        return _Events(queue, self._listeners)

    async def connect(self) -> "Client":
        """Connects (if not already) and returns once connected. Raises
        ``RefusedError`` if the server refuses for good, and
        ``OperationTimeoutError`` after ``connect_timeout`` (the client then
        keeps trying in the background: await ``connect()`` again, or close)."""
        await self._client().connect()
        return self

    async def ready(self, timeout: Optional[float] = None) -> None:
        """Waits until connected, at most ``timeout`` seconds."""
        try:
            await asyncio.wait_for(self.connect(), timeout)
        except asyncio.TimeoutError:
            raise OperationTimeoutError(f"not connected within {timeout} s", temporary=True) from None

    async def close(self) -> None:
        """Closes the connection for good; pending calls fail with
        ``ClientClosedError``. Background work stops before it returns."""
        if self._native is None:
            return
        await self._native.close()
        untrack(self)
        if self._pump is not None:
            await self._pump
        for task in list(self._tasks):
            task.cancel()

    aclose = close
    """The same as :meth:`close` (for ``contextlib.aclosing``)."""

    async def wait_closed(self) -> None:
        """Returns once the client closed (by ``close()`` or by the server)."""
        self._started()
        assert self._closed is not None
        await self._closed.wait()

    async def __aenter__(self) -> "Client":
        return await self.connect()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def subscribe(self, channel: str, *, join_leave: bool = False) -> "Subscription":
        """Subscribes and returns once the server confirmed. One subscription
        per channel: a second raises ``DuplicateSubscriptionError`` while the
        first is open. ``join_leave=True`` also delivers join and leave events."""
        native = await self._started().subscribe(channel, join_leave)
        subscription = Subscription(native, self._subscriptions.pop)
        self._subscriptions[channel] = subscription
        return subscription

    def get_subscription(self, channel: str) -> Optional["Subscription"]:
        """The open subscription to ``channel``, if any. The client keeps every
        subscription open until it is unsubscribed or ends, whether or not the
        caller keeps a reference."""
        return self._subscriptions.get(channel)

    async def publish(self, channel: str, data: Data, *, traceparent: Optional[str] = None) -> PublishResult:
        """Publishes and returns the server's ack (the offset in the stream).
        While disconnected it waits in the offline queue. ``traceparent``, the
        W3C trace context of the publisher's span, reaches every subscriber as
        :attr:`Publication.traceparent`; a malformed one raises
        ``InvalidError`` before anything is sent."""
        return await self._started().publish(channel, data, traceparent=traceparent)

    async def send(self, to: str, data: Data) -> None:
        """Sends ``data`` to one client, by its id (see :meth:`messages`)."""
        await self._started().send(to, data)

    async def presence(self, channel: str) -> List[Peer]:
        """Who is subscribed to ``channel``."""
        return await self._started().presence(channel)

    async def history(
        self,
        channel: str,
        *,
        limit: Optional[int] = None,
        since: Optional[Tuple[int, str]] = None,
        reverse: bool = False,
    ) -> History:
        """A page of the channel's history: at most ``limit`` publications
        after ``since`` (an ``(offset, epoch)`` pair), newest first if ``reverse``."""
        return await self._started().history(channel, limit, since, reverse)

    async def search(
        self,
        channel: str,
        text: str,
        *,
        limit: Optional[int] = None,
        skip: Optional[int] = None,
    ) -> SearchResult:
        """Searches the channel's stored history for every word of ``text``
        (``word*`` for a prefix), best match first: at most ``limit`` (10 by
        default) after skipping ``skip``, with ``total`` matches in all.
        Raises :class:`ReplyError` with code 108 where the channel's
        namespace has search off."""
        return await self._started().search(channel, text, limit, skip)

    async def rpc(self, method: str, data: Data = None) -> Any:
        """Calls an RPC handler of the host and returns its answer."""
        return await self._started().rpc(method, data)

    async def server_time(self) -> Optional[int]:
        """The server's clock, ms since the Unix epoch, estimated from round
        trips; ``None`` before the first connect."""
        return await self._started().server_time()

    def messages(self) -> "Messages":
        """Direct messages to this client, as an async iterator. Every reader
        gets every message; the first also gets those that came before it."""
        return Messages(self._client().messages())

    def __repr__(self) -> str:
        return f"<sacred_client.Client {self.url} {self.state.value} id={self.id!r}>"

class _Events:
    """The iterator :meth:`Client.events` returns: its queue is registered at
    once, so nothing between the call and the first read is missed."""

    def __init__(self, queue: "asyncio.Queue[Optional[ClientEvent]]", listeners: List[Any]) -> None:
        self._queue = queue
        self._listeners = listeners

    def __aiter__(self) -> "_Events":
        return self

    async def __anext__(self) -> ClientEvent:
        event = await self._queue.get()
        if event is None:
            if self._queue in self._listeners:
                self._listeners.remove(self._queue)
            raise StopAsyncIteration
        return event

class _Reader:
    """The buffered, cancel-safe read of a native stream."""

    def __init__(self, native: Union[_native.Subscription, _native.Messages]) -> None:
        self._native = native
        self._buffer: Deque[Any] = deque()
        self._ended = False

    async def _item(self, timeout: Optional[float]) -> Any:
        """The next raw item; ``None`` once the stream ended."""
        while not self._buffer:
            if self._ended:
                return None
            if not await self._native.wait(_BATCH, timeout):
                raise OperationTimeoutError(f"nothing arrived within {timeout} s", temporary=True)
            batch = self._native.take(_BATCH)
            if batch is None:
                self._ended = True
            else:
                self._buffer.extend(batch)
        return self._buffer.popleft()

class Subscription(_Reader, Events):
    """One subscribed channel: ``async for pub in sub`` reads its
    publications in offset order, without gaps or repeats across
    reconnects; other events go to the handlers of :meth:`on` as they are
    read. Ends (the loop stops, :meth:`next` raises
    ``SubscriptionClosedError``) on unsubscribe, when the server ends it, or
    when the client closes."""

    def __init__(self, native: _native.Subscription, forget: Optional[Callable[[str, Any], Any]] = None) -> None:
        super().__init__(native)
        self._sub = native
        self._forget = forget
        self._handlers = Handlers(SUBSCRIPTION_EVENTS)
        self._end: Optional[Unsubscribed] = None
        self.recovered: Optional[bool] = None
        """``recovered`` of the last ``Resubscribed`` event; ``None`` before one."""

    @property
    def channel(self) -> str:
        """The channel."""
        return self._sub.channel

    def _gone(self) -> None:
        if self._forget is not None:
            self._forget(self.channel, None)
            self._forget = None

    def _spawn(self, coroutine: Awaitable[Any]) -> None:
        async def guarded() -> None:
            try:
                await coroutine
            except Exception:
                logger.exception("a subscription event handler raised")

        asyncio.get_running_loop().create_task(guarded())

    async def next_event(self, timeout: Optional[float] = None) -> Union[Publication, SubscriptionEvent]:
        """The next publication or event, waiting at most ``timeout`` seconds
        (``OperationTimeoutError`` then). Raises ``SubscriptionClosedError``
        once the subscription ended."""
        raw = await self._item(timeout)
        if raw is None:
            self._gone()
            raise ended(self.channel, self._end)
        if isinstance(raw, Publication):
            return raw
        event = subscription_event(raw)
        if isinstance(event, Unsubscribed):
            self._end = event
        if isinstance(event, Resubscribed):
            self.recovered = event.recovered
        self._handlers.run(event, self._spawn)
        return event

    async def next(self, timeout: Optional[float] = None) -> Publication:
        """The next publication, waiting at most ``timeout`` seconds in all."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - loop.time())
            try:
                item = await self.next_event(left)
            except OperationTimeoutError:
                raise OperationTimeoutError(f"no publication within {timeout} s", temporary=True) from None
            if isinstance(item, Publication):
                return item

    def __aiter__(self) -> "Subscription":
        return self

    async def __anext__(self) -> Publication:
        try:
            return await self.next()
        except SubscriptionClosedError:
            raise StopAsyncIteration from None

    async def unsubscribe(self) -> None:
        """Unsubscribes; a read waiting meanwhile ends."""
        self._gone()
        await self._sub.unsubscribe()

    async def __aenter__(self) -> "Subscription":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.unsubscribe()

    def __repr__(self) -> str:
        return f"<sacred_client.Subscription {self.channel!r}>"

class Messages(_Reader):
    """Direct messages to the client: ``async for message in messages``.
    ``Lagged`` items say how many did not fit the buffer."""

    def __init__(self, native: _native.Messages) -> None:
        super().__init__(native)
        self._messages = native

    async def next(self, timeout: Optional[float] = None) -> Union[Message, Lagged]:
        """The next message, waiting at most ``timeout`` seconds. Raises
        ``ClientClosedError`` once the client closed."""
        raw = await self._item(timeout)
        if raw is None:
            raise ClientClosedError("the client is closed; no more messages")
        if isinstance(raw, Message):
            return raw
        return Lagged(raw[1])

    def __aiter__(self) -> "Messages":
        return self

    async def __anext__(self) -> Union[Message, Lagged]:
        try:
            return await self.next()
        except ClientClosedError:
            raise StopAsyncIteration from None

    async def close(self) -> None:
        """Stops reading."""
        await self._messages.close()

class _Connect:
    """What :func:`connect` returns: await it for a connected client, or use
    it with ``async with`` to close the client on exit."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def __await__(self) -> Generator[Any, None, Client]:
        return self._client.connect().__await__()

    async def __aenter__(self) -> Client:
        return await self._client.connect()

    async def __aexit__(self, *exc_info: object) -> None:
        await self._client.close()

def connect(
    url: str,
    *,
    token: Optional[str] = None,
    get_token: Optional[TokenProvider] = None,
    name: Optional[str] = None,
    kind: Optional[str] = None,
    version: Optional[str] = None,
    codec: str = "json",
    timeout: Optional[float] = None,
    connect_timeout: Optional[float] = None,
    reconnect_delay: Optional[Tuple[float, float]] = None,
    max_batch: Optional[int] = None,
    offline_queue: Optional[int] = None,
    offline_deadline: Optional[float] = None,
    subscription_buffer: Optional[int] = None,
    message_buffer: Optional[int] = None,
) -> _Connect:
    """Connects to a hub: ``client = await connect(url)``, or
    ``async with connect(url) as client:``, which closes it on exit. The
    options are :class:`Client`'s."""
    return _Connect(
        Client(
            url,
            token=token,
            get_token=get_token,
            name=name,
            kind=kind,
            version=version,
            codec=codec,
            timeout=timeout,
            connect_timeout=connect_timeout,
            reconnect_delay=reconnect_delay,
            max_batch=max_batch,
            offline_queue=offline_queue,
            offline_deadline=offline_deadline,
            subscription_buffer=subscription_buffer,
            message_buffer=message_buffer,
        )
    )
