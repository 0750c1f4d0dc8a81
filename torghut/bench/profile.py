"""In process, no Flink: the TA job's own Python work per trade, step by step, as
``SymbolTaFunction`` does it (flink_job/functions.py)."""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable
from typing import Any

from torghut.bench.backlog import BacklogEvent, backlog_events
from torghut.bench.common import NS_PER_MS, NS_PER_S
from torghut.bench.results import ProfileResult

STEPS = (
    "decode",
    "on_trade_quote",
    "state_log_append",
    "on_watermark",
    "snapshot_pickle",
    "records_build",
    "avro_encode",
    "frame",
)


def _envelope(ev: BacklogEvent, seq: int) -> tuple[str, dict[str, Any]]:
    """(channel, raw envelope) of a backlog event, as the forwarder writes it."""
    kind, sym, ts, a, b, c, d = ev
    common = {
        "ingest_ts": ts,
        "event_ts": ts,
        "feed": "iex",
        "symbol": sym,
        "seq": seq,
        "is_final": True,
        "source": "bench",
        "window": None,
        "trace_id": f"{sym}-{c}",
    }
    if kind == "t":
        trade = {"id": int(c), "exchange": "V", "price": a, "size": b}
        payload = {**trade, "conditions": ["@"], "tape": "C"}
        return "trades", {**common, "channel": "trades", "payload": payload}
    bid = {"bid_exchange": "V", "bid_price": a, "bid_size": c}
    ask = {"ask_exchange": "V", "ask_price": b, "ask_size": d}
    payload = {**bid, **ask, "conditions": ["R"], "tape": "C"}
    return "quotes", {**common, "channel": "quotes", "payload": payload}


def encoded_backlog(reg: Any, symbols: list[str], trades: int, quote_ratio: float) -> list[bytes]:
    """Avro-encoded raw envelopes of a backlog an hour old (seq per channel and symbol)."""
    from shared.serde import AvroSerializer
    from shared.topics import QUOTES, TRADES

    encoders = {"trades": AvroSerializer(reg, TRADES), "quotes": AvroSerializer(reg, QUOTES)}
    base = (time.time_ns() - 3600 * NS_PER_S) // NS_PER_S * NS_PER_S
    raw: list[bytes] = []
    seq: dict[tuple[str, str], int] = {}
    for ev in backlog_events(symbols, trades, quote_ratio, base, seed=3):
        seq[(ev[0], ev[1])] = seq.get((ev[0], ev[1]), 0) + 1
        channel, envelope = _envelope(ev, seq[(ev[0], ev[1])])
        raw.append(encoders[channel].encode(envelope))
    return raw


