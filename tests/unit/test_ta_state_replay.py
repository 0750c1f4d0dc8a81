"""The keyed function's snapshot + log state restores exactly.

`SymbolTaFunction` runs here against an in-memory stand-in of PyFlink's keyed state and
timer service with Flink's restore semantics: at a checkpoint the keyed state, the timers
and the input position are copied; a crash throws away the function (its per-key cache)
and everything emitted after the checkpoint, restores the copies and replays the input
from the checkpointed position. The final bars and signals must equal those of a run that
never crashed, field for field, with compactions both at bar closes and at `state_log_max`.
The same drill against the real engines (Flink, Kafka, MinIO, `kill -9`) is
`tests/integration/test_ta_job.py`.
"""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest

import flink_job.functions as functions
from flink_job.functions import SymbolTaFunction, frame_batch, iter_batch
from flink_job.settings import TaFunctionConfig
from shared.framing import unframe_record
from shared.serde import AvroDeserializer, AvroSerializer
from shared.topics import QUOTES, TA_BARS_1S, TA_SIGNALS, TRADES
from tests.support.registry import InMemoryRegistry

S = 1_000_000_000
T0 = 1_767_364_200 * S
SYMBOLS = ("AAPL", "MSFT", "NVDA")


class Store:
    """Keyed state of every key: {(state name, key): value or list}."""

    def __init__(self) -> None:
        self.data: dict[tuple[str, str], Any] = {}
        self.key = ""


class ValueState:
    def __init__(self, store: Store, name: str) -> None:
        self.store, self.name = store, name

    def value(self) -> Any:
        return copy.deepcopy(self.store.data.get((self.name, self.store.key)))

    def update(self, value: Any) -> None:
        self.store.data[(self.name, self.store.key)] = copy.deepcopy(value)


class ListState(ValueState):
    def get(self) -> list[Any]:
        return list(self.store.data.get((self.name, self.store.key), []))

    def add(self, value: Any) -> None:
        self.store.data.setdefault((self.name, self.store.key), []).append(value)

    def clear(self) -> None:
        self.store.data.pop((self.name, self.store.key), None)


class RuntimeContext:
    def __init__(self, store: Store) -> None:
        self.store = store

    def get_state(self, descriptor: Any) -> ValueState:
        return ValueState(self.store, descriptor.name)

    def get_list_state(self, descriptor: Any) -> ListState:
        return ListState(self.store, descriptor.name)

    def get_index_of_this_subtask(self) -> int:
        return 0


