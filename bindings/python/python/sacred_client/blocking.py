"""The blocking twin of ``sacred_client``: the same names without ``await``,
for scripts, notebooks and WSGI apps.

::

    from sacred_client import blocking

    with blocking.connect("ws://127.0.0.1:8000/ws", name="script") as client:
        sub = client.subscribe("lobby")
        client.publish("lobby", {"text": "hello"})
        for pub in sub:
            print(pub.data)

Each call blocks the calling thread with the GIL released (other threads
run), and Ctrl-C interrupts it. Called from inside a running asyncio event
loop it raises ``RuntimeError`` instead of blocking the loop: use the asyncio
API there. Event handlers (:meth:`Client.on`) run on a thread of the client's
own, never on the client's connection task.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections import deque
from typing import Any, Callable, Deque, Dict, Iterator, List, Optional, Tuple, TypeVar, Union

from . import _native
from ._common import (
    CLIENT_EVENTS,
    SUBSCRIPTION_EVENTS,
    ClientEvent,
    Data,
    Events,
    Handlers,
    Lagged,
    Resubscribed,
    State,
    SubscriptionEvent,
    Unsubscribed,
    client_event,
    ended,
    native_options,
    subscription_event,
    track,
    untrack,
)
from ._native import History, Message, Peer, Publication, PublishResult, SearchResult
from .exceptions import ClientClosedError, OperationTimeoutError, SubscriptionClosedError

__all__ = ["connect", "Client", "Subscription", "Messages"]

T = TypeVar("T")
_BATCH = 256

def _wait(pending: "_native.Pending[T]", timeout: Optional[float] = None) -> T:
    """Waits for a native call, refusing to block a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return pending.wait(timeout)
    raise RuntimeError(
        "sacred_client.blocking called from inside a running asyncio event loop would block it; "
        "use the asyncio API (await sacred_client.connect(...)) there"
    )