class _Replay:
    """The keyed function's per-record work over decoded events, timed per step (ns)."""

    def __init__(self, reg: Any, symbols: list[str], provisional_interval_ms: int) -> None:
        from flink_job.records import microbar_record, signal_record
        from flink_job.symbol_processor import SymbolProcessor, SymbolState
        from shared.framing import frame_record
        from shared.indicators import SignalConfig, SignalState
        from shared.serde import AvroSerializer
        from shared.topics import TA_BARS_1S, TA_SIGNALS

        self.records = microbar_record, signal_record
        self.frame = frame_record
        self.topics = TA_BARS_1S.name, TA_SIGNALS.name
        self.bars_out = AvroSerializer(reg, TA_BARS_1S)
        self.signals_out = AvroSerializer(reg, TA_SIGNALS)
        self.proc = SymbolProcessor(provisional_interval_ns=provisional_interval_ms * NS_PER_MS)
        cfg = SignalConfig.parse("04:00", 5000)
        self.states = {s: (SymbolState(), SignalState(cfg)) for s in symbols}
        self.cost = dict.fromkeys(STEPS, 0)
        self.emissions = self.finals = 0
        self.wm_ms = 0
        self.clock: Callable[[], int] = time.perf_counter_ns

    def emit(self, ems: list[Any], key: bytes) -> None:
        clock, cost = self.clock, self.cost
        (microbar_record, signal_record), frame_record = self.records, self.frame
        bars_topic, signals_topic = self.topics
        bars_out, signals_out = self.bars_out, self.signals_out
        for em in ems:
            now = time.time_ns()
            t0 = clock()
            mb, sg = microbar_record(em, now), signal_record(em, now)
            t1 = clock()
            b1, b2 = bars_out.encode(mb), signals_out.encode(sg)
            t2 = clock()
            frame_record(bars_topic, key, b1)
            frame_record(signals_topic, key, b2)
            t3 = clock()
            cost["records_build"] += t1 - t0
            cost["avro_encode"] += t2 - t1
            cost["frame"] += t3 - t2
            self.emissions += 1

    def watermark(self, wm_ms: int) -> None:
        """The watermark moved: every symbol's bar timers fire."""
        self.wm_ms = wm_ms
        clock, cost, proc = self.clock, self.cost, self.proc
        for s, (st, sig) in self.states.items():
            t0 = clock()
            ems = proc.on_watermark(st, sig, wm_ms)
            cost["on_watermark"] += clock() - t0
            if ems:
                # a bar close compacts: both snapshots are pickled, the log cleared
                t0 = clock()
                pickle.dumps(sig.to_state())
                pickle.dumps(st.to_state())
                cost["snapshot_pickle"] += clock() - t0
                self.finals += len(ems)
                self.emit(ems, s.encode())

    def record(self, ev: Any, data: bytes) -> None:
        clock, cost, proc, wm_ms = self.clock, self.cost, self.proc, self.wm_ms
        kind, sym = ev[0], ev[1]
        st, sig = self.states[sym]
        t0 = clock()
        if kind == "t":
            res = proc.on_trade(st, sig, ev, wm_ms, time.time_ns())
        else:
            proc.on_quote(st, ev, wm_ms, wm_ms)
            res = None
        t1 = clock()
        # the log entry as the PICKLED_BYTE_ARRAY list state receives it
        pickle.dumps(wm_ms.to_bytes(8, "big", signed=True) + data)
        t2 = clock()
        cost["on_trade_quote"] += t1 - t0
        cost["state_log_append"] += t2 - t1
        if res is not None and res.emissions:
            self.emit(res.emissions, sym.encode())


def profile_breakdown(
    registry_url: str,
    symbols: list[str],
    trades: int = 20_000,
    quote_ratio: float = 0.2,
    provisional_interval_ms: int = 200,
) -> ProfileResult:
    """Time each Python step the job does per event, as the job does it (same code, no Flink)."""
    from flink_job.envelope_reader import EventReader
    from shared.registry import SchemaRegistryClient
    from shared.serde import AvroDeserializer

    reg = SchemaRegistryClient(registry_url)
    raw = encoded_backlog(reg, symbols, trades, quote_ratio)
    deser = AvroDeserializer(reg, "torghut.Envelope")
    replay = _Replay(reg, symbols, provisional_interval_ms)
    t = replay.clock()
    reader = EventReader(deser)
    decoded = [(reader.read(data, None), data) for data in raw]
    replay.cost["decode"] = replay.clock() - t
    events = [(ev, data) for ev, data in decoded if ev is not None]
    cur_sec = events[0][0][2] // NS_PER_S if events else 0
    ooo_ns = 1000 * NS_PER_MS
    for ev, data in events:
        ts = ev[2]
        if ts // NS_PER_S > cur_sec:  # watermark (1 s slack) moved: the bars' timers fire
            cur_sec = ts // NS_PER_S
            replay.watermark((ts - ooo_ns) // NS_PER_MS - 1)
        replay.record(ev, data)
    total = sum(replay.cost.values())
    n_trades = sum(1 for e, _ in events if e[0] == "t")
    return ProfileResult(
        trades=n_trades,
        events=len(events),
        emissions=replay.emissions,
        final_emissions=replay.finals,
        us_per_trade={k: v / 1000 / n_trades for k, v in replay.cost.items()},
        total_us_per_trade=total / 1000 / n_trades,
        python_only_trades_per_s=n_trades / (total / NS_PER_S),
    )
