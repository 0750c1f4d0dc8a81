"""Event-time heartbeats in the raw topics: how a quiet partition still moves event time.

The TA job's watermark is the minimum over every raw partition it reads (trades and quotes),
and a trade is late by its own partition's event-time high-water mark (docs/design.md,
"Event time"). Both are a function of the records in the log, so a partition that receives
no records holds every bar back. The forwarder therefore writes a heartbeat into every
partition of the raw trades and quotes topics at a fixed wall-clock interval: a record with
no key and no value, the header ``HEADER``, and the record timestamp (ms) of its event-time
clock minus a lag. Readers of the raw topics skip it (``is_heartbeat``); the job's source
folds its timestamp into that partition's mark and drops it (it never reaches Python).
"""

from __future__ import annotations

from collections.abc import Iterable

#: Kafka record header that marks a heartbeat (value: b"1")
HEADER = "torghut.heartbeat"
HEADER_VALUE = b"1"


def is_heartbeat(value: bytes | None, headers: Iterable[tuple[str, bytes | None]] | None) -> bool:
    """True for a heartbeat record (no value, the ``HEADER`` header)."""
    if value is not None:
        return False
    return any(name == HEADER for name, _ in headers or ())
