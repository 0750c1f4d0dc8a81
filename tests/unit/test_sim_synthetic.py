"""The synthetic market: deterministic by seed, Alpaca-shaped, bars consistent with trades."""

from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from torghut.sim.config import SyntheticConfig
from torghut.sim.synthetic import SyntheticMarket
from torghut.sim.timestamps import NS_PER_MIN, NS_PER_S

START = 1_709_303_412 * NS_PER_S + 345_678_901
BUSY = SyntheticConfig(
    symbols=("AAPL", "SPY"),
    trades_per_sec=40,
    quotes_per_sec=20,
    late_rate=0.05,
    out_of_order_rate=0.05,
    correction_rate=0.02,
    cancel_error_rate=0.02,
    late_delay_s=(1, 30),
    # bars of every trade: the sale-condition rules have their own tests (test_sim_conditions)
    sale_conditions="regular",
)


def run(config: SyntheticConfig, seed: int, seconds: float, chunks=None) -> list[dict]:
    market = SyntheticMarket(config, START, seed)
    end = START + int(seconds * NS_PER_S)
    out: list[dict] = []
    for cut in sorted(chunks or []):
        out += market.advance(START + cut)
    out += market.advance(end)
    return out + market.finish()


def test_same_seed_same_messages_and_different_seed_differs():
    assert run(BUSY, 7, 20) == run(BUSY, 7, 20)
    assert run(BUSY, 7, 20) != run(BUSY, 8, 20)


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=70 * NS_PER_S), max_size=20))
def test_messages_do_not_depend_on_how_the_clock_is_chunked(cuts):
    assert run(BUSY, 3, 70, chunks=cuts) == run(BUSY, 3, 70)


def test_messages_have_alpaca_shapes():
    msgs = run(BUSY, 1, 150)
    keys = {
        "t": ["T", "S", "i", "x", "p", "s", "c", "z", "t"],
        "q": ["T", "S", "bx", "bp", "bs", "ax", "ap", "as", "c", "z", "t"],
        "b": ["T", "S", "o", "h", "l", "c", "v", "t", "n", "vw"],
        "c": ["T", "S", "x", "oi", "op", "os", "oc", "ci", "cp", "cs", "cc", "z", "t"],
        "x": ["T", "S", "i", "x", "p", "s", "a", "z", "t"],
    }
    seen = set()
    for m in msgs:
        if m["T"] in keys:
            assert list(m) == keys[m["T"]], m
            seen.add(m["T"])
    assert seen == set(keys)
    assert {m["T"] for m in msgs} >= {"t", "q", "b", "u", "d", "s", "l", "c", "x"}


def test_trade_ids_increase_per_symbol_and_prices_are_cents():
    last: dict[str, int] = {}
    for m in run(BUSY, 2, 60):
        if m["T"] == "t":
            assert m["i"] > last.get(m["S"], 0)
            last[m["S"]] = m["i"]
            assert m["p"] > 0 and round(m["p"], 2) == m["p"]
            assert isinstance(m["s"], int) and m["s"] > 0


def test_timestamps_are_ns_near_the_clock_with_out_of_order_and_late_trades():
    msgs = [m for m in run(BUSY, 4, 60) if m["T"] == "t"]
    assert all(START - 31 * NS_PER_S <= m["t"] <= START + 60 * NS_PER_S for m in msgs)
    assert any(m["t"] % 1000 for m in msgs)  # nanosecond precision, not micro
    backwards = defaultdict(int)
    prev: dict[str, int] = {}
    for m in msgs:
        if m["t"] < prev.get(m["S"], 0):
            backwards[m["S"]] += 1
        prev[m["S"]] = max(prev.get(m["S"], 0), m["t"])
    assert sum(backwards.values()) > 0


def test_fractional_sizes_option():
    cfg = BUSY.model_copy(update={"fractional_sizes": True})
    sizes = [m["s"] for m in run(cfg, 5, 30) if m["T"] == "t"]
    assert any(isinstance(s, float) and s != int(s) for s in sizes)


def test_every_bar_equals_the_aggregate_of_the_trades_sent_before_it():
    """Oracle from the sent stream: b/u for (S, minute) == all trades seen so far in it."""
    msgs = run(BUSY, 6, 200)
    agg: dict[tuple[str, int], list] = {}
    checked = {"b": 0, "u": 0}
    for m in msgs:
        if m["T"] == "t":
            key = (m["S"], m["t"] - m["t"] % NS_PER_MIN)
            agg.setdefault(key, []).append(m)
        elif m["T"] in ("b", "u"):
            trades = agg[(m["S"], m["t"])]
            first = min(trades, key=lambda x: x["t"])
            last = max(reversed(trades), key=lambda x: x["t"])
            assert m["o"] == first["p"] and m["c"] == last["p"]
            assert m["h"] == max(x["p"] for x in trades)
            assert m["l"] == min(x["p"] for x in trades)
            assert m["v"] == sum(x["s"] for x in trades)
            assert m["n"] == len(trades)
            notional = sum(x["p"] * x["s"] for x in trades)
            assert abs(m["vw"] - notional / m["v"]) < 1e-9
            checked[m["T"]] += 1
    assert checked["b"] >= 6 and checked["u"] >= 1


def test_burst_mode_makes_exactly_n_events_with_increasing_timestamps():
    market = SyntheticMarket(BUSY, START, 9)
    msgs = [m for m in market.burst(1000, START) if m["T"] in ("t", "q")]
    assert len(msgs) == 1000
    quotes = [m["t"] for m in msgs if m["T"] == "q"]
    assert quotes == sorted(quotes) and len(set(quotes)) == len(quotes)


def test_rotating_symbols_take_turns_and_the_fixed_ones_always_send():
    cfg = SyntheticConfig(
        symbols=("AAPL",),
        trades_per_sec=20,
        quotes_per_sec=20,
        late_rate=0,
        out_of_order_rate=0,
        rotating_symbols=("R0", "R1", "R2", "R3"),
        rotation_groups=2,
        rotation_period_s=5,
    )
    msgs = [m for m in run(cfg, 3, 20) if m["T"] in "tq"]
    seen: dict[int, set[str]] = defaultdict(set)  # 5 s period -> symbols that sent
    for m in msgs:
        seen[(m["t"] - START) // (5 * NS_PER_S)].add(m["S"])
    # groups are round robin: R0, R2 send in even periods, R1, R3 in odd ones
    assert [sorted(seen[p]) for p in range(4)] == [
        ["AAPL", "R0", "R2"],
        ["AAPL", "R1", "R3"],
        ["AAPL", "R0", "R2"],
        ["AAPL", "R1", "R3"],
    ]
    assert run(cfg, 3, 20) == run(cfg, 3, 20, chunks=[3 * NS_PER_S, 11 * NS_PER_S])
