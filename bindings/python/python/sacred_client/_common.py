"""What the asyncio and the blocking API share: settings, states, event
types, and the registry that closes clients left open at interpreter exit."""

from __future__ import annotations

import asyncio
import atexit
import enum
import logging
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar, Union, overload

from . import _native
from .exceptions import SacredError, SubscriptionClosedError

logger = logging.getLogger("sacred_client")

Data = Any
"""A payload: ``None``, ``bool``, ``int`` (64 bits), ``float`` (finite),
``str``, ``bytes`` (also ``bytearray`` and ``memoryview``), and ``list``,
``tuple`` and ``dict`` (``str`` keys) of them. Received payloads use the same
types, with ``list`` for sequences and ``bytes`` for bytes (MessagePack
codec; a JSON reader sees bytes as base64 text)."""


class State(str, enum.Enum):
    """The connection's state."""

    DISCONNECTED = "disconnected"
    """Not connected; a reconnect may be scheduled."""
    CONNECTING = "connecting"
    """An attempt is under way."""
    CONNECTED = "connected"
    """Connected: calls go out now."""
    CLOSED = "closed"
    """Closed for good, by ``close()`` or by the server."""


@dataclass(frozen=True)
class Connecting:
    """A connection attempt started (the first one, or a reconnect)."""

    kind = "connecting"


@dataclass(frozen=True)
class Connected:
    """Connected (again), with the id the server assigned."""

    client_id: str
    kind = "connected"


@dataclass(frozen=True)
class Disconnected:
    """The connection ended or an attempt failed; ``reconnect`` says whether
    the client tries again."""

    code: int
    reason: str
    reconnect: bool
    kind = "disconnected"


@dataclass(frozen=True)
class Error:
    """Why an attempt failed (before its ``Disconnected``)."""

    error: SacredError
    kind = "error"


@dataclass(frozen=True)
class Lagged:
    """This many events did not fit the buffer and were dropped."""

    skipped: int
    kind = "lagged"


ClientEvent = Union[Connecting, Connected, Disconnected, Error, Lagged]
"""Something that happened to the connection."""


@dataclass(frozen=True)
class Join:
    """A client joined the channel (subscriptions with ``join_leave=True``)."""

    peer: _native.Peer
    kind = "join"


@dataclass(frozen=True)
class Leave:
    """A client left the channel (subscriptions with ``join_leave=True``)."""

    peer: _native.Peer
    kind = "leave"


@dataclass(frozen=True)
class Resubscribed:
    """The subscription is active again after a reconnect or after it caught
    up; ``recovered=False`` means publications were missed: reload."""

    recovered: bool
    kind = "resubscribed"


@dataclass(frozen=True)
class Unsubscribed:
    """The server ended the subscription; nothing follows."""

    code: int
    reason: str
    kind = "unsubscribed"


SubscriptionEvent = Union[Join, Leave, Resubscribed, Unsubscribed, Lagged]
"""Something that happened in a subscription, other than a publication."""

CLIENT_EVENTS = ("connecting", "connected", "disconnected", "error", "lagged")
SUBSCRIPTION_EVENTS = ("join", "leave", "resubscribed", "unsubscribed", "lagged")


def client_event(raw: Tuple[Any, ...]) -> ClientEvent:
    """A connection event from the native module's tuple."""
    kind = raw[0]
    if kind == "connecting":
        return Connecting()
    if kind == "connected":
        return Connected(raw[1])
    if kind == "disconnected":
        return Disconnected(raw[1], raw[2], raw[3])
    if kind == "error":
        return Error(raw[1])
    return Lagged(raw[1])


def subscription_event(raw: Tuple[Any, ...]) -> SubscriptionEvent:
    """A subscription event from the native module's tuple."""
    kind = raw[0]
    if kind == "join":
        return Join(raw[1])
    if kind == "leave":
        return Leave(raw[1])
    if kind == "resubscribed":
        return Resubscribed(raw[1])
    if kind == "unsubscribed":
        return Unsubscribed(raw[1], raw[2])
    return Lagged(raw[1])


def ended(channel: str, event: Optional[Unsubscribed]) -> SubscriptionClosedError:
    """The error for reading a subscription that ended."""
    if event is None:
        return SubscriptionClosedError(f"the subscription to {channel!r} ended")
    return SubscriptionClosedError(
        f"the server ended the subscription to {channel!r}: {event.reason}", code=event.code
    )


def check_event(kind: str, allowed: Tuple[str, ...]) -> None:
    """Refuses a handler for an event that does not exist."""
    if kind not in allowed:
        raise ValueError(f"no event {kind!r}; the events are {', '.join(allowed)}")


Handler = Callable[[Any], Any]


