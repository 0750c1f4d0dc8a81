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

import re
from collections.abc import Iterator, Sequence
from typing import Any

import msgpack
import orjson

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


def _too_large(size: int, unit: str, max_bytes: int) -> UndecodedMessage:
    return UndecodedMessage(
        "message_too_large",
        f"a message of {size} {unit}, over TORGHUT_FWD_MAX_ENVELOPE_BYTES={max_bytes}, was "
        "not decoded (its envelope could not be produced); the rest of its frame was forwarded",
    )


def decode_span(raw: bytes, start: int, end: int, max_bytes: int) -> Any:
    """The message ``raw[start:end]``, or an ``UndecodedMessage``."""
    if end - start > max_bytes:
        return _too_large(end - start, "bytes", max_bytes)
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


# --- JSON ---------------------------------------------------------------------------

# a flat object whose values are scalars, strings or arrays of those (every Alpaca message):
# matched in one C-level pass; anything deeper is walked bracket by bracket (_extent)
_STR = r'"(?:[^"\\]++|\\.)*+"'
_FLAT_OBJECT = re.compile(
    r"\{(?:[^{}\[\]\"]++|" + _STR + r"|\[(?:[^{}\[\]\"]++|" + _STR + r")*+\])*+\}", re.S
)
_STRING = re.compile(_STR, re.S)
_STRING_REST = re.compile(r'(?:[^"\\]++|\\.)*+"', re.S)
_BRACKET_OR_QUOTE = re.compile(r'[\[\]{}"]')
_SCALAR = re.compile(r"[^,\]\s]++")
_OPEN = re.compile(r"\s*+\[\s*+")
_SEPARATOR = re.compile(r"\s*+(?:(,)|\])\s*+")
_JSON_ERRORS = (ValueError, TypeError, orjson.JSONDecodeError)


def unpack_json_frame(raw: str | bytes, max_bytes: int) -> Any:
    """A JSON frame -> its messages: orjson's list for a frame of at most
    ``EAGER_FRAME_BYTES``, else a lazy iterator decoding one message at a time (the first
    checked now: a frame broken from the start raises ValueError, one malformed frame)."""
    if len(raw) <= EAGER_FRAME_BYTES:
        return orjson.loads(raw)
    text = raw.decode() if isinstance(raw, bytes) else raw
    opened = _OPEN.match(text)
    if opened is None:
        raise ValueError(f"a frame of {len(text)} characters that is not an array of messages")
    pos = opened.end()
    if text.startswith("]", pos):
        return iter(())
    end = _extent(text, pos)
    if end is None:
        raise ValueError(
            f"undecodable frame of {len(text)} characters: its first message is cut off"
        )
    first = _decode_json(text, pos, end, max_bytes)
    if isinstance(first, UndecodedMessage) and first.reason == "malformed_message":
        raise ValueError(f"undecodable frame of {len(text)} characters ({first.detail})")
    return _json_messages(text, first, end, max_bytes)


def _json_messages(text: str, first: Any, end: int, max_bytes: int) -> Iterator[Any]:
    yield first
    while True:
        sep = _SEPARATOR.match(text, end)
        if sep is None:
            yield UndecodedMessage(
                "malformed_message", f"the frame breaks off at character {end} (no , or ])"
            )
            return
        if sep.group(1) is None:  # ]
            if sep.end() != len(text):
                yield UndecodedMessage(
                    "malformed_message",
                    f"{len(text) - sep.end()} characters after the frame's last message",
                )
            return
        start = sep.end()
        found = _extent(text, start)
        if found is None:
            yield UndecodedMessage(
                "malformed_message", f"the frame breaks off at character {start}"
            )
            return
        end = found
        yield _decode_json(text, start, end, max_bytes)


def _extent(text: str, start: int) -> int | None:
    """End of the JSON value starting at ``text[start]``, found without decoding it; None if
    it does not end (a string or bracket left open)."""
    m = _FLAT_OBJECT.match(text, start)
    if m is not None:
        return m.end()
    c = text[start : start + 1]
    if c == '"':
        m = _STRING.match(text, start)
        return None if m is None else m.end()
    if c not in ("[", "{"):
        m = _SCALAR.match(text, start)
        return None if m is None else m.end()
    depth, pos = 0, start
    while True:
        m = _BRACKET_OR_QUOTE.search(text, pos)
        if m is None:
            return None
        c = m.group()
        if c == '"':
            rest = _STRING_REST.match(text, m.end())
            if rest is None:
                return None
            pos = rest.end()
            continue
        depth += 1 if c in "[{" else -1
        pos = m.end()
        if depth == 0:
            return pos


def _decode_json(text: str, start: int, end: int, max_bytes: int) -> Any:
    if end - start > max_bytes:
        return _too_large(end - start, "characters", max_bytes)
    try:
        return orjson.loads(text[start:end])
    except _JSON_ERRORS as exc:
        return UndecodedMessage("malformed_message", f"{type(exc).__name__}: {exc}"[:300])
