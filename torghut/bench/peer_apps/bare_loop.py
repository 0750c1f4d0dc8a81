"""The bare-loop peer, the limit: the same backlog's events in a Python list, folded by a plain
loop into the project's kernels (``MicroBar`` with the sale-condition flags, ``SignalState``
with the latest quote before each bar's end, as the job does) — no Kafka, no Flink, no
serialization, no checkpoints. A bar closes once the event time passes its end by the
out-of-orderness bound (the job's watermark rule). The events are generated before the
clock starts; its final bars and indicators go into its result file.
"""

from __future__ import annotations

import argparse
from typing import Any

from torghut.bench.peer_apps.common import (
    BAR_FIELDS,
    BAR_NS,
    QUOTE_SIGNALS,
    TRADE_SIGNALS,
    PeerResult,
    bar_key,
    close_bar,
    open_bar,
    trade_flags,
)

QUOTE_MAX_AGE_NS = 5 * BAR_NS  # the job's default quote_max_age


def run_loop(events: list[tuple], out_of_orderness_ns: int, mix: bool, result: PeerResult) -> None:
    """Folds ``events`` (``backlog.backlog_events``; ``mix``: their sale conditions are
    ``CONDITION_MIX``'s) into bars and indicators, the final ones into ``result.final``."""
    from shared.bars import MicroBar
    from shared.indicators import Quote, SignalState
    from shared.sale_conditions import trade_updates
    from torghut.bench.backlog import backlog_conditions

    open_bars: dict[str, dict[int, MicroBar]] = {}
    # symbol -> second -> its latest quote (ns, bid, bid size, ask, ask size), as the job keeps
    quotes: dict[str, dict[int, tuple]] = {}
    signals: dict[str, SignalState] = {}
    final = result.final
    next_close = None

    def close_until(watermark_ns: int) -> None:
        for sym, bars in open_bars.items():
            for start in sorted(b for b in bars if bars[b].end_ns <= watermark_ns):
                bar = bars.pop(start)
                quote = None
                by_second = quotes.get(sym)
                if by_second:  # the latest quote before the bar's end, within the age limit
                    second = bar.end_ns - BAR_NS
                    while second + BAR_NS > bar.end_ns - QUOTE_MAX_AGE_NS:
                        q = by_second.get(second)
                        if q is not None and q[0] < bar.end_ns:
                            quote = Quote(q[1], q[2], q[3], q[4], q[0])
                            break
                        second -= BAR_NS
                    for old in [s for s in by_second if s < bar.start_ns - QUOTE_MAX_AGE_NS]:
                        del by_second[old]
                st = signals.get(sym)
                if st is None:
                    st = signals[sym] = SignalState()
                values = close_bar(st, bar, quote)
                if values is None:
                    continue
                result.bars += 1
                v = values.as_dict()
                final[bar_key(sym, bar.start_ns // 1000)] = [
                    *(getattr(bar, f) for f in BAR_FIELDS),
                    *(v[f] for f in TRADE_SIGNALS + QUOTE_SIGNALS),
                ]

    for kind, sym, ts, a, b, c, d in events:
        if next_close is None or ts >= next_close:
            watermark = ts - out_of_orderness_ns
            close_until(watermark)
            next_close = (watermark // BAR_NS + 1) * BAR_NS + out_of_orderness_ns
        if kind == "t":
            result.trades += 1
            flags = trade_flags(trade_updates("C", backlog_conditions(int(c), mix)), ts)
            if not flags:
                continue
            bars = open_bars.setdefault(sym, {})
            start = ts - ts % BAR_NS
            bar = bars.get(start)
            if bar is None:
                bars[start] = open_bar(sym, a, b, ts, flags)
            else:
                bar.add_trade(a, b, ts, flags)
        else:
            by_second = quotes.setdefault(sym, {})
            second = ts - ts % BAR_NS
            q = by_second.get(second)
            if q is None or ts >= q[0]:
                by_second[second] = (ts, a, c, b, d)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--symbols", required=True, help="comma list")
    ap.add_argument("--trades", type=int, required=True)
    ap.add_argument("--quote-ratio", type=float, required=True)
    ap.add_argument("--base-ns", type=int, required=True)
    ap.add_argument("--sentinel-ns", type=int, required=True)
    ap.add_argument("--sentinel", required=True)
    ap.add_argument("--out-of-orderness-ms", type=int, default=1000)
    ap.add_argument("--conditions", action="store_true", help="the backlog's condition mix")
    ap.add_argument("--result", required=True)
    args = ap.parse_args(argv)

    from torghut.bench.backlog import backlog_events

    events: list[Any] = list(
        backlog_events(args.symbols.split(","), args.trades, args.quote_ratio, args.base_ns)
    )
    events.append(("t", args.sentinel, args.sentinel_ns, 1.0, 1.0, 0, 0.0))
    result = PeerResult("bare-loop")
    result.start()
    run_loop(events, args.out_of_orderness_ms * 1_000_000, args.conditions, result)
    result.stop()
    result.write(args.result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
