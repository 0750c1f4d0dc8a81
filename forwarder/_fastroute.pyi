"""Native fast path of ``forwarder.router.EnvelopeRouter`` (``forwarder/_fastroute.c``)."""

from typing import Any

def configure(
    n_channels: int,
    trade_index: int,
    quote_index: int,
    max_future_ns: int,
    trailer: bytes,
    producer_type: type | None = None,
    /,
) -> None: ...
def route(router: Any, raw: bytes, ingest_ns: int, now: float, /) -> bool: ...
