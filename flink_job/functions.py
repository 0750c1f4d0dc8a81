"""The PyFlink keyed function: raw envelope bytes per symbol -> bars, signals, status frames."""

from __future__ import annotations

import logging
import os
import time

from pyflink.common import Types
from pyflink.datastream import KeyedProcessFunction, RuntimeContext, TimeDomain
from pyflink.datastream.state import ListStateDescriptor, ValueStateDescriptor

from flink_job.decode import REJECTED
from flink_job.envelope_reader import EventReader
from flink_job.errors import TaJobError
from flink_job.records import microbar_record, signal_record
from flink_job.settings import TaFunctionConfig
from flink_job.symbol_cache import SymbolCache
from flink_job.symbol_processor import (
    CANCEL,
    CORRECTION,
    GAP,
    QUOTE,
    TRADE,
    SymbolProcessor,
    SymbolState,
    invalid_reason,
)
from shared.framing import frame_record
from shared.indicators import SignalConfig, SignalState
from shared.logs import LogBudget, configure, record_fields
from shared.registry import SchemaRegistryClient
from shared.serde import AvroDeserializer, AvroSerializer
from shared.topics import TA_BARS_1S, TA_SIGNALS, TA_STATUS

log = logging.getLogger("torghut.ta")
#: record-level lines per kind (rejected, late, duplicate, refused) per status interval; the
#: rest are counted (status frames, metrics) and the next line says how many were not logged
RECORD_LINES_PER_INTERVAL = 10

_WM_BYTES = 8  # the watermark (ms, signed big endian) a log entry's batch was applied at
# log entry layouts: v2 = tag + watermark + a batch of (length, mark, record); the legacy
# layout (no tag: its first byte is the watermark's, never 0x02 for a real time) is
# watermark + a batch of (length, record), whose records were late by that watermark
_LOG_V2 = b"\x02"
_HEAD = 12  # u32 length + i64 mark before each record of a batch


class BatchFramingError(TaJobError, ValueError):
    """A batch from SymbolBatchOperator is not `u32 length + i64 mark + bytes` throughout."""


def _overrun(end: int, n: int, at: int) -> BatchFramingError:
    return BatchFramingError(
        f"batch of {end} bytes: a record of {n} bytes at offset {at} runs past its end "
        "(the glue jar and the job are from different builds?)"
    )


def iter_batch(batch: bytes):
    """(mark ms, record) pairs of a `SymbolBatchOperator` batch: repeated u32 big-endian
    length + i64 big-endian event-time mark of the record's partition + record bytes."""
    pos, end = 0, len(batch)
    from_bytes = int.from_bytes
    while pos < end:
        n = from_bytes(batch[pos : pos + 4], "big")
        start = pos + _HEAD
        stop = start + n
        if stop > end:
            raise _overrun(end, n, pos)
        yield from_bytes(batch[pos + 4 : start], "big", signed=True), batch[start:stop]
        pos = stop


def frame_batch(records) -> bytes:
    """Inverse of `iter_batch` for (mark ms, record) pairs (tests and tools; the job gets
    batches from Java)."""
    return b"".join(
        len(r).to_bytes(4, "big") + m.to_bytes(8, "big", signed=True) + r for m, r in records
    )


def log_entry(watermark_ms: int, batch: bytes) -> bytes:
    """The keyed-state log entry of a batch applied at `watermark_ms` (layout v2)."""
    return _LOG_V2 + watermark_ms.to_bytes(_WM_BYTES, "big", signed=True) + batch


def iter_log_entry(item: bytes):
    """(mark, watermark, record) of each record of a log entry, either layout."""
    if item[:1] == _LOG_V2:
        wm = int.from_bytes(item[1 : 1 + _WM_BYTES], "big", signed=True)
        for mark, data in iter_batch(item[1 + _WM_BYTES :]):
            yield mark, wm, data
        return
    wm = int.from_bytes(item[:_WM_BYTES], "big", signed=True)
    batch, pos, end = item, _WM_BYTES, len(item)
    while pos < end:
        n = int.from_bytes(batch[pos : pos + 4], "big")
        start = pos + 4
        if start + n > end:
            raise _overrun(end - _WM_BYTES, n, pos - _WM_BYTES)
        yield wm, wm, batch[start : start + n]
        pos = start + n


_logs_configured = False


