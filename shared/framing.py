"""The frame the Flink job hands to its one transactional KafkaSink.

Layout (big endian): u16 topic length, topic (UTF-8), u16 key length, key, value. The
Java side is `dev.torghut.flink.FramedRecordSerializationSchema` (jvm/flink).
"""

from __future__ import annotations

import struct

_U16 = struct.Struct(">H")


class FrameError(ValueError):
    """A frame is malformed or a field does not fit its u16 length."""


def frame_record(topic: str, key: bytes | None, value: bytes) -> bytes:
    t = topic.encode()
    k = key or b""
    if len(t) > 0xFFFF or len(k) > 0xFFFF:
        raise FrameError(f"topic or key longer than 65535 bytes (topic {topic!r})")
    return b"".join((_U16.pack(len(t)), t, _U16.pack(len(k)), k, value))


def unframe_record(frame: bytes) -> tuple[str, bytes | None, bytes]:
    """Inverse of `frame_record` (used by tests and by tools reading frames)."""
    try:
        (tl,) = _U16.unpack_from(frame, 0)
        topic = frame[2 : 2 + tl].decode()
        (kl,) = _U16.unpack_from(frame, 2 + tl)
    except (struct.error, UnicodeDecodeError) as exc:
        raise FrameError(f"malformed frame of {len(frame)} bytes: {exc}") from exc
    start = 4 + tl
    if len(frame) < start + kl:
        raise FrameError(f"frame of {len(frame)} bytes truncated inside its key")
    key = frame[start : start + kl] or None
    return topic, key, frame[start + kl :]
