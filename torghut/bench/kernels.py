"""``torghut bench kernels``: CPU cost of one indicator update, ours against TA-Lib's.

One seeded random walk of ``--bars`` 1 s bars is fed, one closed bar at a time, to

- **ours** (pure Python, ``shared/indicators``): ``SignalState.update`` as the job calls
  it (with a quote), which computes all 15 values in one pass (EMA 12/26, MACD, RSI,
  Bollinger and ATR are written inline in ``_step`` and share its checks and state, so
  they cannot be timed one by one), and the window kernels that are classes of their own:
  ``RollingVwap.commit`` (5 min VWAP), ``RollingVolatility.commit`` (60 s realized vol)
  and ``SessionCalendar.bounds`` (session VWAP's session lookup);
- **TA-Lib 0.8.2's streaming API** (``talib.stream``, C): one handle per indicator
  (EMA 12, EMA 26, MACD 12/26/9, RSI 14, BBANDS 20/2/2, ATR 14), opened on the shortest
  history it accepts and then ``update``-d once per bar. In 0.8.2 a handle keeps its own
  state (O(1) per bar, bit-identical to the Function API by its documentation), so it is
  given no window and there is no unstable period to cover: the bench finds the shortest
  history each handle opens on (``talib.InsufficientHistory`` below it) and asserts that
  every value it returns equals the full-history Function API value within 1e-9 (relative
  to max(1, |value|)), as it asserts our values do at every bar, before anything is timed.

Both sides are timed over the same bars (those after the longest TA-Lib warm-up), with
``time.perf_counter_ns`` around the whole loop, divided by the bars: µs per update,
including the Python loop and call that any caller pays. ``--repeats`` runs, fresh state
each; min/median/max reported. The ratio is ``SignalState.update`` over the sum of the six
TA-Lib handles (target <= 2); ours computes more per call (VWAPs, volatility, quote fields).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

TARGET_RATIO = 2.0
TOL = 1e-9  # |ours - talib| <= TOL * max(1, |talib|), as tests/unit/test_indicators.py
NS = 1_000_000_000
T0 = 1_718_000_000 * NS  # 2024-06-10 00:00 UTC: 1 s bars through the New York session start

#: label, talib function, inputs ("c": close; "hlc": high, low, close), parameters,
#: our SignalValues field per output (in TA-Lib's output order)
TALIB: tuple[tuple[str, str, str, dict[str, Any], tuple[str, ...]], ...] = (
    ("EMA 12", "EMA", "c", {"timeperiod": 12}, ("ema12",)),
    ("EMA 26", "EMA", "c", {"timeperiod": 26}, ("ema26",)),
    (
        "MACD 12/26/9",
        "MACD",
        "c",
        {"fastperiod": 12, "slowperiod": 26, "signalperiod": 9},
        ("macd", "macd_signal", "macd_hist"),
    ),
    ("RSI 14", "RSI", "c", {"timeperiod": 14}, ("rsi14",)),
    (
        "BBANDS 20/2",
        "BBANDS",
        "c",
        {"timeperiod": 20, "nbdevup": 2.0, "nbdevdn": 2.0, "matype": 0},
        ("boll_upper", "boll_mid", "boll_lower"),
    ),
    ("ATR 14", "ATR", "hlc", {"timeperiod": 14}, ("atr14",)),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (__doc__ or "").split("\n\n", 1)[1]
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--bars", type=int, default=20_000, help="bars in the series (default: %(default)s)"
    )
    parser.add_argument(
        "--repeats", type=int, default=7, help="timed runs per kernel (default: %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=7, help="random walk seed (default: 7)")
    parser.add_argument(
        "--out",
        default="bench-results",
        help="directory of the JSON and PNG (default: %(default)s)",
    )


# ---------------------------------------------------------------- the series


def make_series(n: int, seed: int) -> dict[str, Any]:
    """A random walk of ``n`` 1 s bars: closes, highs, lows (lists of floats), the
    ``MicroBar``s and a quote 0.5 s before each bar's end."""
    import numpy as np

    from shared.bars import MicroBar
    from shared.indicators import Quote

    rng = np.random.default_rng(seed)
    closes = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.0005, n)))
    opens = np.concatenate([[closes[0]], closes[:-1]])
    highs = np.maximum(opens, closes) * (1.0 + np.abs(rng.normal(0.0, 0.0003, n)))
    lows = np.minimum(opens, closes) * (1.0 - np.abs(rng.normal(0.0, 0.0003, n)))
    volumes = rng.integers(1, 500, n).astype(float)
    c, h, lo, o, v = (a.tolist() for a in (closes, highs, lows, opens, volumes))
    bars, quotes = [], []
    for i in range(n):
        end = T0 + (i + 1) * NS
        vwap = (h[i] + lo[i] + c[i]) / 3.0
        bars.append(MicroBar("BENCH", end - NS, end, o[i], h[i], lo[i], c[i], v[i], vwap, 3))
        quotes.append(Quote(c[i] - 0.01, 300.0, c[i] + 0.01, 200.0, end - NS // 2))
    return {"close": c, "high": h, "low": lo, "bars": bars, "quotes": quotes}


def _inputs(series: dict[str, Any], kind: str) -> list[list[float]]:
    return [series["close"]] if kind == "c" else [series["high"], series["low"], series["close"]]


def min_history(func: str, kind: str, params: dict[str, Any], series: dict[str, Any]) -> int:
    """The fewest bars a ``talib.stream`` handle opens on, found by trying."""
    import numpy as np
    import talib
    from talib import stream

    cls = getattr(stream, func)
    arrays = [np.asarray(x) for x in _inputs(series, kind)]
    for n in range(1, len(series["close"]) + 1):
        try:
            cls(*[a[:n] for a in arrays], **params)
        except talib.InsufficientHistory:
            continue
        return n
    raise ValueError(f"{func}: the series ({len(series['close'])} bars) is too short to open")


# ---------------------------------------------------------------- agreement


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= TOL * max(1.0, abs(b))


def _rel_err(a: float, b: float) -> float:
    return abs(a - b) / max(1.0, abs(b))


def check_agreement(series: dict[str, Any], histories: dict[str, int]) -> dict[str, Any]:
    """Our values and each TA-Lib handle's against TA-Lib's Function API on the whole
    history, at every bar. Raises AssertionError on the first disagreement; returns the
    largest relative error per field and the number of bars compared."""
    import numpy as np
    import talib
    from talib import stream

    from shared.indicators import SignalState

    state = SignalState()
    ours = [state.update(b, q) for b, q in zip(series["bars"], series["quotes"], strict=True)]
    n = len(ours)
    worst: dict[str, dict[str, float]] = {}
    compared: dict[str, dict[str, int]] = {}
    for label, func, kind, params, fields in TALIB:
        arrays = [np.asarray(x) for x in _inputs(series, kind)]
        full = getattr(talib, func)(*arrays, **params)
        full = full if isinstance(full, tuple) else (full,)
        # ours: None exactly where TA-Lib has NaN, else within TOL, at every bar
        for j, name in enumerate(fields):
            ref = full[j].tolist()
            err, count = 0.0, 0
            for i in range(n):
                got, want = getattr(ours[i], name), ref[i]
                if math.isnan(want):
                    assert got is None, f"{name} at bar {i}: ours {got!r}, TA-Lib NaN"
                    continue
                assert got is not None and _close(got, want), (
                    f"{name} at bar {i}: ours {got!r}, TA-Lib {want!r}"
                )
                err, count = max(err, _rel_err(got, want)), count + 1
            worst.setdefault("ours", {})[name] = err
            compared.setdefault("ours", {})[name] = count
        # the handle: its value when opened, then every update
        k = histories[label]
        handle = getattr(stream, func)(*[a[:k] for a in arrays], **params)
        cols = _inputs(series, kind)
        got_rows = [handle.value] + [handle.update(*[col[i] for col in cols]) for i in range(k, n)]
        err = 0.0
        for i, got in zip(range(k - 1, n), got_rows, strict=True):
            got_t = got if isinstance(got, tuple) else (got,)
            for j, name in enumerate(fields):
                want = float(full[j][i])
                assert _close(got_t[j], want), (
                    f"talib.stream.{func} {label} {name} at bar {i}: {got_t[j]!r}, "
                    f"Function API on the whole history {want!r}"
                )
                err = max(err, _rel_err(got_t[j], want))
        worst.setdefault("talib_stream", {})[label] = err
        compared.setdefault("talib_stream", {})[label] = n - k + 1
    return {"max_rel_err": worst, "bars_compared": compared}


# ---------------------------------------------------------------- timing


def _time_ours_update(series: dict[str, Any], warm: int) -> float:
    from shared.indicators import SignalState

    state = SignalState()
    bars, quotes = series["bars"], series["quotes"]
    update = state.update
    for b, q in zip(bars[:warm], quotes[:warm], strict=True):
        update(b, q)
    todo = list(zip(bars[warm:], quotes[warm:], strict=True))
    t0 = time.perf_counter_ns()
    for b, q in todo:
        update(b, q)
    return (time.perf_counter_ns() - t0) / len(todo) / 1e3


def _time_rolling_vwap(series: dict[str, Any], warm: int) -> float:
    from shared.indicators import VWAP_WINDOW_NS, RollingVwap

    w = RollingVwap()
    rows = [
        (b.end_ns - VWAP_WINDOW_NS, b.end_ns, b.vwap * b.volume, b.volume) for b in series["bars"]
    ]
    commit = w.commit
    for r in rows[:warm]:
        commit(*r)
    todo = rows[warm:]
    t0 = time.perf_counter_ns()
    for cutoff, key, pv, v in todo:
        commit(cutoff, key, pv, v)
    return (time.perf_counter_ns() - t0) / len(todo) / 1e3


def _time_rolling_vol(series: dict[str, Any], warm: int) -> float:
    from shared.indicators import VOL_WINDOW_NS, RollingVolatility

    w = RollingVolatility()
    c, bars = series["close"], series["bars"]
    rows = [(bars[0].end_ns - VOL_WINDOW_NS, -(1 << 63), None)] + [
        (bars[i].end_ns - VOL_WINDOW_NS, bars[i - 1].end_ns, math.log(c[i] / c[i - 1]))
        for i in range(1, len(bars))
    ]
    commit = w.commit
    for r in rows[:warm]:
        commit(*r)
    todo = rows[warm:]
    t0 = time.perf_counter_ns()
    for cutoff, key, x in todo:
        commit(cutoff, key, x)
    return (time.perf_counter_ns() - t0) / len(todo) / 1e3


def _time_session(series: dict[str, Any], warm: int) -> float:
    from shared.indicators import SessionCalendar

    bounds = SessionCalendar().bounds
    todo = [b.start_ns for b in series["bars"][warm:]]
    t0 = time.perf_counter_ns()
    for s in todo:
        bounds(s)
    return (time.perf_counter_ns() - t0) / len(todo) / 1e3


def _talib_timer(label: str, func: str, kind: str, params: dict[str, Any], k: int) -> Callable:
    def timer(series: dict[str, Any], warm: int) -> float:
        import numpy as np
        from talib import stream

        cols = _inputs(series, kind)
        handle = getattr(stream, func)(*[np.asarray(col[:k]) for col in cols], **params)
        update = handle.update
        for i in range(k, warm):
            update(*[col[i] for col in cols])
        if kind == "c":
            todo_c = cols[0][warm:]
            t0 = time.perf_counter_ns()
            for x in todo_c:
                update(x)
        else:
            todo = list(zip(*[col[warm:] for col in cols], strict=True))
            t0 = time.perf_counter_ns()
            for h, lo, c in todo:
                update(h, lo, c)
        return (time.perf_counter_ns() - t0) / (len(cols[0]) - warm) / 1e3

    timer.__name__ = f"talib_{label}"
    return timer


def _dist(runs: list[float]) -> dict[str, Any]:
    return {
        "min": min(runs),
        "median": statistics.median(runs),
        "max": max(runs),
        "runs": runs,
    }


def measure(bars: int = 20_000, repeats: int = 7, seed: int = 7) -> dict[str, Any]:
    """Checks the agreement at every bar, then times every kernel ``repeats`` times
    (interleaved, so a burst of load hits both sides); returns the result the JSON holds."""
    import talib

    load_before = os.getloadavg()
    series = make_series(bars, seed)
    histories = {
        label: min_history(func, kind, params, series) for label, func, kind, params, _ in TALIB
    }
    warm = max(histories.values())
    if bars <= warm:
        raise ValueError(f"--bars must exceed the longest TA-Lib warm-up ({warm} bars)")
    agreement = check_agreement(series, histories)
    ours: dict[str, Callable[[dict[str, Any], int], float]] = {
        "SignalState.update (all 15 values)": _time_ours_update,
        "RollingVwap.commit (5 min VWAP)": _time_rolling_vwap,
        "RollingVolatility.commit (60 s vol)": _time_rolling_vol,
        "SessionCalendar.bounds (session VWAP)": _time_session,
    }
    theirs = {
        label: _talib_timer(label, func, kind, params, histories[label])
        for label, func, kind, params, _ in TALIB
    }
    runs: dict[str, list[float]] = {name: [] for name in [*ours, *theirs]}
    for _ in range(repeats):
        for name, fn in [*ours.items(), *theirs.items()]:
            runs[name].append(fn(series, warm))
    talib_sum = [sum(runs[label][r] for label in theirs) for r in range(repeats)]
    update = runs["SignalState.update (all 15 values)"]
    ratios = [u / t for u, t in zip(update, talib_sum, strict=True)]
    ratio = statistics.median(update) / statistics.median(talib_sum)
    # an estimate, not a measurement: update's median less the medians of the kernels it
    # calls that TA-Lib has no counterpart of (loops timed apart; caches and call overhead
    # differ), i.e. about what the TA-Lib indicators, the bar checks, the quote fields and
    # the SignalValues record cost inside update
    rest = statistics.median(update) - sum(statistics.median(runs[name]) for name in list(ours)[1:])
    return {
        "benchmark": "kernels",
        "timestamp": time.strftime("%Y%m%d-%H%M%S"),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "talib": talib.__version__,
        "ta_lib_c": talib.__ta_version__.decode()
        if isinstance(talib.__ta_version__, bytes)
        else str(talib.__ta_version__),
        "loadavg_before": list(load_before),
        "loadavg_after": list(os.getloadavg()),
        "bars": bars,
        "repeats": repeats,
        "seed": seed,
        "timed_bars": bars - warm,
        "talib_min_history": histories,
        "agreement": {"tolerance": TOL, **agreement},
        "ours_us": {name: _dist(runs[name]) for name in ours},
        "talib_stream_us": {name: _dist(runs[name]) for name in theirs},
        "talib_stream_sum_us": _dist(talib_sum),
        "ratio_update_over_talib_sum": {"median_over_median": ratio, **_dist(ratios)},
        "estimate_update_less_window_kernels_us": rest,
        "estimate_ratio_update_less_window_kernels": rest / statistics.median(talib_sum),
        "target_ratio": TARGET_RATIO,
        "meets_target": ratio <= TARGET_RATIO,
    }


# ---------------------------------------------------------------- output


def _plot(out_dir: Path, res: dict[str, Any]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(n, d, "#2a7") for n, d in res["ours_us"].items()]
    rows += [(f"talib.stream {n}", d, "#888") for n, d in res["talib_stream_us"].items()]
    rows.append(("talib.stream: sum of the six", res["talib_stream_sum_us"], "#555"))
    fig, ax = plt.subplots(figsize=(10, 5.5))
    ys = list(range(len(rows)))[::-1]
    med = [d["median"] for _, d, _ in rows]
    err = [
        [d["median"] - d["min"] for _, d, _ in rows],
        [d["max"] - d["median"] for _, d, _ in rows],
    ]
    bars = ax.barh(ys, med, xerr=err, color=[c for *_, c in rows], capsize=3)
    ax.bar_label(bars, labels=[f"{m:.2f} µs" for m in med], padding=4, fontsize=8)
    ax.set_yticks(ys, [n for n, *_ in rows], fontsize=8)
    ax.axvline(
        TARGET_RATIO * res["talib_stream_sum_us"]["median"],
        ls="--",
        color="#c33",
        lw=1,
        label="target: 2 x the TA-Lib sum",
    )
    ax.set_xlabel("µs per update (median; bars: min..max over repeats)")
    load = " ".join(f"{x:.2f}" for x in res["loadavg_before"])
    ax.set_title(
        f"torghut bench kernels {res['timestamp']}: {res['timed_bars']:,} bars x "
        f"{res['repeats']}, Python {res['python']}, TA-Lib {res['talib']}\n"
        f"SignalState.update / TA-Lib sum = "
        f"{res['ratio_update_over_talib_sum']['median_over_median']:.2f}x; "
        f"{res['cpus']} CPUs, load {load}",
        fontsize=9,
    )
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"kernels-{res['timestamp']}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def report(res: dict[str, Any]) -> str:
    lines = [f"{'kernel':<44} {'min':>7} {'median':>7} {'max':>7}  µs/update"]
    for side, table in (("ours", res["ours_us"]), ("talib.stream", res["talib_stream_us"])):
        for name, d in table.items():
            lines.append(
                f"{side + ' ' + name:<44} {d['min']:7.3f} {d['median']:7.3f} {d['max']:7.3f}"
            )
    d = res["talib_stream_sum_us"]
    lines.append(
        f"{'talib.stream sum of the six':<44} {d['min']:7.3f} {d['median']:7.3f} {d['max']:7.3f}"
    )
    r = res["ratio_update_over_talib_sum"]
    lines.append(
        f"ratio     : SignalState.update / TA-Lib sum = {r['median_over_median']:.2f}x "
        f"(per repeat {r['min']:.2f}..{r['max']:.2f}); target <= {TARGET_RATIO:g}x: "
        f"{'met' if res['meets_target'] else 'NOT met'}"
    )
    lines.append(
        f"estimate  : update less the three window kernels ~ "
        f"{res['estimate_update_less_window_kernels_us']:.2f} µs = "
        f"{res['estimate_ratio_update_less_window_kernels']:.2f}x the TA-Lib sum (medians "
        "subtracted, not measured: the TA-Lib indicators inline, bar checks, quote, record)"
    )
    hist = ", ".join(f"{k} {v}" for k, v in res["talib_min_history"].items())
    lines.append(f"talib     : {res['talib']} (C {res['ta_lib_c']}); opens on: {hist} bars")
    worst = max(max(v.values()) for v in res["agreement"]["max_rel_err"].values() if v)
    lines.append(
        f"agreement : every bar, ours and every handle vs the Function API: max rel err "
        f"{worst:.3g} (tolerance {TOL:g})"
    )
    lines.append(
        f"run       : {res['bars']:,} bars ({res['timed_bars']:,} timed) x {res['repeats']}, "
        f"Python {res['python']} ({res['implementation']}), {res['cpus']} CPUs"
    )
    lines.append(
        "load      : "
        + " ".join(f"{x:.2f}" for x in res["loadavg_before"])
        + " before, "
        + " ".join(f"{x:.2f}" for x in res["loadavg_after"])
        + " after (1/5/15 min)"
    )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    res = measure(args.bars, args.repeats, args.seed)
    print(report(res))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"kernels-{res['timestamp']}.json"
    path.write_text(json.dumps(res, indent=2) + "\n")
    print(f"json      : {path}")
    print(f"plot      : {_plot(out, res)}")
    return 0
