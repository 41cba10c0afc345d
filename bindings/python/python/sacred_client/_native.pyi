# The Rust module under sacred_client (bindings/python/src). Internal: import
# sacred_client or sacred_client.blocking instead. Checked against the built
# module by mypy.stubtest in the test command.

from typing import Any, Callable, Generator, Generic, List, Optional, Tuple, TypeVar, final

_T = TypeVar("_T")

__all__ = [
    "__version__",
    "settle",
    "Client",
    "Pending",
    "Subscription",
    "Messages",
    "Publication",
    "Peer",
    "Message",
    "History",
    "SearchResult",
    "PublishResult",
]

__version__: str

def settle(timeout: float = 2.0) -> bool: ...

@final
class Pending(Generic[_T]):
    def __await__(self) -> Generator[Any, None, _T]: ...
    def wait(self, timeout: Optional[float] = None) -> _T: ...

@final
class Peer:
    @property
    def id(self) -> str: ...
    @property
    def user(self) -> Optional[str]: ...
    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def runtime(self) -> str: ...
    @property
    def version(self) -> str: ...

@final
class Publication:
    @property
    def channel(self) -> str: ...
    @property
    def data(self) -> Any: ...
    @property
    def offset(self) -> Optional[int]: ...
    @property
    def epoch(self) -> Optional[str]: ...
    @property
    def publisher(self) -> Optional[Peer]: ...
    @property
    def time(self) -> int: ...
    @property
    def traceparent(self) -> Optional[str]: ...

@final
class Message:
    @property
    def data(self) -> Any: ...
    @property
    def sender(self) -> Optional[Peer]: ...

@final
class History:
    @property
    def publications(self) -> List[Publication]: ...
    @property
    def offset(self) -> int: ...
    @property
    def epoch(self) -> str: ...

@final
class SearchResult:
    @property
    def publications(self) -> List[Publication]: ...
    @property
    def total(self) -> int: ...

@final
class PublishResult:
    @property
    def offset(self) -> Optional[int]: ...
    @property
    def epoch(self) -> Optional[str]: ...

@final
class Subscription:
    @property
    def channel(self) -> str: ...
    def wait(self, max: int = 256, timeout: Optional[float] = None) -> Pending[bool]: ...
    def take(self, max: int = 256) -> Optional[List[Any]]: ...
    def unsubscribe(self) -> Pending[None]: ...

@final
class Messages:
    def wait(self, max: int = 256, timeout: Optional[float] = None) -> Pending[bool]: ...
    def take(self, max: int = 256) -> Optional[List[Any]]: ...
    def close(self) -> Pending[None]: ...

@final
class Client:
    def __new__(
        cls,
        url: str,
        *,
        token: Optional[str] = None,
        get_token: Optional[Callable[[], Any]] = None,
        name: Optional[str] = None,
        kind: Optional[str] = None,
        runtime: str = "python",
        version: Optional[str] = None,
        codec: str = "json",
        request_timeout: Optional[float] = None,
        connect_timeout: Optional[float] = None,
        reconnect_delay: Optional[Tuple[float, float]] = None,
        max_batch: Optional[int] = None,
        offline_queue: Optional[int] = None,
        offline_deadline: Optional[float] = None,
        subscription_buffer: Optional[int] = None,
        message_buffer: Optional[int] = None,
    ) -> Client: ...
    @property
    def id(self) -> Optional[str]: ...
    @property
    def state(self) -> str: ...
    def connect(self) -> Pending[None]: ...
    def close(self) -> Pending[None]: ...
    def subscribe(self, channel: str, join_leave: bool = False) -> Pending[Subscription]: ...
    def publish(
        self, channel: str, data: Any, *, traceparent: Optional[str] = None
    ) -> Pending[PublishResult]: ...
    def send(self, to: str, data: Any) -> Pending[None]: ...
    def presence(self, channel: str) -> Pending[List[Peer]]: ...
    def history(
        self,
        channel: str,
        limit: Optional[int] = None,
        since: Optional[Tuple[int, str]] = None,
        reverse: bool = False,
    ) -> Pending[History]: ...
    def search(
        self,
        channel: str,
        text: str,
        limit: Optional[int] = None,
        skip: Optional[int] = None,
    ) -> Pending[SearchResult]: ...
    def rpc(self, method: str, data: Any) -> Pending[Any]: ...
    def server_time(self) -> Pending[Optional[int]]: ...
    def wait_events(self, max: int = 64, timeout: Optional[float] = None) -> Pending[bool]: ...
    def take_events(self, max: int = 64) -> Optional[List[Tuple[Any, ...]]]: ...
    def messages(self) -> Messages: ...
