"""The keyed function's per-symbol cache is bounded, and an evicted symbol comes back exact.

`SymbolTaFunction` keeps each symbol's live objects (`SymbolState`, `SignalState`) in a
cache between records; everything in it is also in keyed state (snapshot + log). A symbol
idle for `symbol_cache_idle_s`, or the least recently used one beyond `symbol_cache_max`,
is dropped, and its next record or timer rebuilds it from keyed state the way a restore
does. These tests run the function on the in-memory keyed state and timers of
`test_ta_state_replay` with a clock the test moves, and compare the final bars and signals
with a run whose cache never evicts: they must be equal field for field.
"""

from __future__ import annotations

import pytest

import flink_job.functions as functions
from flink_job.functions import new_symbol_cache
from tests.support.registry import InMemoryRegistry
from tests.support.ta_harness import T0, Harness, S, decoded_outputs, is_final, raw_envelopes


class Clock:
    """The cache's timer (seconds); the test moves it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class CachedHarness(Harness):
    """`Harness` whose function's cache has `max_symbols`/`idle_s` and the test's clock."""

    def __init__(self, reg: InMemoryRegistry, max_symbols: int, idle_s: float) -> None:
        self.clock = Clock()
        self.max_symbols, self.idle_s = max_symbols, idle_s
        self.max_cached = 0
        super().__init__(reg, 512)

    def _open(self):
        fn = super()._open()
        fn.cache = new_symbol_cache(self.max_symbols, self.idle_s, timer=self.clock)
        return fn

    def feed(self, records) -> None:
        super().feed(records)
        self.max_cached = max(self.max_cached, len(self.fn.cache))


def _rotating_stream(symbols: tuple[str, ...], seconds: int, idle: dict[str, range]):
    """(kind, event ns, symbol, fields): every symbol trades and quotes 4 times a second,
    except in its `idle` seconds (absent from the feed)."""
    out = []
    price = {s: 50.0 + i for i, s in enumerate(symbols)}
    n = 0
    for sec in range(seconds):
        for j in range(4):
            for k, sym in enumerate(symbols):
                if sec in idle.get(sym, ()):
                    continue
                n += 1
                ts = T0 + sec * S + j * (S // 4) + k * 1000
                price[sym] *= 1.0005 if (n * 7 + k) % 5 < 3 else 0.9995
                if j == 1:
                    out.append(("q", ts, sym, (price[sym] - 0.01, price[sym] + 0.01, 300.0, 100.0)))
                else:
                    out.append(("t", ts, sym, (round(price[sym], 4), float(1 + n % 9), n)))
    return out


def _run(harness: Harness, records, per_second_s: float = 1.0) -> list:
    """Feed one event-time second per flush; the cache clock moves `per_second_s` per flush."""
    by_second: dict[int, list] = {}
    for r in records:
        by_second.setdefault((r[2] - T0) // S, []).append(r)
    for sec in sorted(by_second):
        if isinstance(harness, CachedHarness):
            harness.clock.now += per_second_s
        harness.feed(by_second[sec])
    harness.advance(1 << 62)
    return harness.out


def _records(reg: InMemoryRegistry, stream) -> list:
    raw = raw_envelopes(stream, reg)
    return [(sym, k, ts, data) for (k, ts, sym, _f), data in zip(stream, raw, strict=True)]


def test_an_idle_symbols_cache_entry_is_evicted_and_its_return_gives_identical_results(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reg = InMemoryRegistry()
    monkeypatch.setattr(functions, "SchemaRegistryClient", lambda url, **_: reg)
    # IDLE is absent for 20 s in the middle: with a 5 s idle time its entry must go
    symbols = ("AAPL", "MSFT", "IDLE")
    stream = _rotating_stream(symbols, 60, {"IDLE": range(20, 40)})
    records = _records(reg, stream)

    never = CachedHarness(reg, max_symbols=100, idle_s=1e9)
    expected = decoded_outputs(_run(never, records), reg)

    evicting = CachedHarness(reg, max_symbols=100, idle_s=5.0)
    by_second: dict[int, list] = {}
    for r in records:
        by_second.setdefault((r[2] - T0) // S, []).append(r)
    evicted_at = returned_at = None
    for sec in sorted(by_second):
        evicting.clock.now += 1.0
        evicting.feed(by_second[sec])
        cached = set(evicting.fn.cache)
        if evicted_at is None and "IDLE" not in cached:
            evicted_at = sec
        if evicted_at is not None and returned_at is None and "IDLE" in cached:
            returned_at = sec
        assert {"AAPL", "MSFT"} <= cached, f"second {sec}: an active symbol was evicted"
    evicting.advance(1 << 62)

    assert evicted_at is not None and 20 < evicted_at <= 27, evicted_at
    assert returned_at == 40
    got = decoded_outputs(evicting.out, reg)
    assert len([f for f in expected if is_final(f)]) > 300
    idle_finals = [f for f in got if is_final(f) and dict(f[1])["symbol"] == "IDLE"]
    assert len(idle_finals) > 2 * 35, "IDLE's bars after its return must be compared too"
    assert got == expected


def test_the_cache_never_holds_more_than_its_bound_and_the_outputs_stay_equal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Six symbols through a cache of two: every batch but few is a miss rebuilt from
    keyed state (snapshot + log replay), and the final output is still the same."""
    reg = InMemoryRegistry()
    monkeypatch.setattr(functions, "SchemaRegistryClient", lambda url, **_: reg)
    symbols = ("A", "B", "C", "D", "E", "F")
    records = _records(reg, _rotating_stream(symbols, 30, {"D": range(5, 15)}))

    expected = decoded_outputs(_run(CachedHarness(reg, max_symbols=100, idle_s=1e9), records), reg)
    small = CachedHarness(reg, max_symbols=2, idle_s=1e9)
    got = decoded_outputs(_run(small, records), reg)

    assert small.max_cached == 2
    assert len([f for f in expected if is_final(f)]) > 300
    assert got == expected


