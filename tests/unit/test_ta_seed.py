"""A backfill's seed continues the live job's indicators (docs/design.md, "Backfill").

`SymbolTaFunction` is driven by tests/support/ta_harness.py's `Harness` (in-memory
keyed state and timers, partition marks, watermarks). A key without keyed signal state starts
from its seed: the first live bars after the backfill's end carry exactly the indicators
TA-Lib computes over the backfilled bars followed by the live ones, across a restore too. A
live bar that starts before the seed's end (the backfill and the live job overlap) is never
lost: the seed is ignored for that symbol and its indicators start fresh, as without a seed.
"""

from __future__ import annotations

import json
import random

import pytest

import flink_job.functions as functions
from flink_job.seed import Seed, SeedFileError, SymbolSeed, read_seed, seed_states, write_seed
from flink_job.settings import TaFunctionConfig, TaSettings
from shared.framing import unframe_record
from shared.indicators import SignalState
from shared.serde import AvroDeserializer
from tests.support.bar_oracle import OracleBar, oracle_bars
from tests.support.registry import InMemoryRegistry
from tests.support.signal_oracle import assert_series_signals
from tests.support.ta_harness import Harness, RuntimeContext, raw_envelopes

S = 1_000_000_000
T0 = 1_796_394_600 * S  # 2026-12-04 14:30 UTC
END = T0 + 90 * S  # the backfill's end


