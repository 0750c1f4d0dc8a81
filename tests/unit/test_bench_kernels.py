"""`torghut bench kernels` on a few hundred bars, once: the values agree, not the speed.

`measure` asserts, before it times anything, that our `SignalState` values and every
`talib.stream` handle's values equal TA-Lib's Function API on the whole history at every
bar (1e-9 relative to max(1, |value|)); this test runs it and reads what it compared.
"""

from __future__ import annotations

import argparse

import pytest

from torghut.bench import cli, kernels

BARS = 400


@pytest.fixture(scope="module")
def result() -> dict:
    return kernels.measure(bars=BARS, repeats=1, seed=3)


def test_ours_and_talib_stream_agree_with_talib_at_every_bar(result: dict) -> None:
    agreement = result["agreement"]
    assert agreement["tolerance"] == 1e-9
    ours = agreement["bars_compared"]["ours"]
    # every bar from TA-Lib's first value on (its lookback) was compared, none skipped
    lookback = {"ema12": 11, "ema26": 25, "macd": 33, "rsi14": 14, "boll_mid": 19, "atr14": 14}
    for name, first in lookback.items():
        assert ours[name] == BARS - first, name
    handles = agreement["bars_compared"]["talib_stream"]
    for label, opened_on in result["talib_min_history"].items():
        assert handles[label] == BARS - opened_on + 1, label
    for side in ("ours", "talib_stream"):
        assert all(e <= 1e-9 for e in agreement["max_rel_err"][side].values()), side


def test_the_handles_open_on_lookback_plus_one_bars(result: dict) -> None:
    assert result["talib_min_history"] == {
        "EMA 12": 12,
        "EMA 26": 26,
        "MACD 12/26/9": 34,
        "RSI 14": 15,
        "BBANDS 20/2": 20,
        "ATR 14": 15,
    }


def test_a_disagreement_fails_the_bench(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernels, "TOL", -1.0)  # nothing is close enough
    with pytest.raises(AssertionError, match="ours"):
        kernels.measure(bars=60, repeats=1)


def test_the_result_has_one_run_per_kernel_and_the_run_context(result: dict) -> None:
    for table in (result["ours_us"], result["talib_stream_us"]):
        for d in table.values():
            assert len(d["runs"]) == 1 and d["min"] == d["median"] == d["max"] > 0
    assert len(result["loadavg_before"]) == 3 and result["python"]
    assert result["timed_bars"] == BARS - 34


def test_it_is_registered_with_its_flags() -> None:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(["kernels", "--bars", "500", "--repeats", "2", "--out", "x"])
    assert (args.bars, args.repeats, args.out) == (500, 2, "x")
    assert args._bench_module == "torghut.bench.kernels"