def test_a_status_frame_lists_only_the_symbols_active_within_the_idle_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reg = InMemoryRegistry()
    monkeypatch.setattr(functions, "SchemaRegistryClient", lambda url, **_: reg)
    records = _records(reg, _rotating_stream(("AAPL", "GONE"), 10, {"GONE": range(3, 10)}))
    h = CachedHarness(reg, max_symbols=100, idle_s=4.0)
    _run(h, records)
    from shared.framing import unframe_record
    from shared.serde import AvroDeserializer

    h.fn.watermark_ms = T0 // 1_000_000  # the run ended with the end-of-input watermark
    status = AvroDeserializer(reg).decode(unframe_record(h.fn._status_frame(T0))[2])  # type: ignore[arg-type]
    assert [s["symbol"] for s in status["symbols"]] == ["AAPL"]


def test_a_cache_without_room_or_idle_time_is_refused_naming_the_settings() -> None:
    with pytest.raises(ValueError, match="TORGHUT_TA_SYMBOL_CACHE_MAX"):
        new_symbol_cache(0, 60.0)
    with pytest.raises(ValueError, match="TORGHUT_TA_SYMBOL_CACHE_IDLE_S"):
        new_symbol_cache(10, 0)


class _Entry:
    __slots__ = ("used",)


def test_symbol_cache_drops_entries_idle_too_long_and_the_least_recently_used_beyond_its_size():
    clock = Clock()
    cache = new_symbol_cache(3, 10.0, timer=clock)
    for key in ("A", "B", "C"):
        cache[key] = _Entry()
        clock.now += 1.0
    assert cache.get("A") is not None  # A is now the most recently used
    cache["D"] = _Entry()  # over the size: B, the least recently used, goes
    assert list(cache) == ["C", "A", "D"]
    clock.now += 9.5  # C was last used 10.5 s ago, A 9.5 s, D 9.5 s
    cache.expire()
    assert list(cache) == ["A", "D"]
    clock.now += 1.0
    assert cache.get("A") is None and len(cache) == 0
