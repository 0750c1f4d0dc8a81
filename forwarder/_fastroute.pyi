"""Native fast path of ``forwarder.router.EnvelopeRouter`` (``forwarder/_fastroute.c``).

The Protocols below are the C code's view of the Python objects it is handed: every
attribute or method it looks up, by the name it interns (the ``NAMES`` table of
``_fastroute.c``, whose owners are these class names). ``tests/unit/test_forwarder_fastroute_names.py``
checks each name against this file and against the real router, producer, trace ids,
seqs, dedup caches and frame; mypy checks ``EnvelopeRouter`` against ``Router``.
"""

from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Generic, Protocol, TypeVar

class TraceIds(Protocol):
    @property
    def _n(self) -> int: ...
    @property
    def prefix(self) -> bytes: ...

class Seqs(Protocol):
    @property
    def issued(self) -> int: ...
    @property
    def floor(self) -> int: ...

class DedupOrder(Protocol):
    def append(self, key: Hashable, /) -> None: ...
    def __len__(self) -> int: ...

class Dedup(Protocol):
    @property
    def keys(self) -> set[Hashable]: ...
    @property
    def order(self) -> DedupOrder: ...

class Producer(Protocol):
    # called as raw_produce(topic, value, key, timestamp=ms); confluent-kafka's own
    # produce positionally (topic, value, key, -1, None, None, ms)
    def raw_produce(self, topic: str, value: bytes, key: bytes, /, *, timestamp: int) -> None: ...
    # the librdkafka bridge's handle (``claim()``) or None; read only when present
    @property
    def native(self) -> Any: ...

class Frame(Protocol):
    """``EnvelopeRouter._begin``'s state of one frame; the C code adds its counts."""

    @property
    def n0(self) -> int: ...
    @property
    def event_ts(self) -> list[int]: ...
    n: int
    n_t: int
    n_q: int
    dup_t: int
    dup_q: int
    c_tq: int
    tq_max: int

F = TypeVar("F", bound=Frame)

class Router(Protocol, Generic[F]):
    # tables keyed by message type: the C code reads the "t" and "q" entries
    @property
    def headers(self) -> Mapping[str, bytes]: ...
    @property
    def topics(self) -> Mapping[str, str]: ...
    @property
    def _slots(self) -> Mapping[str, dict[str, list[Any]]]: ...
    @property
    def dedup(self) -> Mapping[str, Dedup]: ...
    @property
    def producer(self) -> Producer: ...
    @property
    def trace_ids(self) -> TraceIds: ...
    @property
    def seqs(self) -> Seqs: ...
    def _slot(self, kind: str, sym: Any, issued_in_frame: int, /) -> list[Any]: ...
    def _blocking_produce(self, topic: str, value: bytes, key: bytes, ts_ms: int, /) -> None: ...
    def _begin(self, ingest_ns: int, now: float, /) -> F: ...
    def _route_spans(self, raw: bytes, spans: Sequence[tuple[int, int]], f: F, /) -> None: ...
    def _finish(self, f: F, /) -> None: ...
    def _native_reject(self, exc: BaseException, raw: bytes, start: int, end: int, /) -> None: ...

def configure(
    n_channels: int,
    trade_index: int,
    quote_index: int,
    trade_branch: int,
    quote_branch: int,
    trailer: bytes,
    tail: bytes,
    producer_type: type | None = None,
    /,
) -> None:
    """Union indexes of Trade and Quote, the trailer before the trace id and the tail after
    it come from ``shared.envelope_layout`` (``forwarder.router`` passes them)."""

def set_limits(price_min: float, price_max: float, size_max: float, /) -> None:
    """The plausibility limits (``shared.limits``) the native path takes a trade or quote
    within; ``forwarder.router.set_limits`` keeps them equal to the Python encoder's."""

def route(
    router: Router[F], raw: bytes, ingest_ns: int, now: float, max_future_ns: int, /
) -> bool: ...

# --- the librdkafka bridge (forwarder/_rdkbridge.c) -------------------------------------

def bind_librdkafka(version: int, /) -> str: ...
def claim() -> Any | None: ...
def take_failures(handle: Any, /) -> list[tuple[str, bytes, bytes | None, int]]: ...
def pending(handle: Any, /) -> int: ...
def lost(handle: Any, /) -> int: ...
def produce(
    handle: Any, topic: str, value: bytes, key: bytes | None, timestamp_ms: int, /
) -> int: ...
