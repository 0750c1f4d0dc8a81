"""RFC 3339 nanosecond strings and msgpack Timestamp ext -1, as Alpaca sends them."""

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from torghut.sim.protocol import encode_json, encode_msgpack
from torghut.sim.timestamps import (
    TimestampFormatError,
    format_rfc3339_ns,
    from_wire_timestamp,
    parse_rfc3339_ns,
    to_msgpack_timestamp,
)

T0 = 1_709_303_400_123_456_789  # 2024-03-01T14:30:00.123456789Z


def test_formats_nanoseconds_like_go_rfc3339nano():
    assert format_rfc3339_ns(T0) == "2024-03-01T14:30:00.123456789Z"
    assert format_rfc3339_ns(1_709_303_400_120_000_000) == "2024-03-01T14:30:00.12Z"
    assert format_rfc3339_ns(1_709_303_400_000_000_000) == "2024-03-01T14:30:00Z"
    assert format_rfc3339_ns(1_709_303_400_000_000_001) == "2024-03-01T14:30:00.000000001Z"


def test_parses_fractions_and_offsets():
    assert parse_rfc3339_ns("2024-03-01T14:30:00.123456789Z") == T0
    assert parse_rfc3339_ns("2024-03-01T09:30:00.123456789-05:00") == T0
    assert parse_rfc3339_ns("2024-03-01T14:30:00.5Z") == 1_709_303_400_500_000_000
    with pytest.raises(TimestampFormatError):
        parse_rfc3339_ns("2024-03-01 14:30:00")


@given(st.integers(min_value=0, max_value=4_102_444_800 * 10**9))
def test_rfc3339_round_trips_every_nanosecond(ns):
    assert parse_rfc3339_ns(format_rfc3339_ns(ns)) == ns


@given(st.integers(min_value=0, max_value=4_102_444_800 * 10**9))
def test_msgpack_timestamp_round_trips_every_nanosecond(ns):
    packed = msgpack.packb(to_msgpack_timestamp(ns))
    assert from_wire_timestamp(msgpack.unpackb(packed)) == ns


def test_msgpack_frames_carry_timestamp_ext_type_minus_1():
    frame = encode_msgpack([{"T": "t", "S": "AAPL", "t": T0}])
    assert b"\xd7\xff" in frame  # fixext 8 with ext type -1: msgpack's 64-bit timestamp
    (msg,) = msgpack.unpackb(frame)
    assert isinstance(msg["t"], msgpack.Timestamp)
    assert msg["t"].to_unix_nano() == T0


def test_json_frames_are_arrays_with_rfc3339_strings():
    assert encode_json([{"T": "t", "S": "AAPL", "p": 1.5, "t": T0}]) == (
        b'[{"T":"t","S":"AAPL","p":1.5,"t":"2024-03-01T14:30:00.123456789Z"}]'
    )


def test_the_shape_of_a_timestamp_with_an_impossible_date_is_a_format_error():
    """A recorded frame's `t` may be anything: a replay keeps such a message as it is."""
    for text in ("2024-13-01T00:00:00Z", "2024-02-30T10:00:00Z", "2024-03-01T24:00:00Z"):
        with pytest.raises(TimestampFormatError, match="not an RFC 3339 timestamp"):
            parse_rfc3339_ns(text)
