"""Every error ``sacred_client`` raises, rooted at :class:`SacredError`.

Each carries ``message``, ``code`` (the server's error or close code, when it
gave one) and ``temporary`` (whether the same call may succeed later).
Classes also derive from the builtin a generic handler would catch:
``except TimeoutError`` catches :class:`OperationTimeoutError`, ``except
ValueError`` catches :class:`InvalidError`, ``except ConnectionError`` catches
:class:`RefusedError` and :class:`TransportError`.

::

    SacredError
    ├── ConfigurationError (ValueError)     the client's settings are invalid
    ├── InvalidError (ValueError)           a payload or argument the protocol cannot carry
    ├── TooLargeError                       larger than the server accepts; nothing was sent
    ├── OperationTimeoutError (TimeoutError)
    ├── ClientClosedError                   the client is closed
    │   └── RefusedError (ConnectionError)  the server refused the connection for good
    │       └── UnauthorizedError           the user may not connect (raise it from get_token)
    ├── DisconnectedError                   the link dropped before the reply; it may have been applied
    ├── OfflineQueueError                   the offline queue was full, or the call waited in it too long
    ├── TransportError (ConnectionError)    a connection attempt failed (refused, DNS, TLS, HTTP)
    ├── TokenError                          get_token failed (the client retries)
    ├── SubscriptionError
    │   ├── DuplicateSubscriptionError      this client already subscribes to the channel
    │   └── SubscriptionClosedError         the subscription ended
    └── ReplyError                          the server answered with an error
        ├── PermissionDeniedError           103
        └── UnrecoverablePositionError      112: reload with history
"""

from __future__ import annotations

import asyncio
from typing import Optional, Tuple

__all__ = [
    "SacredError",
    "ConfigurationError",
    "InvalidError",
    "TooLargeError",
    "OperationTimeoutError",
    "ClientClosedError",
    "RefusedError",
    "UnauthorizedError",
    "DisconnectedError",
    "OfflineQueueError",
    "TransportError",
    "TokenError",
    "SubscriptionError",
    "DuplicateSubscriptionError",
    "SubscriptionClosedError",
    "ReplyError",
    "PermissionDeniedError",
    "UnrecoverablePositionError",
]


class SacredError(Exception):
    """The root of every error of ``sacred_client``."""

    message: str
    """What went wrong, in words."""
    code: Optional[int]
    """The server's error code (replies) or close code (refusals), if any."""
    temporary: bool
    """Whether retrying the same call later may succeed."""

    def __init__(self, message: str, *, code: Optional[int] = None, temporary: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.temporary = temporary

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code!r}, temporary={self.temporary!r})"

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (_rebuild, (type(self), self.message, self.code, self.temporary))


def _rebuild(cls: type, message: str, code: Optional[int], temporary: bool) -> SacredError:
    error: SacredError = cls(message, code=code, temporary=temporary)
    return error


class ConfigurationError(SacredError, ValueError):
    """The client's settings are invalid (a URL, a timeout, a codec)."""


class InvalidError(SacredError, ValueError):
    """A payload or argument the protocol cannot carry: an integer beyond 64
    bits, a float that is not finite, a dict key that is not a string, a type
    that has no place in a payload, nesting too deep, a channel name the
    grammar refuses. Nothing was sent."""


class TooLargeError(SacredError):
    """The command is larger than the server accepts (the frame limit it
    announced); nothing was sent and the connection goes on."""


# asyncio's TimeoutError is the builtin one from Python 3.11 on.
_TIMEOUT_BASES: Tuple[type, ...] = (TimeoutError,) if asyncio.TimeoutError is TimeoutError else (TimeoutError, asyncio.TimeoutError)


class OperationTimeoutError(SacredError, *_TIMEOUT_BASES):  # type: ignore[misc]
    """No answer in time (a call's timeout, ``connect``'s, a ``next(timeout=)``)."""


class ClientClosedError(SacredError):
    """The client is closed: by ``close()``, or by a server that said not to reconnect."""


class RefusedError(ClientClosedError, ConnectionError):
    """The server refused the connection for good; ``code`` is its close code."""


class UnauthorizedError(RefusedError):
    """The user may not connect (an invalid token, anonymous connections
    refused). Raise it from ``get_token`` to stop the client instead of
    having it retry."""

    def __init__(self, message: str = "unauthorized", *, code: Optional[int] = 3507, temporary: bool = False) -> None:
        super().__init__(message, code=code, temporary=temporary)


class DisconnectedError(SacredError):
    """The connection dropped before the reply came; the call may have been applied."""


class OfflineQueueError(SacredError):
    """The call could not wait for a connection: the offline queue was full, or
    it waited past its deadline."""


class TransportError(SacredError, ConnectionError):
    """A connection attempt failed: refused, DNS, TLS, an HTTP answer other
    than the upgrade (such as 404 on a wrong path). The client retries."""


class TokenError(SacredError):
    """``get_token`` raised or returned something other than a string; the client retries."""


class SubscriptionError(SacredError):
    """About one subscription."""


class DuplicateSubscriptionError(SubscriptionError):
    """This client already holds a subscription to the channel; the first goes on."""


class SubscriptionClosedError(SubscriptionError):
    """The subscription ended (unsubscribed, the server ended it, the client closed)."""


class ReplyError(SacredError):
    """The server answered the call with an error; ``code`` says which."""


class PermissionDeniedError(ReplyError):
    """The identity may not do this on this channel (103)."""


class UnrecoverablePositionError(ReplyError):
    """The stream position asked for is gone (112): reload with ``history``."""