def _trades(sym: str, start: int, seconds: int, seed: int) -> list[tuple[str, int, str, tuple]]:
    """(kind, ts, symbol, (price, size, id)): 3 trades a second, a random walk."""
    rng = random.Random(seed)
    price, out = 100.0, []
    for i in range(seconds * 3):
        price *= 1 + rng.gauss(0, 0.002)
        ts = start + i * (S // 3) + rng.randrange(S // 4)
        out.append(("t", ts, sym, (round(price, 2), float(rng.randint(1, 9)), seed * 10**6 + i)))
    return out


def _seed_state(bars: list[OracleBar]) -> tuple:
    sig = SignalState()
    for b in bars:
        sig.update(b)
    return sig.to_state()


class SeededHarness(Harness):
    seed: tuple = ()

    def _open(self) -> functions.SymbolTaFunction:
        fn = functions.SymbolTaFunction(
            TaFunctionConfig(
                registry_url="mem",
                provisional_interval_ms=0,
                status_interval_ms=3_600_000,
                job_name="test",
                state_log_max=self.log_max,
                seed=self.seed,
            )
        )
        fn.open(RuntimeContext(self.store))  # type: ignore[arg-type]
        fn.last_status_ns = 1 << 62  # no status frames
        return fn


def _run(reg, seed: tuple, stream, restore_at: int | None = None) -> tuple[dict, SeededHarness]:
    """Final signals by (symbol, start ns) of the live `stream` through the function; with
    `restore_at`, a crash there restores the checkpoint taken at half of it and replays."""
    SeededHarness.seed = seed
    h = SeededHarness(reg, log_max=7)
    raw = raw_envelopes(stream, reg)
    records = [(sym, "t", ts, data) for (_k, ts, sym, _f), data in zip(stream, raw, strict=True)]
    i, cp = 0, None
    while i < len(records):
        if restore_at is not None and i == restore_at // 2 and cp is None:
            cp = h.checkpoint()
        if restore_at is not None and i == restore_at and cp is not None:
            h.restore(cp)  # a new process: keyed state (or the seed) from the checkpoint
            i, restore_at = restore_at // 2, None
            continue
        h.feed([records[i]])
        h.high["q"] = h.high["t"]  # no quotes: that partition keeps up (as heartbeats do)
        i += 1
    h.advance(1 << 62)
    deser = AvroDeserializer(reg)  # type: ignore[arg-type]
    out = {}
    for frame in h.out:
        topic, _key, value = unframe_record(frame)
        rec = deser.decode(value)
        if topic == "ta.signals.v1" and rec["is_final"]:
            start = int(rec["window"]["start"].timestamp()) * S
            assert (rec["symbol"], start) not in out, "a final signal twice"
            out[(rec["symbol"], start)] = rec
    return out, h


def _assert_talib(signals: dict, bars: list[OracleBar], first: int) -> None:
    """`signals` of bars[first:] equal the oracle over all of `bars`: every TA-Lib value
    TA-Lib's, session and 5 min VWAP and 60 s volatility the signal oracle's (no quotes:
    spread and imbalance None)."""
    got = [signals.get((b.symbol, b.start_ns)) for b in bars]
    assert_series_signals(bars[0].symbol, bars, got, check=range(first, len(bars)))


@pytest.mark.parametrize("restore_at", [None, 4, 250])
def test_the_first_live_bars_after_a_seed_carry_talib_over_backfilled_plus_live_bars(
    monkeypatch: pytest.MonkeyPatch, restore_at: int | None
) -> None:
    reg = InMemoryRegistry()
    monkeypatch.setattr(functions, "SchemaRegistryClient", lambda url, **_: reg)
    back = {s: _trades(s, T0, 90, n) for n, s in enumerate(("AAPL", "MSFT"), 1)}
    back_bars = {
        s: oracle_bars([(s, ts, f[0], f[1]) for _, ts, _, f in t], S) for s, t in back.items()
    }
    seed = tuple((s, END, _seed_state(b)) for s, b in sorted(back_bars.items()))
    # live: starts 2 s after the backfill's end (MSFT), and exactly at it (AAPL)
    live = sorted(
        _trades("AAPL", END, 40, 7) + _trades("MSFT", END + 2 * S, 40, 8), key=lambda r: r[1]
    )
    signals, h = _run(reg, seed, live, restore_at)
    assert h.fn.seeds_ignored == 0
    for sym in ("AAPL", "MSFT"):
        # the first live bar continues the backfilled ones (a flat one carries their close)
        live_bars = oracle_bars(
            [(sym, ts, f[0], f[1]) for _, ts, s, f in live if s == sym],
            S,
            carry={sym: back_bars[sym][-1].close},
        )
        assert {k for k in signals if k[0] == sym} == {(sym, b.start_ns) for b in live_bars}
        bars = back_bars[sym] + live_bars
        _assert_talib(signals, bars, len(back_bars[sym]))
        # the first live bar's indicators are warm: EMA26 and MACD exist at once
        first = signals[(sym, live_bars[0].start_ns)]
        assert first["ema26"] is not None and first["macd"] is not None


def test_a_live_bar_before_the_seeds_end_is_kept_and_the_seed_is_ignored_for_its_symbol(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reg = InMemoryRegistry()
    monkeypatch.setattr(functions, "SchemaRegistryClient", lambda url, **_: reg)
    back = _trades("AAPL", T0, 90, 1) + _trades("MSFT", T0, 90, 2)
    seed = tuple(
        (
            s,
            END,
            _seed_state(oracle_bars([(s, ts, f[0], f[1]) for _, ts, x, f in back if x == s], S)),
        )
        for s in ("AAPL", "MSFT")
    )
    # AAPL's live feed starts 3 s before the backfill's end (overlap); MSFT's after it
    live = sorted(
        _trades("AAPL", END - 3 * S, 40, 7) + _trades("MSFT", END, 40, 8), key=lambda r: r[1]
    )
    signals, h = _run(reg, seed, live)
    assert h.fn.seeds_ignored == 1
    aapl = oracle_bars([("AAPL", ts, f[0], f[1]) for _, ts, s, f in live if s == "AAPL"], S)
    assert aapl[0].start_ns < END
    # every live bar is there, the ones before the seed's end too, with fresh indicators
    assert {k for k in signals if k[0] == "AAPL"} == {("AAPL", b.start_ns) for b in aapl}
    _assert_talib(signals, aapl, 0)
    assert signals[("AAPL", aapl[0].start_ns)]["ema12"] is None  # warming up again
    # MSFT did not overlap: it continues from its seed
    msft_back = oracle_bars([("MSFT", ts, f[0], f[1]) for _, ts, s, f in back if s == "MSFT"], S)
    msft = oracle_bars(
        [("MSFT", ts, f[0], f[1]) for _, ts, s, f in live if s == "MSFT"],
        S,
        carry={"MSFT": msft_back[-1].close},
    )
    _assert_talib(signals, msft_back + msft, len(msft_back))


def test_seed_files_round_trip_and_are_refused_with_other_settings_or_versions(tmp_path) -> None:
    state = _seed_state(oracle_bars([("AAPL", T0 + i * S, 100.0 + i, 1.0) for i in range(40)], S))
    path = write_seed(
        tmp_path / "seed.json",
        Seed(
            "iex", T0, END, 1000, "04:00", 5000, {"AAPL": SymbolSeed(END, 40, T0 + 40 * S, state)}
        ),
    )
    assert read_seed(path).symbols["AAPL"].signal_state == state  # JSON gives the same tuple
    assert seed_states(path, 1000, "04:00", 5000) == (("AAPL", END, state),)
    settings = TaSettings(seed_file=str(path))
    assert settings.function_config().seed == (("AAPL", END, state),)
    with pytest.raises(SeedFileError, match="bar_size_ms, session_start_local"):
        seed_states(path, 1000, "09:30", 5000)
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, "version": 2}))
    with pytest.raises(SeedFileError, match="version 2"):
        read_seed(path)
    with pytest.raises(SeedFileError, match="does not exist"):
        read_seed(tmp_path / "none.json")
