"""The native fast path (``forwarder/_fastroute.c``) against the Python router.

Two routers with the same trace-id prefix, seq floor and clock take the same frames: one
through ``route_raw`` (falling back to decode + ``route`` when it declines, as the WebSocket
client does), the other always through decode + ``route``. Produced records (topic, value
bytes, key, timestamp, in order), ``track`` calls, rejects, metrics, seqs, trace ids, slots
and dedup state must be identical. Frames with a trade or quote must be taken natively
(other messages in them handed to Python in order); hostile bytes must never crash and end
the same as in Python.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import msgpack
import pytest
from confluent_kafka import KafkaException, Producer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import forwarder.router as router_mod
from forwarder.router import NATIVE
from shared.limits import DEFAULT_LIMITS
from tests.support.fastroute import (
    INGEST,
    MAX_FUTURE,
    T0,
    DupMap,
    Raw,
    Side,
    fixed_clock,
    pack,
    run_both,
    ts_ext,
)
from torghut.sim import SyntheticConfig, SyntheticMarket
from torghut.sim.protocol import encode_msgpack


def test_the_native_fast_path_is_compiled_in_this_install() -> None:
    # `make setup` compiles forwarder/_fastroute.c (editable install); a broken build must
    # fail here rather than leave the forwarder silently on the pure-Python path
    assert NATIVE, "forwarder._fastroute is not importable: run `make setup` (needs gcc, Python.h)"


HOSTILE = settings(
    max_examples=4000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# --- valid trade/quote frames ---------------------------------------------------------------

BOUNDARY_INTS = [
    1,
    63,
    64,
    8191,
    8192,
    (1 << 13) - 1,
    (1 << 20) - 1,
    1 << 20,
    (1 << 27) - 1,
    1 << 27,
    (1 << 34) - 1,
    1 << 41,
    (1 << 48) - 1,
    (1 << 55) - 1,
    1 << 55,
    (1 << 62) - 1,
    1 << 62,
    (1 << 63) - 1,
]
symbols = st.sampled_from(
    ["AAPL", "SPY", "MSFT", "BRK.B", "NVDA", "Ü", "日本", "A" * 40]
) | st.text(min_size=1, max_size=6)
event_times = st.sampled_from(
    [T0, T0 - 1, INGEST + MAX_FUTURE, 1, 8191, 8192, 10**9]
) | st.integers(1, INGEST + MAX_FUTURE)
ts_forms = st.sampled_from(["auto", "auto", "64", "96", "int"])
trade_ids = st.sampled_from([*BOUNDARY_INTS, 0, -1, -(1 << 63), 7, 8]) | st.integers(
    -(1 << 63), (1 << 63) - 1
)
# prices and sizes: mostly non-negative finite numbers (encoded natively when within the
# plausibility limits, else rejected like the rest), else what the router rejects
# (invalid_price / invalid_size) and the native path must hand to it
in_range = (
    st.floats(min_value=1e-6, max_value=1e7)
    | st.floats(min_value=0.0, allow_nan=False, allow_infinity=False)
    | st.integers(0, 1 << 53)
    | st.sampled_from([0.0, -0.0, 5e-324, 1.5, 100.01, 1.7976931348623157e308])
    # the plausibility limits (shared/limits.py: prices 1e-6..1e7, sizes 0..1e10) and their
    # neighbours just outside
    | st.sampled_from([1e-6, 1e7, 1e10, math.nextafter(1e-6, 0), math.nextafter(1e7, math.inf)])
    | st.sampled_from([math.nextafter(1e10, math.inf), 1e308, 1e-308])
)
out_of_range = (
    st.floats(max_value=-5e-324, allow_nan=False)
    | st.integers(-(1 << 53), -1)
    | st.sampled_from([math.nan, -math.nan, math.inf, -math.inf, -5e-324, -1.0])
    | st.floats(allow_nan=True).filter(math.isnan)
)


@st.composite
def price_or_size(draw: Any, positive: bool = False) -> Any:
    """In range 7 times in 8; a trade price must also be > 0 (0 and -0.0 are refused)."""
    if draw(st.integers(0, 7)):
        v = draw(in_range)
        if positive and v == 0:
            return draw(st.sampled_from([1, 0.01]))
        return v
    if positive and draw(st.booleans()):
        return draw(st.sampled_from([0, 0.0, -0.0]))
    return draw(out_of_range)


def _price_ok(v: Any, zero_ok: bool = False) -> bool:
    """Within the plausibility limits (shared/limits.py); 0 for a quote's empty side."""
    return DEFAULT_LIMITS.price_problem(v, zero_ok=zero_ok) is None


