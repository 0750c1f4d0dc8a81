"""`SymbolTaFunction` driven in-process in unit tests: an in-memory stand-in of PyFlink's
keyed state and timer service with Flink's restore semantics (`Harness`: records and
watermarks fed like the source + SymbolBatchOperator + Flink, checkpoints copied, a restore
that drops the per-key cache and the aborted transaction's output), a seeded stream of
trades and quotes, its Avro envelopes and the decoded outputs."""

from __future__ import annotations

import copy
import random
from typing import Any

from flink_job.functions import SymbolTaFunction, frame_batch
from flink_job.settings import TaFunctionConfig
from shared.framing import unframe_record
from shared.serde import AvroDeserializer, AvroSerializer
from shared.topics import QUOTES, TRADES
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
    """One value state of the current key (deep copies in and out, as serialized state)."""

    def __init__(self, store: Store, name: str) -> None:
        self.store, self.name = store, name

    def value(self) -> Any:
        return copy.deepcopy(self.store.data.get((self.name, self.store.key)))

    def update(self, value: Any) -> None:
        self.store.data[(self.name, self.store.key)] = copy.deepcopy(value)


class ListState(ValueState):
    """One list state of the current key."""

    def get(self) -> list[Any]:
        return list(self.store.data.get((self.name, self.store.key), []))

    def add(self, value: Any) -> None:
        self.store.data.setdefault((self.name, self.store.key), []).append(value)

    def clear(self) -> None:
        self.store.data.pop((self.name, self.store.key), None)


class RuntimeContext:
    """What `SymbolTaFunction.open` needs of PyFlink's RuntimeContext (subtask 0)."""

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


def mixed_stream(seed: int) -> list[tuple[str, int, str, tuple]]:
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


def raw_envelopes(stream: list[tuple[str, int, str, tuple]], reg: InMemoryRegistry) -> list[bytes]:
    """Each record of `stream` as the Avro envelope the forwarder writes (seq per symbol)."""
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


def decoded_outputs(frames: list[bytes], reg: InMemoryRegistry) -> list[tuple[str, tuple]]:
    """(topic, sorted fields) of every output frame, without the emit time and version."""
    deser = AvroDeserializer(reg)  # type: ignore[arg-type]
    out = []
    for frame in frames:
        topic, _key, value = unframe_record(frame)
        rec = deser.decode(value)
        rec.pop("emit_ts", None)
        rec.pop("version", None)  # the emit time too (ReplacingMergeTree version)
        out.append((topic, tuple(sorted(rec.items(), key=lambda kv: kv[0]))))
    return out


def is_final(frame: tuple[str, tuple]) -> bool:
    """Whether a decoded output is final."""
    return dict(frame[1])["is_final"]
