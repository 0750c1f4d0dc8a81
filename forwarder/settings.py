"""``ForwarderSettings``: every tuning default of the forwarder, read from ``TORGHUT_FWD_*``.

Secrets (Alpaca key/secret, Kafka SASL password) are ``SecretStr`` and only come from the
environment; the CLI has no flag for them, so they never show up in ``ps`` output.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlparse

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from shared.limits import PRICE_MAX, PRICE_MIN, SIZE_MAX, PlausibleLimits
from shared.settings import KafkaConnectionFields, StrictEnvSettings

FEEDS = ("iex", "sip", "delayed_sip", "test", "otc", "boats", "overnight")
SUBSCRIBABLE = ("trades", "quotes", "bars", "updatedBars", "dailyBars", "statuses", "lulds")
DEFAULT_CHANNELS = SUBSCRIBABLE


def _split(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class ForwarderSettings(StrictEnvSettings, KafkaConnectionFields):
    """Typed configuration of one forwarder (one Alpaca account, one feed).

    Frozen; an unknown `TORGHUT_FWD_*` variable is an error naming the nearest valid one.
    The Kafka connection fields (`kafka_*`) are the shared `KafkaConnectionFields`.
    """

    model_config = SettingsConfigDict(
        env_prefix="TORGHUT_FWD_", extra="forbid", frozen=True, populate_by_name=True
    )

    # the forwarder's own names first, then the ones alpaca-py users already have set
    alpaca_key_id: SecretStr = Field(
        SecretStr(""),
        validation_alias=AliasChoices("TORGHUT_FWD_ALPACA_KEY_ID", "APCA_API_KEY_ID"),
    )
    alpaca_secret_key: SecretStr = Field(
        SecretStr(""),
        validation_alias=AliasChoices("TORGHUT_FWD_ALPACA_SECRET_KEY", "APCA_API_SECRET_KEY"),
    )
    alpaca_url: str = "wss://stream.data.alpaca.markets/v2/iex"
    feed: str = ""  # derived from the url path when empty
    symbols: Annotated[tuple[str, ...], NoDecode] = ("*",)
    channels: Annotated[tuple[str, ...], NoDecode] = DEFAULT_CHANNELS
    wire_format: Literal["msgpack", "json"] = "msgpack"

    registry_url: str = "http://127.0.0.1:8081"
    registry_wait_s: float = Field(
        600.0,
        ge=0,
        description="start-up waits this long for an unreachable schema registry (not ready "
        "meanwhile), then exits non-zero",
    )

    linger_ms: int = Field(20, ge=0, le=1000, description="seed budget 20-50 ms; 5 = low latency")
    message_timeout_ms: int = Field(300_000, ge=1000, description="librdkafka retry window")
    queue_limit: int = Field(100_000, ge=100, description="unacked envelopes before reading stops")
    native_produce: bool = Field(
        True, description="router's native path produces straight into librdkafka"
    )
    http_port: int = Field(8080, ge=0, le=65535)
    http_host: str = "0.0.0.0"

    dedup_max_entries: int = Field(200_000, ge=1, description="per message family")
    dedup_horizon_s: float = Field(300.0, gt=0)
    malloc_trim_s: float = Field(
        60.0,
        ge=0,
        description="seconds between returns of freed heap pages to the OS (glibc "
        "malloc_trim, forwarder/memtrim.py); 0: never",
    )
    backoff_base_s: float = Field(0.5, gt=0)
    backoff_cap_s: float = Field(30.0, gt=0)
    conflict_backoff_s: float = Field(60.0, gt=0, description="after 406 (account in use)")
    connect_timeout_s: float = Field(10.0, gt=0)
    producer_stall_s: float = Field(15.0, gt=0, description="unacked this long: not ready")
    seq_scan_records: int = Field(50_000, ge=0, description="tail records read per partition")
    status_interval_s: float = Field(10.0, gt=0, description="rate limit of rejected-frame status")
    max_frame_bytes: int = Field(
        16 << 20,
        ge=1 << 16,
        description="WebSocket frames above this are refused: the client closes with 1009 "
        "and reconnects (frames_rejected{reason=frame_too_large})",
    )
    max_envelope_bytes: int = Field(
        990_000,
        ge=1 << 17,
        le=100_000_000,
        description="a message whose envelope would be larger is rejected "
        "(envelope_too_large); librdkafka's message.max.bytes is set to this + 10000 "
        "(at least its default 1000000); topics and broker must accept it too",
    )
    # plausibility limits (shared/limits.py; docs/design.md "Bad input"): the TA job has the
    # same three (TORGHUT_TA_PRICE_MIN ...) with the same defaults
    price_min: float = Field(
        PRICE_MIN,
        ge=1e-100,
        le=1e100,
        description="trade prices below (quote prices other than 0 below) are rejected "
        "(invalid_price)",
    )
    price_max: float = Field(
        PRICE_MAX, ge=1e-100, le=1e100, description="trade and quote prices above are rejected"
    )
    size_max: float = Field(
        SIZE_MAX, gt=0, le=1e100, description="trade and quote sizes above are rejected"
    )
    max_future_s: float = Field(
        2.0,
        ge=0,
        le=3600,
        description="event times more than this ahead of the forwarder's clock are rejected "
        "(Kafka refuses record timestamps over an hour ahead)",
    )
    heartbeat_interval_s: float = Field(
        1.0, ge=0, description="event-time heartbeats into every raw partition (0 = off)"
    )
    heartbeat_lag_s: float = Field(
        2.0, ge=0, le=3600, description="heartbeat timestamp = event-time clock - this"
    )
    heartbeat_quiet_s: float = Field(
        1.0, gt=0, description="feed quiet this long: the event-time clock runs on with wall time"
    )
    gap_hold_s: float = Field(
        30.0,
        ge=0,
        description="after a data connection drops, heartbeats wait up to this long for the "
        "reconnect's gap markers; a gap still open then is marked so far and heartbeats "
        "resume (0 = never wait)",
    )
    trace_symbols: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="comma-separated symbols whose every record the forwarder logs as a "
        "record-level line (symbol, channel, event_ts, seq, source, trace_id) to follow it "
        "downstream; a debugging aid: while set, every frame takes the Python router (the "
        "native fast path is off). Empty: off",
    )
    record_dir: str = Field(
        "",
        description="directory of the frame recording: every WebSocket frame exactly as "
        "received, with its receive time (forwarder/recorder.py); empty: no recording",
    )
    record_rotate_bytes: int = Field(
        256 << 20, ge=1 << 16, description="a recording segment this large is closed"
    )
    record_rotate_s: float = Field(
        3600.0, ge=1, description="a recording segment this old (seconds) is closed"
    )
    record_max_bytes: int = Field(
        0,
        ge=0,
        description="retention: the oldest segments are deleted while the recording "
        "directory holds more (0: keep everything)",
    )
    record_queue_bytes: int = Field(
        64 << 20,
        ge=1 << 16,
        description="frame bytes waiting for the recording's writer thread; frames beyond "
        "are left out of the recording (counted, a loss marker in their place)",
    )

    @field_validator("symbols", "channels", "trace_symbols", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        return _split(value)

    @field_validator("channels")
    @classmethod
    def _known_channels(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [c for c in value if c not in SUBSCRIBABLE]
        if unknown:
            raise ValueError(
                f"unknown channels {unknown}; choose from {', '.join(SUBSCRIBABLE)} "
                "(corrections and cancelErrors come with trades)"
            )
        if not value:
            raise ValueError("channels must not be empty, e.g. trades,quotes,bars")
        return value

    @field_validator("symbols")
    @classmethod
    def _some_symbols(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("symbols must not be empty, e.g. AAPL,MSFT or *")
        return value

    @model_validator(mode="after")
    def _derive_feed(self) -> ForwarderSettings:
        url = urlparse(self.alpaca_url)
        if url.scheme not in ("ws", "wss"):
            raise ValueError(f"alpaca_url must be ws:// or wss://, got {self.alpaca_url!r}")
        if not self.feed:
            feed = url.path.rstrip("/").rsplit("/", 1)[-1]
            if feed not in FEEDS:
                raise ValueError(
                    f"cannot derive the feed from {self.alpaca_url!r} (path ends in {feed!r}); "
                    f"set TORGHUT_FWD_FEED to one of {', '.join(FEEDS)}"
                )
            object.__setattr__(self, "feed", feed)
        if self.record_max_bytes and self.record_max_bytes < self.record_rotate_bytes:
            raise ValueError(
                f"TORGHUT_FWD_RECORD_MAX_BYTES={self.record_max_bytes} is below "
                f"TORGHUT_FWD_RECORD_ROTATE_BYTES={self.record_rotate_bytes}: retention keeps "
                "at least the open segment; raise the maximum or lower the rotation size"
            )
        if self.kafka_security_protocol.startswith("SASL") and not self.kafka_sasl_username:
            raise ValueError(
                f"kafka_security_protocol={self.kafka_security_protocol} needs "
                "TORGHUT_FWD_KAFKA_SASL_USERNAME and TORGHUT_FWD_KAFKA_SASL_PASSWORD"
            )
        self.limits()  # TORGHUT_FWD_PRICE_MIN < TORGHUT_FWD_PRICE_MAX, else a ValueError
        return self

    def limits(self) -> PlausibleLimits:
        """The plausibility limits of trades and quotes (shared/limits.py)."""
        return PlausibleLimits(self.price_min, self.price_max, self.size_max)

    def kafka_config(self) -> dict[str, Any]:
        """confluent-kafka connection and security settings (no producer tuning)."""
        return self.kafka.as_librdkafka_dict()

    def subscription(self) -> dict[str, list[str]]:
        """The Alpaca subscribe message body: every configured channel with the symbols."""
        return {channel: list(self.symbols) for channel in self.channels}