class Client(Events):
    """A client of one Sacred hub, blocking API; the options are those of
    :class:`sacred_client.Client`. A ``get_token`` here is a plain function."""

    def __init__(
        self,
        url: str,
        *,
        token: Optional[str] = None,
        get_token: Optional[Callable[[], str]] = None,
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
        self._native = _native.Client(
            url,
            **native_options(
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
            ),
        )
        track(self, self._shutdown)
        self._handlers = Handlers(CLIENT_EVENTS)
        self._listeners: List["queue.Queue[Optional[ClientEvent]]"] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._subscriptions: Dict[str, Subscription] = {}
        self._dispatcher = threading.Thread(target=self._dispatch, name="sacred-client-events", daemon=True)
        self._dispatcher.start()

    def _dispatch(self) -> None:
        try:
            while True:
                self._native.wait_events(64).wait()
                batch = self._native.take_events(64)
                if batch is None:
                    break
                for raw in batch:
                    event = client_event(raw)
                    with self._lock:
                        listeners = list(self._listeners)
                    for listener in listeners:
                        listener.put(event)
                    self._handlers.run(event)
        finally:
            with self._lock:
                for listener in self._listeners:
                    listener.put(None)
            self._closed.set()

    @property
    def state(self) -> State:
        """The connection's state now."""
        return State(self._native.state)

    @property
    def id(self) -> Optional[str]:
        """The id the server assigned to this connection; ``None`` while not connected."""
        return self._native.id

    def events(self, timeout: Optional[float] = None) -> Iterator[ClientEvent]:
        """Connection events from this call on, until the client closes;
        with a ``timeout``, raises ``OperationTimeoutError`` after that long
        without one."""
        listener: "queue.Queue[Optional[ClientEvent]]" = queue.Queue()
        with self._lock:
            self._listeners.append(listener)
        if self._closed.is_set():
            listener.put(None)

        def read() -> Iterator[ClientEvent]:
            try:
                while True:
                    try:
                        event = listener.get(timeout=timeout)
                    except queue.Empty:
                        raise OperationTimeoutError(f"no event within {timeout} s", temporary=True) from None
                    if event is None:
                        return
                    yield event
            finally:
                with self._lock:
                    self._listeners.remove(listener)

        return read()

    def connect(self) -> "Client":
        """Connects (if not already) and returns once connected."""
        _wait(self._native.connect())
        return self

    def ready(self, timeout: Optional[float] = None) -> None:
        """Waits until connected, at most ``timeout`` seconds."""
        try:
            _wait(self._native.connect(), timeout)
        except OperationTimeoutError:
            raise OperationTimeoutError(f"not connected within {timeout} s", temporary=True) from None

    def close(self) -> None:
        """Closes the connection for good; background work stops before it returns."""
        _wait(self._native.close())
        untrack(self)
        if threading.current_thread() is not self._dispatcher:
            self._dispatcher.join(timeout=5.0)

    def _shutdown(self) -> None:
        # At interpreter exit: bounded, whatever state the client is in.
        self._native.close().wait(timeout=2.0)
        self._dispatcher.join(timeout=2.0)

    def wait_closed(self, timeout: Optional[float] = None) -> bool:
        """Blocks until the client closed; ``False`` if ``timeout`` passed first."""
        return self._closed.wait(timeout)

    def __enter__(self) -> "Client":
        return self.connect()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def subscribe(self, channel: str, *, join_leave: bool = False) -> "Subscription":
        """Subscribes and returns once the server confirmed."""
        subscription = Subscription(_wait(self._native.subscribe(channel, join_leave)), self._subscriptions.pop)
        self._subscriptions[channel] = subscription
        return subscription

    def get_subscription(self, channel: str) -> Optional["Subscription"]:
        """The open subscription to ``channel``, if any (the client keeps
        every subscription open until it is unsubscribed or ends)."""
        return self._subscriptions.get(channel)

    def publish(self, channel: str, data: Data, *, traceparent: Optional[str] = None) -> PublishResult:
        """Publishes and returns the server's ack. ``traceparent``, the W3C
        trace context of the publisher's span, reaches every subscriber as
        ``Publication.traceparent``; a malformed one raises ``InvalidError``."""
        return _wait(self._native.publish(channel, data, traceparent=traceparent))

    def send(self, to: str, data: Data) -> None:
        """Sends ``data`` to one client, by its id."""
        _wait(self._native.send(to, data))

    def presence(self, channel: str) -> List[Peer]:
        """Who is subscribed to ``channel``."""
        return _wait(self._native.presence(channel))

    def history(
        self,
        channel: str,
        *,
        limit: Optional[int] = None,
        since: Optional[Tuple[int, str]] = None,
        reverse: bool = False,
    ) -> History:
        """A page of the channel's history."""
        return _wait(self._native.history(channel, limit, since, reverse))

    def search(
        self,
        channel: str,
        text: str,
        *,
        limit: Optional[int] = None,
        skip: Optional[int] = None,
    ) -> SearchResult:
        """Searches the channel's stored history for words, best match first."""
        return _wait(self._native.search(channel, text, limit, skip))

    def rpc(self, method: str, data: Data = None) -> Any:
        """Calls an RPC handler of the host and returns its answer."""
        return _wait(self._native.rpc(method, data))

    def server_time(self) -> Optional[int]:
        """The server's clock, ms since the Unix epoch; ``None`` before the first connect."""
        return _wait(self._native.server_time())

    def messages(self) -> "Messages":
        """Direct messages to this client, as an iterator."""
        return Messages(self._native.messages())

    def __repr__(self) -> str:
        return f"<sacred_client.blocking.Client {self.url} {self.state.value} id={self.id!r}>"

class _Reader:
    def __init__(self, native: Union[_native.Subscription, _native.Messages]) -> None:
        self._native = native
        self._buffer: Deque[Any] = deque()
        self._ended = False

    def _item(self, timeout: Optional[float]) -> Any:
        while not self._buffer:
            if self._ended:
                return None
            if not _wait(self._native.wait(_BATCH, timeout)):
                raise OperationTimeoutError(f"nothing arrived within {timeout} s", temporary=True)
            batch = self._native.take(_BATCH)
            if batch is None:
                self._ended = True
            else:
                self._buffer.extend(batch)
        return self._buffer.popleft()

class Subscription(_Reader, Events):
    """One subscribed channel: ``for pub in sub`` reads its publications;
    other events go to the handlers of :meth:`on` as they are read."""

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

    def next_event(self, timeout: Optional[float] = None) -> Union[Publication, SubscriptionEvent]:
        """The next publication or event, waiting at most ``timeout`` seconds."""
        raw = self._item(timeout)
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
        self._handlers.run(event)
        return event

    def next(self, timeout: Optional[float] = None) -> Publication:
        """The next publication, waiting at most ``timeout`` seconds in all."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                item = self.next_event(left)
            except OperationTimeoutError:
                raise OperationTimeoutError(f"no publication within {timeout} s", temporary=True) from None
            if isinstance(item, Publication):
                return item

    def __iter__(self) -> "Subscription":
        return self

    def __next__(self) -> Publication:
        try:
            return self.next()
        except SubscriptionClosedError:
            raise StopIteration from None

    def unsubscribe(self) -> None:
        """Unsubscribes."""
        self._gone()
        _wait(self._sub.unsubscribe())

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.unsubscribe()

    def __repr__(self) -> str:
        return f"<sacred_client.blocking.Subscription {self.channel!r}>"

class Messages(_Reader):
    """Direct messages to the client: ``for message in messages``."""

    def __init__(self, native: _native.Messages) -> None:
        super().__init__(native)
        self._messages = native

    def next(self, timeout: Optional[float] = None) -> Union[Message, Lagged]:
        """The next message, waiting at most ``timeout`` seconds."""
        raw = self._item(timeout)
        if raw is None:
            raise ClientClosedError("the client is closed; no more messages")
        if isinstance(raw, Message):
            return raw
        return Lagged(raw[1])

    def __iter__(self) -> "Messages":
        return self

    def __next__(self) -> Union[Message, Lagged]:
        try:
            return self.next()
        except ClientClosedError:
            raise StopIteration from None

    def close(self) -> None:
        """Stops reading."""
        _wait(self._messages.close())

def connect(
    url: str,
    *,
    token: Optional[str] = None,
    get_token: Optional[Callable[[], str]] = None,
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
) -> Client:
    """Connects and returns the client; ``with connect(url) as client:``
    closes it on exit."""
    client = Client(
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
    try:
        return client.connect()
    except BaseException:
        client.close()
        raise