class Handlers:
    """Callbacks per event name, run by the reader of the events, never by
    the client's connection task; one that raises is logged and skipped."""

    def __init__(self, allowed: Tuple[str, ...]) -> None:
        self._allowed = allowed
        self._handlers: Dict[str, List[Handler]] = {}

    def add(self, kind: str, handler: Handler) -> None:
        check_event(kind, self._allowed)
        self._handlers.setdefault(kind, []).append(handler)

    def remove(self, kind: str, handler: Handler) -> None:
        check_event(kind, self._allowed)
        if handler in self._handlers.get(kind, []):
            self._handlers[kind].remove(handler)

    def __bool__(self) -> bool:
        return any(self._handlers.values())

    def run(self, event: Any, spawn: Optional[Callable[[Any], None]] = None) -> None:
        """Calls every handler of ``event.kind``; a coroutine a handler
        returns goes to ``spawn`` (asyncio), or is refused (blocking)."""
        for handler in list(self._handlers.get(event.kind, ())):
            try:
                result = handler(event)
            except Exception:
                logger.exception("a %r handler raised; the client goes on", event.kind)
                continue
            if result is not None and hasattr(result, "__await__"):
                if spawn is None:
                    logger.error("a %r handler returned a coroutine; the blocking API runs plain functions", event.kind)
                    result.close()
                else:
                    spawn(result)


H = TypeVar("H", bound=Handler)


class Events:
    """``on`` and ``off``: the handlers of a client's or a subscription's events."""

    _handlers: Handlers

    @overload
    def on(self, event: str) -> Callable[[H], H]: ...

    @overload
    def on(self, event: str, handler: H) -> H: ...

    def on(self, event: str, handler: Optional[H] = None) -> Union[H, Callable[[H], H]]:
        """Calls ``handler(event)`` on every ``event`` of that name; works as
        a decorator too (``@client.on("disconnected")``). Plain functions and
        (in the asyncio API) coroutine functions; one that raises is logged
        on the ``sacred_client`` logger and skipped."""
        if handler is None:

            def register(handler: H) -> H:
                self._handlers.add(event, handler)
                return handler

            return register
        self._handlers.add(event, handler)
        return handler

    def off(self, event: str, handler: Handler) -> None:
        """Removes a handler added with :meth:`on`."""
        self._handlers.remove(event, handler)


def native_options(
    *,
    token: Optional[str],
    get_token: Optional[Callable[[], Any]],
    name: Optional[str],
    kind: Optional[str],
    version: Optional[str],
    codec: str,
    timeout: Optional[float],
    connect_timeout: Optional[float],
    reconnect_delay: Optional[Tuple[float, float]],
    max_batch: Optional[int],
    offline_queue: Optional[int],
    offline_deadline: Optional[float],
    subscription_buffer: Optional[int],
    message_buffer: Optional[int],
) -> Dict[str, Any]:
    """The keyword arguments of the native client."""
    return dict(
        token=token,
        get_token=get_token,
        name=name,
        kind=kind,
        runtime="python",
        version=version,
        codec=codec,
        request_timeout=timeout,
        connect_timeout=connect_timeout,
        reconnect_delay=reconnect_delay,
        max_batch=max_batch,
        offline_queue=offline_queue,
        offline_deadline=offline_deadline,
        subscription_buffer=subscription_buffer,
        message_buffer=message_buffer,
    )


# Clients still open at interpreter exit are closed (and their threads
# joined) before the interpreter finalises, so that no thread of theirs ever
# touches a dying interpreter.
_open: "weakref.WeakKeyDictionary[object, Callable[[], None]]" = weakref.WeakKeyDictionary()
_open_lock = threading.Lock()


def track(owner: object, shutdown: Callable[[], None]) -> None:
    """Calls ``shutdown`` at exit if ``owner`` is still open and alive."""
    with _open_lock:
        _open[owner] = shutdown


def untrack(owner: object) -> None:
    with _open_lock:
        _open.pop(owner, None)


def close_native(client: _native.Client) -> None:
    """Closes a native client, waiting at most 2 s."""
    client.close().wait(timeout=2.0)


def resolve(future: "asyncio.Future[Any]", ok: bool, value: Any) -> None:
    """Settles an asyncio future with a native call's outcome (on its loop)."""
    if not future.done():
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


@atexit.register
def _close_open_clients() -> None:
    with _open_lock:
        shutdowns = list(_open.values())
        _open.clear()
    for shutdown in shutdowns:
        try:
            shutdown()
        except BaseException:  # noqa: B036 - nothing may stop the exit
            pass
    # Calls that were awaited finish their last steps on runtime threads;
    # wait for them so that none takes the GIL of a finalising interpreter.
    _native.settle(2.0)
