"""Reading Avro's binary encoding by hand, for the few hot or tolerant paths that skip
fastavro (the job's trade/quote reader, the forwarder's failed-delivery accounting)."""

from __future__ import annotations


class AvroBinaryError(ValueError):
    """The bytes are not valid Avro binary at this offset."""


def read_long(b: bytes, i: int) -> tuple[int, int]:
    """(zig-zag varint long at offset i, offset after it). IndexError past the end."""
    x = b[i]
    if x < 0x80:
        return (x >> 1) ^ -(x & 1), i + 1
    r = x & 0x7F
    s = 7
    i += 1
    while True:
        x = b[i]
        i += 1
        r |= (x & 0x7F) << s
        if x < 0x80:
            return (r >> 1) ^ -(r & 1), i
        s += 7
        if s > 63:
            raise AvroBinaryError("varint longer than 10 bytes")


def read_string(b: bytes, i: int) -> tuple[str, int]:
    """(UTF-8 string at offset i, offset after it)."""
    n, i = read_long(b, i)
    j = i + n
    if n < 0 or j > len(b):
        raise AvroBinaryError("string length out of range")
    return b[i:j].decode(), j
