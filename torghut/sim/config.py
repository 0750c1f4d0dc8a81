"""Typed configuration of the Alpaca simulator (one object; the CLI only fills it in)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from torghut.sim.protocol import FEEDS

Feed = Literal["iex", "sip", "delayed_sip", "test"]
# feeds of Alpaca's historical REST endpoints (`feed=`), served by torghut/sim/history.py
HistoryFeed = Literal["iex", "sip", "delayed_sip", "otc", "boats"]
HISTORY_FEEDS: tuple[HistoryFeed, ...] = ("iex", "sip", "delayed_sip", "otc", "boats")
_ONE_US = timedelta(microseconds=1)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ApiKey(_Model):
    """A key the simulator accepts, and the feeds its (pretend) subscription covers."""

    key: str
    secret: str
    feeds: tuple[Feed, ...] = FEEDS  # type: ignore[assignment]
    # feeds the key may query on the historical endpoints; None: its stream feeds (test
    # aside), plus otc and boats when they include sip
    history_feeds: tuple[HistoryFeed, ...] | None = None

    def allowed_history_feeds(self) -> tuple[str, ...]:
        if self.history_feeds is not None:
            return self.history_feeds
        out = [f for f in self.feeds if f != "test"]
        return (*out, "otc", "boats") if "sip" in out else tuple(out)


class SyntheticConfig(_Model):
    """The seeded random-walk market (rates are per symbol)."""

    symbols: tuple[str, ...] = ("AAPL", "MSFT", "NVDA", "TSLA", "SPY")
    trades_per_sec: float = Field(50.0, ge=0)
    quotes_per_sec: float = Field(50.0, ge=0)
    seed: int | None = None  # None: a fresh seed per run (logged, so a run can be repeated)
    feed: Feed = "iex"  # decides the exchange codes: IEX feeds always report "V"
    volatility: float = Field(0.0002, ge=0, description="sd of the log-return per event")
    fractional_sizes: bool = False
    out_of_order_rate: float = Field(0.01, ge=0, le=1)
    out_of_order_max_s: float = Field(0.5, gt=0)
    late_rate: float = Field(0.002, ge=0, le=1)
    late_delay_s: tuple[float, float] = (2.0, 20.0)
    correction_rate: float = Field(0.001, ge=0, le=1)
    cancel_error_rate: float = Field(0.001, ge=0, le=1)
    daily_bars: bool = True
    # "realistic": sale conditions at a consolidated tape's rates, Form T outside the NYSE
    # regular session (synthetic.py); "regular": every trade a regular sale ("@")
    sale_conditions: Literal["realistic", "regular"] = "realistic"
    # "SYMBOL@N": shift the high of the symbol's N-th minute bar by 1 % (and of every
    # updatedBar of that minute), a drill for the minute check (docs/design.md)
    corrupt_minute_bar: str | None = None
    statuses: bool = True
    lulds: bool = True
    # symbols that take turns: split round robin into `rotation_groups` groups, one group
    # trades and quotes (at the rates above) for `rotation_period_s` of event time, then the
    # next; the others are silent meanwhile (idle symbols come back, for eviction drills)
    rotating_symbols: tuple[str, ...] = ()
    rotation_groups: int = Field(4, ge=1)
    rotation_period_s: float = Field(15.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> SyntheticConfig:
        if not self.symbols:
            raise ValueError("symbols must not be empty, e.g. ('AAPL', 'MSFT')")
        lo, hi = self.late_delay_s
        if not 0 < lo <= hi:
            raise ValueError(f"late_delay_s must be 0 < min <= max, got {self.late_delay_s}")
        if self.late_rate + self.out_of_order_rate > 1:
            raise ValueError("late_rate + out_of_order_rate must be <= 1")
        if self.corrupt_minute_bar is not None:
            from torghut.sim.bars import MinuteBarCorruption

            MinuteBarCorruption.parse(self.corrupt_minute_bar)  # a clear error now, not later
        return self


class ReplayConfig(_Model):
    """Replay of recorded messages: a JSONL file (one Alpaca message or list per line), or
    a forwarder's frame recording (a directory of ``rec-*.tfr.zst`` segments, one segment,
    or a glob; told apart by content), replayed frame by frame (sources.py)."""

    path: Path
    pace: Literal["original", "fast"] = "original"
    speed: float = Field(1.0, gt=0, description="original pacing sped up by this factor")


class HistoryConfig(_Model):
    """Alpaca's historical trades and quotes over [start, end) (torghut/sim/history.py).

    Generated once per feed with `SyntheticMarket` advanced over the range, so any split of
    the range into requests and pages gives the same records. Like REST history it is
    sorted by time and holds no late, out-of-order or corrected records. Naive datetimes
    are UTC.
    """

    start: datetime
    end: datetime
    symbols: tuple[str, ...] = ("AAPL", "MSFT", "NVDA", "TSLA", "SPY")
    trades_per_sec: float = Field(1.0, ge=0)
    quotes_per_sec: float = Field(1.0, ge=0)
    seed: int = 1
    volatility: float = Field(0.0002, ge=0)
    fractional_sizes: bool = False
    max_records: int = Field(5_000_000, ge=1, description="refuse a history larger than this")

    @model_validator(mode="after")
    def _check(self) -> HistoryConfig:
        if not self.symbols:
            raise ValueError("history symbols must not be empty, e.g. ('AAPL', 'MSFT')")
        if self.start_ns >= self.end_ns:
            raise ValueError(f"history start {self.start} must be before its end {self.end}")
        seconds = (self.end_ns - self.start_ns) / 1e9
        expected = len(self.symbols) * (self.trades_per_sec + self.quotes_per_sec) * seconds
        if expected > self.max_records:
            raise ValueError(
                f"a history of about {expected:,.0f} records exceeds max_records="
                f"{self.max_records:,}; lower the rates, the symbols or the range"
            )
        return self

    @staticmethod
    def _ns(t: datetime) -> int:
        if t.tzinfo is None:
            t = t.replace(tzinfo=UTC)
        return (t - datetime(1970, 1, 1, tzinfo=UTC)) // _ONE_US * 1000

    @property
    def start_ns(self) -> int:
        return self._ns(self.start)

    @property
    def end_ns(self) -> int:
        return self._ns(self.end)


class FaultConfig(_Model):
    """Faults injected into every client connection."""

    drop_every_s: float | None = Field(None, gt=0, description="close each connection after N s")
    resend_last: int = Field(0, ge=0, description="after a reconnect re-send the last K messages")
    duplicate_rate: float = Field(0.0, ge=0, le=1, description="probability a frame is sent twice")
    seed: int | None = None


class SimConfig(_Model):
    """Everything the Alpaca simulator does; defaults behave like a quiet IEX stream."""

    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535, description="0 picks a free port")
    feed: Feed = "iex"  # the path ``url`` points at; every /v2/{feed} path is served
    source: Literal["synthetic", "replay"] = "synthetic"
    synthetic: SyntheticConfig = SyntheticConfig()
    replay: ReplayConfig | None = None
    faults: FaultConfig = FaultConfig()
    keys: tuple[ApiKey, ...] = ()  # empty: any non-empty key/secret authenticates
    auth_timeout_s: float = Field(10.0, gt=0)
    connection_limit: int = Field(1, ge=1, description="concurrent connections per key")
    symbol_limit: int | None = Field(None, ge=1, description="distinct symbols per connection")
    fast: bool = Field(False, description="synthetic: as fast as clients read, no pacing")
    max_trades: int | None = Field(None, ge=0)
    max_messages: int | None = Field(None, ge=0)
    duration_s: float | None = Field(None, gt=0)
    wait_for_subscriber: bool = Field(
        True, description="start the source when the first client subscribes, not at start()"
    )
    frame_max_messages: int = Field(500, ge=1, description="messages batched into one frame")
    tick_s: float = Field(0.005, gt=0, description="paced source wake-up interval")
    send_queue_frames: int = Field(
        2048, ge=1, description="per-client queue; a paced client that fills it is dropped"
    )
    pregenerate_max_messages: int = Field(
        1_000_000,
        ge=0,
        description="fast synthetic runs bounded by max_messages up to this size generate "
        "every message before the first subscriber and encode the frames before the first "
        "data frame, so sending is all the simulator does while a client is measured",
    )
    compression: bool = Field(False, description="offer permessage-deflate like Alpaca (slower)")
    record_path: Path | None = None
    # Alpaca's historical REST endpoints on the same port (torghut/sim/history.py); None:
    # they answer 404 saying how to configure a history
    history: HistoryConfig | None = None
    history_rate_limit: int = Field(200, ge=1, description="history requests per key per window")
    history_rate_window_s: float = Field(60.0, gt=0, description="the rate limit's window")

    @model_validator(mode="after")
    def _check(self) -> SimConfig:
        if self.source == "replay" and self.replay is None:
            raise ValueError("source='replay' needs replay=ReplayConfig(path=...)")
        return self