def configure_job_logs() -> None:
    """The job's Python side logs like every other component (shared/logs.py), once per
    interpreter, to the process's own stdout (fd 1): in thread mode this interpreter runs
    inside the JVM, where pemja sends ``sys.stdout``/``sys.stderr`` and logging to Java's
    System.out/err and log4j (the whole line would become one log4j message), and a local
    MiniCluster's stderr is a pipe its launcher reads only on a failed start. fd 1 is the
    container's log in Kubernetes and `torghut ta`'s output locally."""
    global _logs_configured
    if _logs_configured:
        return
    configure(component="ta-job", stream=os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8"))
    _logs_configured = True


class _KeyEntry:
    """One symbol's live objects between records (an entry of the per-key cache)."""

    __slots__ = ("logged", "seed_end", "sig", "sym", "used")

    def __init__(self, sym: SymbolState, sig: SignalState, logged: int) -> None:
        self.sym, self.sig, self.logged = sym, sig, logged
        self.used = 0.0  # SymbolCache: when last used
        # while `sig` is a seed no bar has closed on yet: the seed's end (else 0)
        self.seed_end = 0


def new_symbol_cache(max_symbols: int, idle_s: float, timer=time.monotonic) -> SymbolCache:
    """The keyed function's per-symbol cache: at most `max_symbols` entries (least recently
    used out first), each dropped `idle_s` after it was last used (`timer`: seconds)."""
    return SymbolCache(max_symbols, idle_s, timer)


class SymbolTaFunction(KeyedProcessFunction):
    """1 s bars, signals and status for one symbol per key; emits sink frames.

    Input: batches of one symbol's raw records (`iter_batch`), so PyFlink's per-call cost
    is paid once per batch. Keyed state is a snapshot plus a log: `symbol-state`/
    `signal-state` hold the pickled `SymbolState`/`SignalState` as of the last compaction,
    and `symbol-log` holds every batch applied since then (the raw bytes as they arrived,
    prefixed with the watermark they were applied at). Appending the bytes the record arrived in costs far less than pickling the
    whole symbol state on every trade and quote, which was the job's largest per-record cost.
    A compaction (snapshot written, log cleared) happens whenever a bar closes and whenever
    the log reaches `log_max` records. Flink checkpoints see every applied record either
    way; after a restore the first record of a key rebuilds its objects from the snapshot
    and replays the log with the recorded watermarks, emitting nothing and registering no
    timers (both are already in the checkpoint).
    """

    def __init__(self, config: TaFunctionConfig) -> None:
        self.config = config

    def open(self, runtime_context: RuntimeContext) -> None:
        o = self.config
        configure_job_logs()
        self.symbol_state = runtime_context.get_state(
            ValueStateDescriptor("symbol-state", Types.PICKLED_BYTE_ARRAY())
        )
        self.signal_state = runtime_context.get_state(
            ValueStateDescriptor("signal-state", Types.PICKLED_BYTE_ARRAY())
        )
        self.log_state = runtime_context.get_list_state(
            ListStateDescriptor("symbol-log", Types.PICKLED_BYTE_ARRAY())
        )
        self.log_max = o.state_log_max
        self.signal_config = SignalConfig.parse(o.session_start_local, o.quote_max_age_ms)
        self.limits = o.limits()
        self.proc = SymbolProcessor(
            bar_size_ns=o.bar_size_ms * 1_000_000,
            provisional_interval_ns=o.provisional_interval_ms * 1_000_000,
            quote_max_age_ns=o.quote_max_age_ms * 1_000_000,
            limits=self.limits,
            on_refuse=self._refused,
        )
        registry = SchemaRegistryClient(o.registry_url, wait_s=o.registry_wait_s)
        self.events = EventReader(AvroDeserializer(registry, "torghut.Envelope"))
        self.bars_out = AvroSerializer(registry, TA_BARS_1S)
        self.signals_out = AvroSerializer(registry, TA_SIGNALS)
        self.status_out = AvroSerializer(registry, TA_STATUS)
        # per-key objects cached between records; everything they hold is in keyed state
        # (snapshot + log), and a restore re-opens the function, so the cache never
        # outlives its state. Bounded: a symbol idle for `symbol_cache_idle_s` (or the least
        # recently used one beyond `symbol_cache_max`) is dropped, and its next record or
        # timer rebuilds it from keyed state exactly as a restore does (`_load`)
        self.cache = new_symbol_cache(o.symbol_cache_max, o.symbol_cache_idle_s)
        self.subtask = runtime_context.get_index_of_this_subtask()
        self.job = o.job_name
        self.status_interval_ns = o.status_interval_ms * 1_000_000
        self.records_in = self.records_out = self.rejected = 0
        # the emit guard (docs/design.md, "Bad input"): provisional bars it held back and
        # non-finite indicator values it emitted as null, since start (final bars it held
        # back are `refused_bars` in keyed state); logged at most once per status interval
        self.refused_provisional = self.nulled_values = 0
        interval_s = o.status_interval_ms / 1000
        self.budgets = {
            k: LogBudget(RECORD_LINES_PER_INTERVAL, interval_s)
            for k in ("rejected", "late", "duplicate", "refused")
        }
        # the raw record being applied: the exceptional paths decode it for their log line
        self.current: bytes = b""
        self.max_future_ns = o.max_future_ms * 1_000_000
        self.max_event_ns = 0
        self.last_status_ns = 0
        # the heartbeat: a processing-time timer chain, so status flows while input is idle
        self.heartbeat_due_ms = 0
        self.watermark_ms: int | None = None
        # indicator state to continue from per symbol (a backfill's seed file): used by a
        # key without keyed signal state (keyed state always wins once it exists)
        self.seeds = {sym: (end_ns, state) for sym, end_ns, state in o.seed}
        self.seeds_ignored = 0

    def _load(self, key: str) -> _KeyEntry:
        cache = self.cache
        hit = cache.get(key)  # a hit's idle time starts again
        if hit is not None:
            return hit
        raw_sym, raw_sig = self.symbol_state.value(), self.signal_state.value()
        sym = SymbolState.from_state(raw_sym) if raw_sym is not None else SymbolState()
        seed = self.seeds.get(key) if raw_sig is None else None
        if raw_sig is not None:
            sig = SignalState.from_state(raw_sig, self.signal_config)
        elif seed is not None:
            sig = SignalState.from_state(seed[1], self.signal_config)
        else:
            sig = SignalState(self.signal_config)
        entry = cache[key] = _KeyEntry(sym, sig, 0)
        if seed is not None:
            entry.seed_end = seed[0]
        # the replay takes every decision the live path took, from the same marks
        for item in self.log_state.get() or ():
            for mark, wm, data in iter_log_entry(item):
                ev = self.events.read(data, key)
                if (
                    ev is None
                    or ev[0] == REJECTED
                    or invalid_reason(ev, self.max_future_ns, self.limits)
                ):
                    continue
                self._apply(entry, ev, mark if mark > wm else wm, wm, 0)
                entry.logged += 1
        if raw_sym is not None or entry.logged:
            log.info("restored %s: snapshot + %d logged records replayed", key, entry.logged)
        return entry

    def _apply(self, entry: _KeyEntry, ev: tuple, limit: int, wm: int, wall_ns: int):
        """Apply one valid event; returns the trade's StepResult (None for other kinds).

        `limit`: the record's lateness limit (its partition mark, or the watermark if that
        is higher); `wm`: Flink's watermark. wall_ns=0 (a replay) never emits a
        provisional record. A kernel that raises on the event is logged and skipped (the
        checks in `invalid_reason` come first, so that is a bug, never a restart loop).
        """
        kind = ev[0]
        if entry.seed_end and kind == TRADE:
            self._check_seed(entry, ev, limit)
        try:
            if kind == TRADE:
                result = self.proc.on_trade(entry.sym, entry.sig, ev, limit, wall_ns)
            else:
                result = None
                if kind == QUOTE:
                    self.proc.on_quote(entry.sym, ev, limit, wm)
                elif kind in (CORRECTION, CANCEL):
                    self.proc.on_correction(entry.sym, ev)
                elif kind == GAP:
                    self.proc.on_gap(entry.sym, ev, limit, wm)
        except Exception:
            log.exception("skipped an event the kernels refused (symbol %s): %r", ev[1], ev[:6])
            return None
        if ev[2] > self.max_event_ns:
            self.max_event_ns = ev[2]
        return result

    def _check_seed(self, entry: _KeyEntry, ev: tuple, limit: int) -> None:
        """A seeded key whose trade opens (or joins) a bar that starts before the seed's
        end: the backfill already holds that second, and the indicators take bars in order
        once each, so the seed cannot continue. The bar is kept and the key starts from an
        empty SignalState, as without a seed (docs/design.md, "Backfill"). Decided before
        the trade is applied and before any bar closed, from the record's lateness limit
        like every decision here, so a replay after a restore decides the same."""
        size = self.proc.size
        start = ev[2] - ev[2] % size
        if start >= entry.seed_end or self.proc.timer_for(start + size) <= limit:
            return  # after the seed, or late (never a bar)
        log.warning(
            "%s: a live bar starts at %d ns, before the seed's end %d ns (the backfill and the "
            "live job overlap): the seed is ignored and the indicators start fresh; end the "
            "backfill before the live job's first bar to continue them",
            ev[1],
            start,
            entry.seed_end,
        )
        entry.sig = SignalState(self.signal_config)
        entry.seed_end = 0
        self.seeds_ignored += 1

    def _compact(self, entry: _KeyEntry, signals_changed: bool) -> None:
        self.symbol_state.update(entry.sym.to_state())
        if signals_changed:
            self.signal_state.update(entry.sig.to_state())
        if entry.logged:
            self.log_state.clear()
            entry.logged = 0

    def _frames(self, emissions, key: bytes):
        now = time.time_ns()
        for em in emissions:
            yield frame_record(
                TA_BARS_1S.name, key, self.bars_out.encode(microbar_record(em, now, self.job))
            )
            yield frame_record(
                TA_SIGNALS.name, key, self.signals_out.encode(signal_record(em, now, self.job))
            )
            self.records_out += 2

    def _arm_heartbeat(self, ctx) -> None:
        self.heartbeat_due_ms = time.time_ns() // 1_000_000 + self.status_interval_ns // 1_000_000
        ctx.timer_service().register_processing_time_timer(self.heartbeat_due_ms)

    def process_element(self, batch: bytes, ctx: KeyedProcessFunction.Context):
        # the hot path: one call per batch of one symbol's records (SymbolBatchOperator);
        # locals over attributes, one clock read, one watermark read and one log append
        now = time.time_ns()
        timers = ctx.timer_service()
        if not self.heartbeat_due_ms:
            self._arm_heartbeat(ctx)
        key = ctx.get_current_key()
        entry = None
        wm = timers.current_watermark()
        self.watermark_ms = wm
        applied = 0
        read = self.events.read
        max_future_ns = self.max_future_ns
        limits = self.limits
        for mark, data in iter_batch(batch):
            self.records_in += 1
            ev = read(data, key)
            if ev is None:
                continue
            if ev[0] == REJECTED:
                self._reject(key, ev[6], now, data)
                continue
            reason = invalid_reason(ev, max_future_ns, limits)
            if reason is not None:
                self._reject(key, reason, now, data)
                continue
            if entry is None:
                entry = self._load(key)
            self.current = data
            result = self._apply(entry, ev, mark if mark > wm else wm, wm, now)
            applied += 1
            if result is not None:
                if result.late or result.duplicate:
                    self._dropped(result.late, data, key, mark if mark > wm else wm)
                if result.new_timer_ms is not None:
                    timers.register_event_time_timer(result.new_timer_ms)
                if result.emissions:
                    yield from self._frames(result.emissions, key.encode())
        if entry is not None:
            # the batch as it arrived (each record with its mark), with the watermark it was
            # applied at: a replay skips what was skipped here the same way
            self.log_state.add(log_entry(wm, batch))
            entry.logged += applied
            if entry.logged >= self.log_max:
                self._compact(entry, signals_changed=False)
        if now - self.last_status_ns >= self.status_interval_ns:
            yield self._status_frame(now)

    def _record_fields(self, data: bytes, key: str | None) -> dict:
        """The correlation fields of a raw record, decoded by the general path (only on the
        exceptional paths that log): all six, None where the record has no readable value."""
        try:
            env = self.events.envelope(data)
        except Exception:  # the record the job rejects may not decode at all
            return record_fields(symbol=key)
        return record_fields(
            env.get("symbol"),
            env.get("channel"),
            env.get("event_ts"),
            env.get("seq"),
            env.get("source"),
            env.get("trace_id"),
        )

    def _reject(self, key: str, reason: str, now: int, data: bytes = b"") -> None:
        """Count a record the job cannot use; log it (`RECORD_LINES_PER_INTERVAL`)."""
        self.rejected += 1
        budget = self.budgets["rejected"]
        if budget.take():
            log.warning(
                "rejected raw record (key %r; %d rejected so far, %d not logged): %s",
                key,
                self.rejected,
                budget.drain(),
                reason,
                extra={**self._record_fields(data, key), "reason": reason[:300]},
            )

    def _dropped(self, late: bool, data: bytes, key: str, limit_ms: int) -> None:
        """A trade applied to nothing: late (its bar's timer at or below its lateness limit)
        or a duplicate of an applied seq. Counted in keyed state; logged here."""
        budget = self.budgets["late" if late else "duplicate"]
        if budget.take():
            what = (
                f"late: its bar may already be final (lateness limit {limit_ms} ms)"
                if late
                else "a duplicate of a seq already applied (a re-produced delivery)"
            )
            log.warning(
                "dropped a trade of %s, %s (%d more not logged)",
                key,
                what,
                budget.drain(),
                extra=self._record_fields(data, key),
            )

    def _refused(
        self,
        symbol: str,
        start_ns: int,
        is_final: bool,
        what: str,
        detail: str,
        record: tuple[int, int, str] | None = None,
    ) -> None:
        """The emit guard held back a bar (`what` "bar") or nulled non-finite indicator values
        ("values", `detail` names them): count it, log it (`RECORD_LINES_PER_INTERVAL`) with
        the trade it concerns (`record`: the trade just applied for a provisional bar, the
        bar's latest trade for a final one)."""
        if what == "bar":
            if not is_final:
                self.refused_provisional += 1
        else:
            self.nulled_values += detail.count(",") + 1
        budget = self.budgets["refused"]
        if not budget.take():
            return
        kind = "final" if is_final else "provisional"
        event_ns, seq, trace_id = record if record is not None else (None, None, None)
        extra = record_fields(symbol, "trades", event_ns, seq, None, trace_id)
        if not is_final and self.current:  # the trade just applied: its own envelope
            extra = self._record_fields(self.current, symbol)
        extra["not_logged"] = budget.drain()
        if what == "bar":
            log.warning(
                "%s: held back the %s bar starting %d ns (not emitted): %s",
                symbol,
                kind,
                start_ns,
                detail,
                extra=extra,
            )
        else:
            log.warning(
                "%s: the %s bar starting %d ns had non-finite %s: emitted as null",
                symbol,
                kind,
                start_ns,
                detail,
                extra=extra,
            )

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext):
        if ctx.time_domain() == TimeDomain.PROCESSING_TIME:
            # only the newest chain re-arms: a timer restored from a checkpoint ends there
            if timestamp >= self.heartbeat_due_ms:
                self._arm_heartbeat(ctx)
            yield self._status_frame(time.time_ns())
            return
        key = ctx.get_current_key()
        entry = self._load(key)
        wm = max(timestamp, ctx.timer_service().current_watermark())
        self.watermark_ms = wm
        open_bars = len(entry.sym.bars)
        emissions = self.proc.on_watermark(entry.sym, entry.sig, wm)
        if len(entry.sym.bars) != open_bars:
            entry.seed_end = 0  # a bar closed: the seed (if any) is in keyed state from now
        if emissions or len(entry.sym.bars) != open_bars:
            # a closed bar is in keyed state before anything else can drop the entry (a bar
            # the indicators refused closes without an emission and is written too)
            self._compact(entry, signals_changed=True)
        if emissions:
            yield from self._frames(emissions, key.encode())

    def _status_frame(self, now: int) -> bytes:
        self.last_status_ns = now
        # the frame covers the cached symbols: those active within the idle time
        self.cache.expire()
        symbols, late, ooo, gaps, refused, markers, late_markers = [], 0, 0, 0, 0, 0, 0
        for name, entry in sorted(self.cache.items()):
            sym = entry.sym
            c = sym.counters
            late, ooo, gaps = (
                late + c.late + c.late_quotes,
                ooo + c.out_of_order,
                gaps + c.seq_gaps + c.seq_regressions,
            )
            refused += c.refused_bars
            markers, late_markers = markers + c.gaps, late_markers + c.late_gaps
            symbols.append(
                {
                    "symbol": name,
                    "last_event_ts": sym.last_trade_ns,
                    "late_events": c.late + c.late_quotes,
                    "out_of_order_events": c.out_of_order,
                    "seq_gaps": c.seq_gaps + c.seq_regressions,
                }
            )
        wm = self.watermark_ms if self.watermark_ms is not None and self.watermark_ms > 0 else None
        record = {
            "job": self.job,
            "subtask": self.subtask,
            "emit_ts": now,
            "watermark_ts": wm * 1_000_000 if wm is not None else None,
            "watermark_lag_ms": now // 1_000_000 - wm if wm is not None else None,
            "source_lag_ms": (now - self.max_event_ns) // 1_000_000 if self.max_event_ns else None,
            "records_in": self.records_in,
            "records_out": self.records_out,
            "late_events": late,
            "out_of_order_events": ooo,
            "seq_gaps": gaps,
            "rejected_records": self.rejected + refused,
            "symbols": symbols,
            "gap_markers": markers,
            "late_gap_markers": late_markers,
            "refused_outputs": refused + self.refused_provisional,
            "nulled_values": self.nulled_values,
        }
        self.records_out += 1
        return frame_record(TA_STATUS.name, self.job.encode(), self.status_out.encode(record))