def _size_ok(v: Any) -> bool:
    return DEFAULT_LIMITS.size_problem(v) is None


def in_range_values(m: Any) -> bool:
    """A trade/quote whose prices and sizes the router accepts (the rest is rejected)."""
    if m.get("T") == "t":
        return _price_ok(m["p"]) and _size_ok(m["s"])
    return all(_price_ok(m[k], True) for k in ("bp", "ap")) and all(
        _size_ok(m[k]) for k in ("bs", "as")
    )


exchanges = st.sampled_from(["V", "N", "Q", "", "ÿ"]) | st.text(max_size=3)
conditions = st.none() | st.lists(
    st.sampled_from(["@", "T", "I", "R", "Ü"]) | st.text(max_size=3), max_size=4
)
ABSENT = object()


def _optional_fields(draw: Any, m: dict[str, Any]) -> dict[str, Any]:
    """Conditions and tape present or absent, in any key order."""
    c = draw(st.just(ABSENT) | conditions)
    if c is not ABSENT:
        m["c"] = c
    z = draw(st.just(ABSENT) | exchanges)
    if z is not ABSENT:
        m["z"] = z
    if draw(st.booleans()):
        m = dict(reversed(list(m.items())))
    return m


@st.composite
def trade(draw: Any, sym: Any = symbols) -> dict[str, Any]:
    m: dict[str, Any] = {
        "T": "t",
        "S": draw(sym),
        "i": draw(trade_ids),
        "x": draw(exchanges),
        "p": draw(price_or_size(positive=True)),
        "s": draw(price_or_size()),
        "t": ts_ext(draw(event_times), draw(ts_forms)),
    }
    m = _optional_fields(draw, m)
    if draw(st.integers(0, 9)) == 0:
        m[draw(st.sampled_from(["r", "bx", "zz"]))] = draw(
            st.none()
            | st.integers(-(1 << 63), (1 << 64) - 1)
            | st.text(max_size=3)
            | st.booleans()
            | st.floats()
        )
    return m


@st.composite
def quote(draw: Any, sym: Any = symbols) -> dict[str, Any]:
    m: dict[str, Any] = {
        "T": "q",
        "S": draw(sym),
        "bx": draw(exchanges),
        "bp": draw(price_or_size()),
        "bs": draw(price_or_size()),
        "ax": draw(exchanges),
        "ap": draw(price_or_size()),
        "as": draw(price_or_size()),
        "t": ts_ext(draw(event_times), draw(ts_forms)),
    }
    return _optional_fields(draw, m)


def _synthetic_others() -> list[Raw]:
    """Bars, statuses, LULDs, corrections, cancels and control messages as the simulator
    encodes them: the native path hands these to Python, in the frame's order."""
    cfg = SyntheticConfig(
        symbols=("AAPL", "SPY"), seed=5, correction_rate=0.2, cancel_error_rate=0.2
    )
    market = SyntheticMarket(cfg, T0, 5)
    msgs = [m for m in market.advance(T0 + 130 * 10**9) + market.finish() if m["T"] not in "tq"]
    msgs += [{"T": "success", "msg": "authenticated"}, {"T": "error", "code": 407, "msg": "x"}]
    return [Raw(encode_msgpack([m])[1:]) for m in msgs]


OTHERS = _synthetic_others()


@st.composite
def valid_frames(draw: Any, others: bool = True) -> list[bytes]:
    """Frames drawn from a pool of messages, so duplicates (within and across frames) and
    symbols first seen mid-frame are common; with ``others``, mixed with the other types."""
    pool = draw(st.lists(trade() | quote(), min_size=1, max_size=30))
    if others:
        pool += draw(st.lists(st.sampled_from(OTHERS), max_size=6))
    frames = []
    for _ in range(draw(st.integers(1, 6))):
        idx = draw(st.lists(st.integers(0, len(pool) - 1), min_size=1, max_size=40))
        frames.append(pack([pool[i] for i in idx]))
    return frames