class Ctx:
    """Context and timer service of the keyed function (event-time timers per key)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.watermark = -(1 << 63)
        self.timers: set[tuple[int, str]] = set()

    def get_current_key(self) -> str:
        return self.store.key

    def timer_service(self) -> Ctx:
        return self

    def current_watermark(self) -> int:
        return self.watermark

    def register_event_time_timer(self, ts: int) -> None:
        self.timers.add((ts, self.store.key))

    def register_processing_time_timer(self, ts: int) -> None:
        pass  # the status heartbeat; not part of this test

    def time_domain(self) -> int:
        return 0  # TimeDomain.EVENT_TIME


def _stream(seed: int) -> list[tuple[str, int, str, tuple]]:
    """(kind, event ns, symbol, fields): 40 s of trades and quotes, some out of order."""
    rng = random.Random(seed)
    out = []
    price = {s: 100.0 + i for i, s in enumerate(SYMBOLS)}
    for i in range(1200):
        sym = SYMBOLS[i % 3]
        ts = T0 + i * (S // 30) - (rng.randrange(400_000_000) if rng.random() < 0.1 else 0)
        price[sym] *= 1 + rng.gauss(0, 0.001)
        if rng.random() < 0.25:
            out.append(("q", ts, sym, (price[sym] - 0.01, price[sym] + 0.01, 300.0, 100.0)))
        else:
            out.append(("t", ts, sym, (round(price[sym], 4), float(rng.randint(1, 9)), i)))
    return out


def _raw(stream: list[tuple[str, int, str, tuple]], reg: InMemoryRegistry) -> list[bytes]:
    trades, quotes = AvroSerializer(reg, TRADES), AvroSerializer(reg, QUOTES)  # type: ignore[arg-type]
    seq: dict[tuple[str, str], int] = {}
    out = []
    for kind, ts, sym, f in stream:
        seq[(kind, sym)] = seq.get((kind, sym), 0) + 1
        head = {
            "ingest_ts": ts + 1000,
            "event_ts": ts,
            "feed": "iex",
            "symbol": sym,
            "seq": seq[(kind, sym)],
            "is_final": True,
            "source": "test",
            "window": None,
            "trace_id": f"{sym}-{seq[(kind, sym)]}",
        }
        if kind == "t":
            payload = {"id": f[2], "exchange": "V", "price": f[0], "size": f[1]}
            out.append(trades.encode({**head, "channel": "trades", "payload": payload}))
        else:
            payload = {
                "bid_exchange": "V",
                "bid_price": f[0],
                "bid_size": f[2],
                "ask_exchange": "V",
                "ask_price": f[1],
                "ask_size": f[3],
            }
            out.append(quotes.encode({**head, "channel": "quotes", "payload": payload}))
    return out


BOUND_MS = 1000
NO_MARK = -(1 << 63)


class Harness:
    """Feeds records and watermarks like the source + SymbolBatchOperator + Flink would.

    Trades and quotes are two partitions: each record is stamped with its partition's mark
    (max event ms before it - bound - 1); the watermark is the minimum of the partitions'
    marks, emitted after every `wm_every`-th flush (a slow or a fast watermark clock).
    """

    def __init__(self, reg: InMemoryRegistry, log_max: int, wm_every: int = 1) -> None:
        self.store, self.reg, self.log_max = Store(), reg, log_max
        self.ctx = Ctx(self.store)
        self.out: list[bytes] = []
        self.fn = self._open()
        self.high: dict[str, int] = {}  # partition -> max event ms (operator state)
        self.wm_every, self.flushes = wm_every, 0

    def _mark(self, part: str, ts_ms: int) -> int:
        h = self.high.get(part)
        if h is None or ts_ms > h:
            self.high[part] = ts_ms
        return NO_MARK if h is None else h - BOUND_MS - 1

    def _open(self) -> SymbolTaFunction:
        fn = SymbolTaFunction(
            TaFunctionConfig(
                registry_url="mem",
                provisional_interval_ms=0,
                status_interval_ms=3_600_000,
                job_name="test",
                state_log_max=self.log_max,
            )
        )
        fn.open(RuntimeContext(self.store))  # type: ignore[arg-type]
        fn.last_status_ns = 1 << 62  # no status frames: they carry wall-clock values
        return fn

    def feed(self, records: list[tuple[str, str, int, bytes]]) -> None:
        """One flush of SymbolBatchOperator: a batch per symbol (in first-seen order), then
        maybe the watermark (the operator flushes before any watermark passes it)."""
        batches: dict[str, list[tuple[int, bytes]]] = {}
        for sym, part, ts, data in records:
            batches.setdefault(sym, []).append((self._mark(part, ts // 1_000_000), data))
        for sym, datas in batches.items():
            self.store.key = sym
            self.out.extend(self.fn.process_element(frame_batch(datas), self.ctx))  # type: ignore[arg-type]
        self.flushes += 1
        if self.flushes % self.wm_every == 0 and len(self.high) == 2:
            self.advance(min(self.high.values()) - BOUND_MS - 1)

    def advance(self, wm: int) -> None:
        if wm <= self.ctx.watermark:
            return
        self.ctx.watermark = wm
        for ts, key in sorted(t for t in self.ctx.timers if t[0] <= wm):
            self.ctx.timers.discard((ts, key))
            self.store.key = key
            self.out.extend(self.fn.on_timer(ts, self.ctx))  # type: ignore[arg-type]

    def checkpoint(self) -> tuple[Any, ...]:
        return (
            copy.deepcopy(self.store.data),
            set(self.ctx.timers),
            self.ctx.watermark,
            dict(self.high),
            len(self.out),
        )

    def restore(self, cp: tuple[Any, ...]) -> None:
        data, timers, wm, high, n_out = cp
        self.store.data = copy.deepcopy(data)
        self.ctx.timers, self.ctx.watermark, self.high = set(timers), wm, dict(high)
        del self.out[n_out:]  # the aborted transaction
        self.fn = self._open()  # a new process: the per-key cache is gone


def _finals(frames: list[bytes], reg: InMemoryRegistry) -> list[tuple[str, tuple]]:
    deser = AvroDeserializer(reg)  # type: ignore[arg-type]
    out = []
    for frame in frames:
        topic, _key, value = unframe_record(frame)
        rec = deser.decode(value)
        rec.pop("emit_ts", None)
        rec.pop("version", None)  # the emit time too (ReplacingMergeTree version)
        out.append((topic, tuple(sorted(rec.items(), key=lambda kv: kv[0]))))
    return out


@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize("log_max", [512, 7])
@pytest.mark.parametrize("seed", [1, 2])
def test_restores_from_snapshot_plus_log_give_the_outputs_of_an_uninterrupted_run(
    monkeypatch: pytest.MonkeyPatch, log_max: int, seed: int, batch: int
) -> None:
    reg = InMemoryRegistry()
    monkeypatch.setattr(functions, "SchemaRegistryClient", lambda url, **_: reg)
    stream = _stream(seed)
    raw = _raw(stream, reg)
    records = [(sym, k, ts, data) for (k, ts, sym, _f), data in zip(stream, raw, strict=True)]

    straight = Harness(reg, log_max)
    for i in range(0, len(records), batch):
        straight.feed(records[i : i + batch])
    straight.advance(1 << 62)

    rng = random.Random(seed)
    crashy = Harness(reg, log_max)
    i, cp, restores, cp_at = 0, None, 0, 0
    while i < len(records):
        # checkpoints fall between flushes: the operator flushes before every barrier
        if i and i % (97 * batch) < batch and cp_at != i:
            cp, cp_at = (*crashy.checkpoint(), i), i
        if cp is not None and rng.random() < 0.05 and restores < 8:
            crashy.restore(cp[:5])
            i = cp_at = cp[5]
            restores += 1
            continue
        crashy.feed(records[i : i + batch])
        i += batch
    crashy.advance(1 << 62)

    assert restores >= 3
    expected = _finals(straight.out, reg)
    assert {t for t, _ in expected} == {TA_BARS_1S.name, TA_SIGNALS.name}
    assert len(expected) > 200
    assert _finals(crashy.out, reg) == expected


def test_batch_framing_round_trips_and_a_torn_batch_is_refused() -> None:
    records = [(NO_MARK, b""), (1_767_364_200_123, b"a"), (-5, bytes(range(256)) * 3)]
    assert list(iter_batch(frame_batch(records))) == records
    with pytest.raises(functions.BatchFramingError, match="runs past its end"):
        list(iter_batch(frame_batch(records)[:-1]))


def test_a_legacy_log_entry_replays_with_its_watermark_as_every_record_mark() -> None:
    legacy = (1234).to_bytes(8, "big", signed=True) + b"".join(
        len(r).to_bytes(4, "big") + r for r in (b"x", b"yz")
    )
    assert list(functions.iter_log_entry(legacy)) == [(1234, 1234, b"x"), (1234, 1234, b"yz")]
    v2 = functions.log_entry(99, frame_batch([(7, b"x")]))
    assert list(functions.iter_log_entry(v2)) == [(7, 99, b"x")]


def _late_heavy_stream(seed: int) -> list[tuple[str, int, str, tuple]]:
    """`_stream` plus trades 2-6 s late and a sparse symbol's lone late trades: the records
    whose fate a wall-clock watermark decides differently at different speeds."""
    rng = random.Random(seed)
    out = _stream(seed)
    for i in range(300, len(out), 23):
        sym = SYMBOLS[rng.randrange(3)]
        ts = out[i][1] - rng.randrange(2 * S, 6 * S)
        out.insert(i, ("t", ts, sym, (100.0 + rng.random(), 1.0, 10_000 + i)))
    for i in range(100, len(out), 157):  # SPRS trades ~2 s behind the feed, alone in their second
        out.insert(i, ("t", out[i][1] - 2 * S - 500_000_000, "SPRS", (50.0, 2.0, 20_000 + i)))
    return out


@pytest.mark.parametrize("seed", [3, 4])
def test_final_output_is_the_same_whatever_the_watermark_timing_and_batching(
    monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    """The property behind docs/design.md "Event time": lateness follows the partition
    marks stamped on the records, so a watermark emitted after every flush, one lagging
    many flushes behind, and different batch sizes give the same final bars and signals."""
    reg = InMemoryRegistry()
    monkeypatch.setattr(functions, "SchemaRegistryClient", lambda url, **_: reg)
    stream = _late_heavy_stream(seed)
    raw = _raw(stream, reg)
    records = [(sym, k, ts, data) for (k, ts, sym, _f), data in zip(stream, raw, strict=True)]
    runs = []
    for batch, wm_every in ((1, 1), (7, 1), (1, 40), (13, 300)):
        h = Harness(reg, 512, wm_every=wm_every)
        for i in range(0, len(records), batch):
            h.feed(records[i : i + batch])
        h.advance(1 << 62)
        # emission order across symbols follows the watermark; per symbol it is start order
        runs.append(sorted((f for f in _finals(h.out, reg) if _is_final(f)), key=repr))
    late = sum(h.fn.cache[s].sym.counters.late for s in h.fn.cache)
    assert late > 20, "the stream must hold trades that are late by their partition mark"
    assert len(runs[0]) > 200
    for other in runs[1:]:
        assert other == runs[0]


def _is_final(frame: tuple[str, tuple]) -> bool:
    return dict(frame[1])["is_final"]


def _with_gap_markers(
    stream: list[tuple[str, int, str, tuple]],
) -> list[tuple[str, int, str, tuple]]:
    """`stream` plus two reconnect gaps, a marker per symbol each, written the way the
    forwarder does (record timestamp = the highest event time so far): one soon after its
    window [9.6 s, 10.4 s], and one whose window [15.5 s, 20.2 s] starts in bars its
    partition's mark has already passed (those may be final: never flagged)."""
    out: list[tuple[str, int, str, tuple]] = []
    windows = {
        300: (T0 + 9_600_000_000, T0 + 10_400_000_000),
        600: (T0 + 15_500_000_000, T0 + 20_200_000_000),
    }
    high = 0
    for i, rec in enumerate(stream):
        if i in windows:
            for sym in SYMBOLS:
                out.append(("g", high, sym, windows[i]))
        out.append(rec)
        high = max(high, rec[1])
    return out


