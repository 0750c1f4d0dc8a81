"""A backfill: a batch run of the TA job's operators over Alpaca's history, chunk by chunk,
straight into the ClickHouse tables (docs/design.md, "Backfill").

Per chunk [a, b) (whole seconds): trades and quotes of every symbol from the REST API,
merged per symbol in event time and validated like live records (convert.py), applied to
the symbol's `SymbolState` with `SymbolProcessor` as `SymbolTaFunction` applies them (every
record's lateness limit is the watermark before the chunk, so none is late; provisional
output off), then the watermark moves to the chunk's end and closes every bar of the chunk
(`on_watermark`: final bars and `SignalState` signals, in start order). Rows are the job's
Avro records (`microbar_record`/`signal_record`, source "backfill") mapped as the
materialized views map them (rows.py); ``emit_ts`` and ``version`` are the bar's end, so a
chunk computed twice writes the same rows, which ReplacingMergeTree collapses. After the
insert the position is saved (position.py): a run killed anywhere continues from the last
chunk whose rows are in, and fetches nothing before it again. At the end the seed file
(flink_job/seed.py) holds each symbol's `SignalState`, for the live job to continue from.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flink_job.records import microbar_record, signal_record
from flink_job.seed import Seed, SymbolSeed, write_seed
from flink_job.settings import TaSettings
from flink_job.symbol_processor import QUOTE, TRADE, SymbolProcessor, SymbolState
from shared.indicators import SignalConfig, SignalState
from torghut.backfill.alpaca import HistoricalClient
from torghut.backfill.convert import Refusals, chunk_events
from torghut.backfill.position import POSITION_FILE, Position, PositionError, load, save
from torghut.backfill.rows import clickhouse_row
from torghut.clickhouse.client import ClickHouseClient
from torghut.clickhouse.schema import SQL_DIR, SchemaParams, render, split_statements
from torghut.timearg import iso

log = logging.getLogger("torghut.backfill")

SOURCE = "backfill"  # the `source` of every row a backfill writes
S = 1_000_000_000
MS = 1_000_000
SEED_FILE = "seed.json"
STORAGE_SQL = ("10_tables.sql", "30_views.sql")  # never the Kafka engine tables (20_ingest)
INSERT_BATCH = 20_000
# the tables' TTLs (schemas/clickhouse/10_tables.sql): rows older are deleted at a merge
SIGNALS_TTL_DAYS, BARS_TTL_DAYS = 14, 30


class BackfillRangeError(ValueError):
    """A range the tables would not keep, or not a range at all."""


@dataclass(frozen=True)
class Plan:
    symbols: tuple[str, ...]
    start_ns: int
    end_ns: int
    feed: str = "iex"
    asof: str | None = None
    chunk_ns: int = 30 * 60 * S

    @classmethod
    def make(
        cls,
        symbols: tuple[str, ...],
        start_ns: int,
        end_ns: int,
        feed: str = "iex",
        asof: str | None = None,
        chunk_ns: int = 30 * 60 * S,
        now_ns: int | None = None,
    ) -> Plan:
        """Whole seconds (start down, end up), checked against the tables' TTL."""
        start = start_ns - start_ns % S
        end = end_ns + (-end_ns) % S
        if start >= end:
            raise BackfillRangeError(
                f"start {iso(start_ns)} must be before end {iso(end_ns)}: nothing to backfill"
            )
        now = time.time_ns() if now_ns is None else now_ns
        if end > now + S:
            raise BackfillRangeError(
                f"end {iso(end)} is in the future (now {iso(now)}); end at 'now' at the latest"
            )
        oldest = now - SIGNALS_TTL_DAYS * 86_400 * S
        if start < oldest:
            raise BackfillRangeError(
                f"start {iso(start)} is older than the tables keep: ta_signals has a TTL of "
                f"{SIGNALS_TTL_DAYS} days and ta_microbars of {BARS_TTL_DAYS} "
                "(schemas/clickhouse/10_tables.sql), so those rows would be deleted at the next "
                f"merge; start at {iso(oldest + S - oldest % S)} or later"
            )
        syms = tuple(sorted({s.strip().upper() for s in symbols if s.strip()}))
        if not syms:
            raise BackfillRangeError("give at least one symbol, e.g. --symbols AAPL,MSFT")
        return cls(syms, start, end, feed, asof, max(S, chunk_ns - chunk_ns % S))

    @property
    def name(self) -> str:
        """The state dir's name: symbols, range, feed (and asof)."""
        syms = "-".join(self.symbols)
        if len(self.symbols) > 4 or len(syms) > 40:
            digest = hashlib.sha1(",".join(self.symbols).encode()).hexdigest()[:8]
            syms = f"{self.symbols[0]}+{len(self.symbols) - 1}-{digest}"

        def stamp(ns: int) -> str:
            return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(ns // S))

        parts = [syms, stamp(self.start_ns), stamp(self.end_ns), self.feed]
        if self.asof:
            parts.append(f"asof{self.asof}")
        return "_".join(parts)

    def chunks_from(self, start_ns: int) -> list[tuple[int, int]]:
        out, a = [], start_ns
        while a < self.end_ns:
            b = min(a + self.chunk_ns, self.end_ns)
            out.append((a, b))
            a = b
        return out


@dataclass
class Progress:
    """What the progress bar shows after each chunk."""

    chunks_done: int
    chunks_total: int
    records: int  # fetched in this process
    elapsed_s: float
    requests: int
    rate_limited: int
    throttled: int


@dataclass
class Summary:
    plan: Plan
    state_dir: Path
    seed_file: Path | None
    chunks: int
    chunks_this_run: int
    resumed_at: int
    already_done: bool
    totals: dict[str, Any] = field(default_factory=dict)
    refusals: Refusals = field(default_factory=Refusals)


def ensure_tables(client: ClickHouseClient, database: str = "torghut") -> None:
    """The storage tables and views, if missing (never the Kafka engine tables)."""
    params = SchemaParams(kafka_broker="", registry_url="", database=database)
    for name in STORAGE_SQL:
        for stmt in split_statements(render((SQL_DIR / name).read_text(), params)):
            client.execute(stmt)


class Backfill:
    def __init__(
        self,
        plan: Plan,
        client: HistoricalClient,
        target: ClickHouseClient,
        state_dir: Path,
        settings: TaSettings | None = None,
        database: str = "torghut",
        on_progress: Callable[[Progress], None] | None = None,
    ) -> None:
        self.plan, self.client, self.target = plan, client, target
        self.state_dir, self.database = state_dir, database
        self.settings = settings or TaSettings()
        self.on_progress = on_progress
        s = self.settings
        self.signal_config = SignalConfig.parse(s.session_start_local, s.quote_max_age_ms)
        self.proc = SymbolProcessor(
            bar_size_ns=s.bar_size_ms * MS,
            provisional_interval_ns=0,  # batch: final bars only
            quote_max_age_ns=s.quote_max_age_ms * MS,
        )
        self.max_future_ns = s.max_future_ms * MS
        if (self.plan.chunk_ns % (s.bar_size_ms * MS)) or (
            self.plan.start_ns % (s.bar_size_ms * MS)
        ):
            raise BackfillRangeError(
                f"chunks and the start must be whole bars of {s.bar_size_ms} ms"
            )

    @property
    def position_file(self) -> Path:
        return self.state_dir / POSITION_FILE

    def _fresh(self) -> Position:
        p = self.plan
        return Position(
            name=p.name,
            symbols=list(p.symbols),
            feed=p.feed,
            asof=p.asof,
            start_ns=p.start_ns,
            end_ns=p.end_ns,
            next_ns=p.start_ns,
            chunks_total=len(p.chunks_from(p.start_ns)),
            totals={"trades": 0, "quotes": 0, "events": 0, "bars": 0, "refused": {}},
        )

    def position(self, restart: bool = False) -> Position:
        fresh = self._fresh()
        pos = None if restart else load(self.position_file)
        if pos is None:
            return fresh
        if not pos.same_run(fresh):
            raise PositionError(
                f"{self.position_file} belongs to another backfill ({pos.name}); pass another "
                "--state-dir, or --restart to start over there"
            )
        return pos

    def run(self, restart: bool = False) -> Summary:
        plan = self.plan
        pos = self.position(restart)
        refusals = Refusals()
        refusals.counts.update(pos.totals.get("refused", {}))
        summary = Summary(
            plan,
            self.state_dir,
            None,
            pos.chunks_total,
            0,
            pos.chunks_done,
            pos.done,
            refusals=refusals,
        )
        if pos.done:
            summary.seed_file = Path(pos.seed_file) if pos.seed_file else None
            summary.totals = pos.totals
            return summary
        ensure_tables(self.target, self.database)
        states = pos.get_states(self.signal_config)
        for sym in plan.symbols:
            states.setdefault(sym, (SymbolState(), SignalState(self.signal_config)))
        if pos.chunks_done:
            log.info(
                "continuing %s at chunk %d of %d (%s)",
                pos.name,
                pos.chunks_done + 1,
                pos.chunks_total,
                iso(pos.next_ns),
            )
        started, fetched = time.monotonic(), 0
        for a, b in plan.chunks_from(pos.next_ns):
            trades = self.client.fetch("trades", plan.symbols, a, b)
            quotes = self.client.fetch("quotes", plan.symbols, a, b)
            n_trades = sum(map(len, trades.values()))
            n_quotes = sum(map(len, quotes.values()))
            bars, signals, events = self._chunk(a, b, trades, quotes, states, refusals)
            self._insert("ta_microbars", bars)
            self._insert("ta_signals", signals)
            t = pos.totals
            t["trades"] += n_trades
            t["quotes"] += n_quotes
            t["events"] += events
            t["bars"] += len(bars)
            t["refused"] = dict(refusals.counts)
            pos.next_ns = b
            pos.chunks_done += 1
            pos.put_states(states)
            if pos.done:
                pos.seed_file = str(self._write_seed(states))
            save(self.position_file, pos)  # the chunk's rows are in: never fetched again
            fetched += n_trades + n_quotes
            summary.chunks_this_run += 1
            if self.on_progress is not None:
                st = self.client.stats
                self.on_progress(
                    Progress(
                        pos.chunks_done,
                        pos.chunks_total,
                        fetched,
                        time.monotonic() - started,
                        st.requests,
                        st.rate_limited,
                        st.throttled,
                    )
                )
        summary.seed_file = Path(pos.seed_file) if pos.seed_file else None
        summary.totals = pos.totals
        return summary

    def _chunk(
        self,
        a: int,
        b: int,
        trades: dict[str, list[dict[str, Any]]],
        quotes: dict[str, list[dict[str, Any]]],
        states: dict[str, tuple[SymbolState, SignalState]],
        refusals: Refusals,
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
        """Rows of every bar of [a, b), per symbol in start order."""
        proc = self.proc
        limit = a // MS - 1  # the watermark before the chunk: every earlier bar is closed
        close_at = b // MS - 1  # the timer of the chunk's last bar
        now = time.time_ns()
        bars: list[dict[str, Any]] = []
        signals: list[dict[str, Any]] = []
        applied = 0
        for sym in self.plan.symbols:
            st, sig = states[sym]
            events = chunk_events(
                sym,
                trades.get(sym, ()),
                quotes.get(sym, ()),
                st,
                self.plan.feed,
                now,
                self.max_future_ns,
                refusals,
            )
            for ev in events:
                if ev[0] == TRADE:
                    proc.on_trade(st, sig, ev, limit, 0)
                elif ev[0] == QUOTE:
                    proc.on_quote(st, ev, limit, limit)
            applied += len(events)
            for em in proc.on_watermark(st, sig, close_at):
                emit = em.bar.end_ns  # deterministic: the same rows if computed again
                bars.append(clickhouse_row(microbar_record(em, emit, SOURCE)))
                signals.append(clickhouse_row(signal_record(em, emit, SOURCE)))
        return bars, signals, applied

    def _insert(self, table: str, rows: list[dict[str, Any]]) -> None:
        for i in range(0, len(rows), INSERT_BATCH):
            self.target.insert_rows(f"{self.database}.{table}", rows[i : i + INSERT_BATCH])

    def _write_seed(self, states: dict[str, tuple[SymbolState, SignalState]]) -> Path:
        s, p = self.settings, self.plan
        symbols = {
            sym: SymbolSeed(p.end_ns, sig.bars_committed, sig.last_bar_end_ns, sig.to_state())
            for sym, (_st, sig) in sorted(states.items())
            if sig.bars_committed
        }
        seed = Seed(
            p.feed,
            p.start_ns,
            p.end_ns,
            s.bar_size_ms,
            s.session_start_local,
            s.quote_max_age_ms,
            symbols,
        )
        return write_seed(self.state_dir / SEED_FILE, seed)