def has_trade_or_quote(raw: bytes) -> bool:
    """A frame the native path takes: one trade or quote in it that it encodes itself."""
    return any(
        type(m) is dict and m.get("T") in ("t", "q") and in_range_values(m)
        for m in msgpack.unpackb(raw)
    )


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    frames=valid_frames(),
    n0=st.sampled_from([0x1000, 0x1FFE, 0x2000 - 1, 0xFFFFF - 3, 0x1000 + 4096 * 7 - 2])
    | st.integers(0x1000, 1 << 40),
    floor=st.sampled_from([0, 1, 60, 8190, (1 << 20) - 5, (1 << 27) - 3, 1_709_303_400_000_000])
    | st.integers(0, 1 << 56),
    max_keys=st.sampled_from([100_000, 100_000, 3, 1]),
    dedup_max=st.sampled_from([200_000, 200_000, 5]),
    buffer_every=st.sampled_from([0, 0, 0, 2, 5]),
    steps=st.lists(st.sampled_from([0.0, 0.5, 299.0, 301.0]), min_size=1, max_size=4),
)
def test_native_path_equals_the_python_router_on_trade_quote_and_mixed_frames(
    frames, n0, floor, max_keys, dedup_max, buffer_every, steps
):
    native, _ = run_both(
        frames,
        n0=n0,
        floor=floor,
        steps=steps,
        max_keys=max_keys,
        dedup_max=dedup_max,
        buffer_every=buffer_every,
    )
    # a frame of only other types is left to route() whole
    assert native.paths == ["native" if has_trade_or_quote(f) else "python" for f in frames]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    msgs=st.lists(trade(sym=st.sampled_from(["A", "B"])) | quote(sym=st.just("A")), max_size=25),
    n0=st.integers(0x1000, 1 << 40),
)
def test_out_of_range_prices_and_sizes_are_rejected_alike_and_consume_nothing(msgs, n0):
    """Trade price <= 0, quote price < 0, size < 0, or any of them NaN/inf: both paths
    reject it by reason (invalid_price before invalid_size), with the field and value in
    the detail; it takes no seq, no trace id and no dedup entry, so a later valid message
    with the same key is forwarded."""
    if not msgs:
        return
    repaired = [
        m | ({"p": 1.0, "s": 1.0} if m["T"] == "t" else {"bp": 1, "bs": 1, "ap": 2, "as": 1})
        for m in msgs
    ]
    frames = [pack(msgs), pack(repaired)]
    native, _ = run_both(frames, n0=n0)
    bad = [
        m for m in msgpack.unpackb(frames[0], timestamp=2, use_list=False) if not in_range_values(m)
    ]
    expect = []
    for m in bad:
        if m["T"] == "t":
            field = "p" if not _price_ok(m["p"]) else "s"
        else:
            prices = [k for k in ("bp", "ap") if not _price_ok(m[k], True)]
            field = prices[0] if prices else next(k for k in ("bs", "as") if not _size_ok(m[k]))
        reason = "invalid_price" if field in ("p", "bp", "ap") else "invalid_size"
        expect.append((reason, f"{field}={m[field]!r}"))
    got = [(reason, detail.split(" ")[0]) for reason, detail, _ in native.rejects]
    assert got == expect
    produced = len(native.prod.records)
    r = native.router
    assert native.seqs.issued == produced
    assert r.trace_ids._n == n0 + produced
    assert len(r.dedup["t"].order) + len(r.dedup["q"].order) == produced
    # the repaired frame: every key forwarded exactly once over both frames
    decoded = msgpack.unpackb(frames[1], timestamp=2, use_list=False)
    keys = {(m["T"], m["S"], m["i"] if m["T"] == "t" else m["t"]) for m in decoded}
    assert produced == len(keys)
    assert native.paths[1] == "native"


