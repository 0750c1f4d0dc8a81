"""Decoding msgpack frames in Python without letting a hostile frame multiply its size.

One byte of msgpack can become a Python object of 60-100 bytes (``0x80`` is an empty map: a
dict), so a 15 MiB frame of empty maps decoded at once is 15.7 million dicts, ~1.2 GB. The
native fast path refuses such frames (fewer than 16 bytes per message) and hands the
messages it does not encode itself to Python by their byte spans; this module is what
Python then does, for those spans and for whole frames the fast path declined:

- a frame of at most ``EAGER_FRAME_BYTES`` (64 KiB) is decoded at once, as before (a few MB
  at most);
- a larger frame is walked with ``msgpack.Unpacker.skip`` (no objects built) and its messages
  are decoded one at a time, lazily, as the router's loop asks for them: at most one
  message's objects are alive;
- a message over ``max_bytes`` (the router's ``TORGHUT_FWD_MAX_ENVELOPE_BYTES``: its envelope
  could not be produced either) is not decoded at all: an ``UndecodedMessage`` stands in its
  place, and the router rejects and counts it (``message_too_large``) like any invalid
  message, the rest of the frame forwarded. A message that does not decode is
  ``malformed_message``. So Python holds at most ~70 times one message's bytes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import msgpack

from forwarder.exceptions import InvalidMessageError

EAGER_FRAME_BYTES = 1 << 16
_ERRORS = (ValueError, TypeError, msgpack.UnpackException)


class UndecodedMessage:
    """A message of a frame left undecoded: the router's loop asks it for its type (``get``)
    and gets an ``InvalidMessageError`` naming why, so it is rejected and counted in its
    place in the frame (``frames_rejected{reason}``, a status event)."""

    __slots__ = ("detail", "reason")

    def __init__(self, reason: str, detail: str) -> None:
        self.reason, self.detail = reason, detail

    def get(self, key: str, default: Any = None) -> Any:
        raise InvalidMessageError(self.reason, self.detail)


def decode_span(raw: bytes, start: int, end: int, max_bytes: int) -> Any:
    """The message ``raw[start:end]``, or an ``UndecodedMessage``."""
    if end - start > max_bytes:
        return UndecodedMessage(
            "message_too_large",
            f"a message of {end - start} bytes, over TORGHUT_FWD_MAX_ENVELOPE_BYTES="
            f"{max_bytes}, was not decoded (its envelope could not be produced); the rest of "
            "its frame was forwarded",
        )
    try:
        return msgpack.unpackb(raw[start:end], timestamp=2, use_list=False)
    except _ERRORS as exc:
        return UndecodedMessage("malformed_message", f"{type(exc).__name__}: {exc}"[:300])


def decode_spans(raw: bytes, spans: Sequence[tuple[int, int]], max_bytes: int) -> Iterator[Any]:
    """The messages at ``spans`` of ``raw``, decoded one at a time as they are consumed."""
    for start, end in spans:
        yield decode_span(raw, start, end, max_bytes)


def unpack_frame(raw: bytes, max_bytes: int) -> Sequence[Any] | Iterator[Any]:
    """A msgpack frame -> its messages: a tuple for a small frame (or whatever it holds), a
    lazy iterator for a frame over ``EAGER_FRAME_BYTES`` (its array header and first
    message checked now: a frame broken from the start raises ValueError, one malformed
    frame)."""
    if len(raw) <= EAGER_FRAME_BYTES:
        return msgpack.unpackb(raw, timestamp=2, use_list=False)  # type: ignore[no-any-return]
    up = msgpack.Unpacker(max_buffer_size=len(raw))
    up.feed(raw)
    try:
        n = up.read_array_header()
        first = up.tell()
        if n:
            up.skip()  # a frame broken from its first message on is one malformed frame
    except _ERRORS as exc:
        raise ValueError(
            f"undecodable frame of {len(raw)} bytes ({type(_why(raw, exc)).__name__}: "
            f"{_why(raw, exc)})"[:300]
        ) from None
    return _messages(up, raw, n, first, max_bytes)


def _why(raw: bytes, exc: BaseException) -> BaseException:
    """What is wrong with a frame whose array header or first message failed: a top level
    that is not an array is walked (no objects built) to say whether it is itself broken."""
    if not isinstance(exc, ValueError) or "type header" not in str(exc):
        return exc
    walk = msgpack.Unpacker(max_buffer_size=len(raw))
    walk.feed(raw)
    try:
        walk.skip()
    except _ERRORS as deeper:
        return deeper
    return ValueError("the frame is not an array of messages")


def _messages(
    up: msgpack.Unpacker, raw: bytes, n: int, first: int, max_bytes: int
) -> Iterator[Any]:
    if not n:
        return
    yield decode_span(raw, first, up.tell(), max_bytes)
    for _ in range(n - 1):
        start = up.tell()
        try:
            up.skip()
        except _ERRORS as exc:  # truncated, too deep: nothing after it can be found
            yield UndecodedMessage(
                "malformed_message",
                f"the frame breaks off at byte {start} ({type(exc).__name__}: {exc})"[:300],
            )
            return
        yield decode_span(raw, start, up.tell(), max_bytes)
    if up.tell() != len(raw):
        yield UndecodedMessage(
            "malformed_message", f"{len(raw) - up.tell()} bytes after the frame's last message"
        )