def _raw_with_gaps(stream, reg: InMemoryRegistry) -> list[bytes]:
    from forwarder.envelope import gap_envelope

    trades = AvroSerializer(reg, TRADES)  # type: ignore[arg-type]
    plain = iter(_raw([r for r in stream if r[0] != "g"], reg))
    out = []
    for n, (kind, ts, sym, f) in enumerate(stream):
        if kind != "g":
            out.append(next(plain))
            continue
        rec = gap_envelope(
            sym, feed="iex", seq=n, from_ns=f[0], to_ns=f[1], event_ts=ts, trace_id=f"gap{n}"
        )
        out.append(trades.encode(rec))
    return out


@pytest.mark.parametrize("seed", [3, 4])
def test_gap_flags_equal_the_oracle_at_any_watermark_timing_and_across_restores(
    monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    """Gap markers in the log (docs/design.md, "Gaps"): the final bars overlapping a gap
    window carry `gap`, except those the marker's partition mark had passed; the same flags
    whatever the watermark timing and batching, after crashes and restores, and equal to the
    batch oracle of the log (tests/support/oracle.py)."""
    from tests.support.oracle import LogRecord, expected_output

    reg = InMemoryRegistry()
    monkeypatch.setattr(functions, "SchemaRegistryClient", lambda url, **_: reg)
    stream = _with_gap_markers(_late_heavy_stream(seed))
    raw = _raw_with_gaps(stream, reg)
    part = {"t": "t", "g": "t", "q": "q"}  # gap markers go to the trades partition
    records = [(sym, part[k], ts, data) for (k, ts, sym, _f), data in zip(stream, raw, strict=True)]
    deser = AvroDeserializer(reg)  # type: ignore[arg-type]
    offsets: dict[str, int] = {}
    log = []
    for _sym, p, ts, data in records:
        offsets[p] = offsets.get(p, -1) + 1
        log.append(LogRecord(p, offsets[p], ts // 1_000_000, deser.decode(data)))
    oracle = expected_output(log, bound_ms=BOUND_MS)
    assert oracle.gap_markers == 6 and oracle.late_gap_markers == 3
    flagged_by_oracle = {(s, start) for s, start in oracle.gap_bars}
    assert len(flagged_by_oracle) >= 9, "both windows must flag bars"

    runs = []
    for batch, wm_every in ((1, 1), (13, 300), (7, 1)):
        h = Harness(reg, 7 if batch == 7 else 512, wm_every=wm_every)
        i, cp, restores = 0, None, 0
        while i < len(records):
            if batch == 7 and i and i % (40 * batch) == 0:
                if cp is not None and cp[1] == i - 40 * batch and restores < 8:
                    h.restore(cp[0])  # a crash: back to the last checkpoint, replay from it
                    i, cp, restores = cp[1], None, restores + 1
                cp = (h.checkpoint(), i)
            h.feed(records[i : i + batch])
            i += batch
        assert batch != 7 or restores >= 5
        h.advance(1 << 62)
        finals = [dict(f[1]) for f in _finals(h.out, reg) if _is_final(f)]
        bars = {(r["symbol"], _start_ns(r)): r["gap"] for r in finals if "trade_count" in r}
        runs.append(bars)
        signals = {(r["symbol"], _start_ns(r)): r["gap"] for r in finals if "rsi14" in r}
        assert signals == bars  # each bar's signal carries the bar's flag
        in_oracle = {k: v for k, v in bars.items() if k in oracle.bars}
        assert len(in_oracle) == len(oracle.bars)
        assert {k for k, v in in_oracle.items() if v} == flagged_by_oracle
        # reported on ta.status.v1: every marker, and the late ones
        h.fn.watermark_ms = None  # past the end of time after the final advance
        _topic, _key, value = unframe_record(h.fn._status_frame(0))
        status = deser.decode(value)
        assert (status["gap_markers"], status["late_gap_markers"]) == (6, 3)
    assert runs[1] == runs[0] and runs[2] == runs[0]


def _start_ns(r: dict) -> int:
    import datetime

    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    return (r["window"]["start"] - epoch) // datetime.timedelta(microseconds=1) * 1000