def test_event_times_beyond_max_future_are_rejected_alike_and_the_limit_is_per_router():
    """Default max_future_s = 2: a trade 3 s past its frame's ingest time is rejected
    (event_ts_in_future), one 1 s ahead is forwarded; a router with max_future_ns = 0.5 s
    rejects both; both paths agree."""
    ahead = [_good_trade(i=1, t=INGEST + 3 * 10**9), _good_trade(i=2, t=INGEST + 10**9)]
    ahead += [_good_quote(t=INGEST + 3 * 10**9), _good_quote(t=INGEST + 10**9)]
    native, _ = run_both([pack(ahead)])
    assert native.paths == ["native"]
    assert [r[0] for r in native.rejects] == ["event_ts_in_future"] * 2
    assert "3.000s ahead" in native.rejects[0][1]
    assert [rec[3] for rec in native.prod.records] == [(INGEST + 10**9) // 10**6] * 2
    strict, _ = run_both([pack(ahead)], max_future_ns=5 * 10**8)
    assert [r[0] for r in strict.rejects] == ["event_ts_in_future"] * 4
    assert strict.prod.records == [] and strict.paths == ["python"]


def test_trace_ids_roll_over_4096_and_seqs_cross_varint_boundaries_natively():
    msgs = [
        {"T": "t" if k % 3 else "q", "S": f"S{k % 5}", "i": k, "x": "V", "p": 1.0, "s": 1}
        | ({"t": ts_ext(T0 + k)} if k % 3 else {"t": ts_ext(T0 + k), "bx": "V", "ax": "Q"})
        | ({} if k % 3 else {"bp": 1.0, "bs": 2, "ap": 1.5, "as": 3})
        for k in range(9000)
    ]
    frames = [pack(msgs[i : i + 500]) for i in range(0, len(msgs), 500)]
    native, _ = run_both(frames, n0=0x1000 + 4096 - 100, floor=(1 << 20) - 700)
    assert native.paths == ["native"] * len(frames)
    assert len(native.prod.records) == 9000
    assert native.router.trace_ids._n == 0x1000 + 4096 - 100 + 9000


def test_many_symbols_in_one_frame_and_the_slot_table_cleared_mid_frame():
    msgs = [
        {"T": "t", "S": f"SYM{k % 150}", "i": k % 300, "x": "V", "p": 1.0, "s": 1, "t": T0 + k}
        for k in range(1200)
    ]
    native, _ = run_both([pack(msgs[:600]), pack(msgs[600:])], max_keys=50)
    assert native.paths == ["native", "native"]
    assert native.metrics.dedup_dropped[router_mod._T_IDX] == 900


@pytest.mark.parametrize("error", [ValueError, TypeError, OverflowError, KeyError])
def test_a_produce_error_route_rejects_is_rejected_the_same_way(error):
    msgs = [
        {"T": "t", "S": "A", "i": k, "x": "V", "p": 1.0, "s": 1, "c": ["@"], "t": T0 + k}
        for k in range(10)
    ]
    native, _ = run_both([pack(msgs)], error_at=4, error=error)
    assert native.paths == ["native"]
    assert [r[0] for r in native.rejects] == ["invalid_field"]
    assert native.rejects[0][2]["i"] == 3  # the decoded message of the failed produce


def test_a_produce_error_route_does_not_catch_escapes_after_the_bookkeeping():
    msgs = [
        {"T": "q", "S": "A", "bx": "V", "bp": 1.0, "bs": 1, "ax": "Q", "ap": 2.0, "as": 3}
        | {"t": T0 + k}
        for k in range(10)
    ]
    native, python = run_both([pack(msgs), pack(msgs[::-1])], error_at=6, error=KafkaException)
    assert native.paths == ["native"]  # the first frame raised (in both), the second routed
    # 6 numbered before the error escaped; then the 4 not seen yet, the rest are duplicates
    assert python.router.seqs.issued == native.router.seqs.issued == 10


# --- frames the native path must decline --------------------------------------------------


def _good_trade(**kw: Any) -> dict[str, Any]:
    return {"T": "t", "S": "A", "i": 1, "x": "V", "p": 1.0, "s": 1, "t": T0} | kw


def _good_quote(**kw: Any) -> dict[str, Any]:
    base = {"T": "q", "S": "A", "bx": "V", "bp": 1.0, "bs": 1, "ax": "Q", "ap": 2.0, "as": 3}
    return base | {"t": T0} | kw


DECLINED: list[Any] = [
    [],
    [{"T": "b", "S": "A", "o": 1.0, "h": 1, "l": 1, "c": 1, "v": 1, "n": 2, "vw": 1.0, "t": T0}],
    [{"T": "success", "msg": "authenticated"}],
    [42],
    [_good_trade(i=True)],
    [_good_trade(i=1 << 63)],
    [_good_trade(i=1.0)],
    [_good_trade(p=True)],
    [_good_trade(p=None)],
    [_good_trade(s=(1 << 53) + 1)],
    [_good_trade(p=0.0)],
    [_good_trade(p=0)],
    [_good_trade(p=-0.0)],
    [_good_trade(p=-1.5)],
    [_good_trade(p=math.nan)],
    [_good_trade(p=math.inf)],
    [_good_trade(p=-math.inf)],
    [_good_trade(s=-1)],
    [_good_trade(s=-5e-324)],
    [_good_trade(s=math.nan)],
    [_good_trade(s=math.inf)],
    [_good_quote(bp=-0.01)],
    [_good_quote(ap=math.nan)],
    [_good_quote(ap=math.inf)],
    [_good_quote(bs=-1)],
    [_good_quote(**{"as": math.nan})],
    [_good_quote(bs=-math.inf)],
    [_good_trade(S="")],
    [_good_trade(S=5)],
    [_good_trade(S=b"A")],
    [_good_trade(x=None)],
    [_good_trade(z=None)],
    [_good_trade(c=["@", 5])],
    [_good_trade(c="@")],
    [_good_trade(c=[["@"]])],
    [_good_trade(t=0)],
    [_good_trade(t=-5)],
    [_good_trade(t=True)],
    [_good_trade(t="2024-03-01T14:30:00Z")],
    [_good_trade(t=INGEST + MAX_FUTURE + 10)],
    [_good_trade(t=ts_ext(INGEST + MAX_FUTURE + 10))],
    [_good_trade(t=Raw(b"\xc7\x0c\xff" + struct.pack(">Iq", 10**9, 1)))],
    [_good_trade(t=Raw(b"\xc7\x0c\xff" + struct.pack(">Iq", 5, -1)))],
    [_good_trade(t=Raw(b"\xd5\xff\x00\x01"))],
    [_good_trade(t=Raw(b"\xd6\x05\x00\x00\x00\x01"))],
    [_good_trade(r={"nested": 1})],
    [_good_trade(r=[1, 2])],
    [{k: v for k, v in _good_trade().items() if k != "x"}],
    [{k: v for k, v in _good_quote().items() if k != "as"}],
    [_good_quote(bx=1)],
    [_good_quote(T="Q")],
    [{"S": "A", "t": T0}],
    [DupMap([("T", "t"), *_good_trade().items()])],
    [DupMap([*_good_trade().items(), ("p", "x")])],
    [Raw(b"\x81\x01\x02")],  # int key: msgpack refuses it
    [Raw(b"\x81\xc4\x01T\xa1t")],  # bytes key
]


@pytest.mark.parametrize("frame", DECLINED, ids=range(len(DECLINED)))
def test_anything_but_well_formed_trades_and_quotes_is_routed_by_python(frame):
    """Alone, such messages go to route() whole; between trades and quotes, the native path
    hands them to Python in order; undecodable frames are refused whole; the same results."""
    raw = pack(frame)
    mixed = pack([_good_trade(i=98), *frame, _good_quote(t=T0 + 7)])
    native, _ = run_both([pack([_good_trade(i=99)]), raw, raw + b"\x00", raw[:-1], mixed])
    assert native.paths[0] == "native"
    assert "native" not in native.paths[1:4]
    try:
        msgpack.unpackb(mixed, timestamp=2, use_list=False)
    except ValueError:
        assert native.paths[-1] == "malformed"
    else:
        bytes_key = b"\xc4\x01T" in mixed  # msgpack allows bytes keys; left to Python whole
        assert native.paths[-1] == ("python" if bytes_key else "native")


# --- hostile bytes --------------------------------------------------------------------------

junk_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(1 << 63), (1 << 64) - 1)
    | st.floats()
    | st.text(max_size=5)
    | st.binary(max_size=5)
    | st.sampled_from(
        [
            "t",
            "q",
            "T",
            Raw(b"\xc1"),
            Raw(b"\xca" + struct.pack(">f", 1.1)),
            Raw(b"\xcf" + struct.pack(">Q", 5)),  # non-canonical ints are still ints
            Raw(b"\xd3" + struct.pack(">q", T0)),
            Raw(b"\xa2\xed\xa0"),  # truncated UTF-8
            Raw(b"\xa3\xed\xa0\x80"),  # a surrogate
            Raw(b"\xa2\xc0\xaf"),  # overlong
            Raw(b"\xa4\xf4\x90\x80\x80"),  # above U+10FFFF
            Raw(b"\xdb\xff\xff\xff\xff"),  # a 4 GiB string, absent
            Raw(b"\xdd\xff\xff\xff\xff"),  # a 4 G-element array, absent
            Raw(b"\xdf\xff\xff\xff\xff"),  # a 4 G-entry map, absent
            Raw(b"\xc9\xff\xff\xff\xff\xff"),  # a 4 GiB ext, absent
            Raw(b"\xc7\x0c\xff" + struct.pack(">Iq", 999_999_999, 1_709_303_400)),
            Raw(b"\xd7\xff" + struct.pack(">Q", (999_999_999 << 34) | 1_709_303_400)),
            Raw(b"\xd7\xff" + struct.pack(">Q", (1_000_000_000 << 34) | 1)),
            msgpack.Timestamp(1_709_303_400, 5),
            msgpack.ExtType(5, b"abcd"),
            T0,
        ]
    )
)
junk = st.recursive(
    junk_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["T", "S", "t", "i", "c", "x", "p", "zz"]), inner, max_size=4
        )
    ),
    max_leaves=8,
)
FIELDS = ["T", "S", "t", "i", "x", "p", "s", "c", "z", "bx", "bp", "bs", "ax", "ap", "as", "r"]


@st.composite
def junk_message(draw: Any) -> Any:
    base = draw(trade() | quote())
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.integers(0, 2))
        key = draw(st.sampled_from(FIELDS))
        if action == 0:
            base[key] = draw(junk)
        elif action == 1:
            base.pop(key, None)
        else:
            return DupMap([*base.items(), (key, draw(junk))])
    return base


@HOSTILE
@given(data=st.binary(max_size=300))
def test_random_bytes_never_crash_and_end_as_in_python(data):
    run_both([data, b"\x91" + data, b"\xdc\x00\x02" + data])


small_frames = st.lists(
    st.lists(trade() | quote() | st.sampled_from(OTHERS), min_size=1, max_size=6).map(pack),
    max_size=3,
)


@HOSTILE
@given(frames=small_frames, data=st.data())
def test_mutated_frames_never_crash_and_end_as_in_python(frames, data):
    out = []
    for raw in frames:
        b = bytearray(raw)
        for _ in range(data.draw(st.integers(1, 4))):
            op = data.draw(st.integers(0, 3))
            pos = data.draw(st.integers(0, len(b)))
            if op == 0:
                del b[pos:]
            elif op == 1 and pos < len(b):
                b[pos] = data.draw(st.integers(0, 255))
            elif op == 2:
                b[pos:pos] = data.draw(st.binary(min_size=1, max_size=6))
            elif op == 3:
                del b[pos : pos + data.draw(st.integers(1, 8))]
        out.append(bytes(b))
    run_both(out)


@HOSTILE
@given(msgs=st.lists(junk_message() | junk, min_size=1, max_size=6))
def test_structured_junk_never_crashes_and_ends_as_in_python(msgs):
    run_both([pack(msgs), pack([msgs[0]])])


def test_hostile_examples_add_up_to_over_ten_thousand():
    assert 3 * HOSTILE.max_examples >= 10_000


# --- the real librdkafka producer: called positionally, the same records ------------------


def test_the_confluent_producer_gets_the_same_records_positionally():
    """confluent_kafka.Producer.produce is called with positional arguments by the native
    path; its records (read back from failed deliveries: no broker) equal those of the
    keyword call of route()."""
    msgs = [
        _good_trade(i=k, t=T0 + k, S=f"S{k % 3}") if k % 2 else _good_quote(t=T0 + k)
        for k in range(40)
    ]
    got: dict[bool, list[tuple[Any, ...]]] = {}
    for native in (True, False):
        delivered: list[tuple[Any, ...]] = []
        kafka = Producer(
            {
                "bootstrap.servers": "127.0.0.1:9",
                "message.timeout.ms": 300,
                "log_level": 0,
                "on_delivery": lambda err, m, out=delivered: out.append(
                    (m.topic(), m.value(), m.key(), m.timestamp()[1], m.partition())
                ),
            }
        )
        side = Side(b"c0ffee01", 0x1000, 1_000_000)
        side.prod.raw_produce = kafka.produce  # type: ignore[method-assign]
        with fixed_clock([5.0]):
            side.feed(pack(msgs), INGEST, native)
        assert side.paths == ["native" if native else "python"]
        assert kafka.flush(10) == 0
        got[native] = delivered
    assert len(got[True]) == 40
    assert sorted(got[True]) == sorted(got[False])


def test_the_native_path_can_be_switched_off():
    side = Side(b"c0ffee01", 0x1000, 0)
    side.router.native = False
    assert side.router.route_raw(pack([_good_trade()]), INGEST) is False
    assert not side.prod.records
