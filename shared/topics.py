"""The topic catalog: the one place topic names, keys, retention and schemas are stated.

Local creation (`torghut stack up`), the Strimzi KafkaTopic CRs, the Flink job, the
forwarder, ClickHouse and the tests all read this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

DAY_MS = 24 * 60 * 60 * 1000


@dataclass(frozen=True)
class Topic:
    """One Kafka topic and everything that must agree about it."""

    name: str
    key: str  # what the record key holds
    retention_days: int
    value_schema: str  # Avro record full name in schemas/avro
    description: str
    partitions: int = 1
    replication_factor: int = 3  # production; local stacks use 1
    cleanup_policy: str = "delete"
    compression: str = "lz4"
    extra_config: dict[str, str] = field(default_factory=dict)

    @property
    def retention_ms(self) -> int:
        return self.retention_days * DAY_MS

    @property
    def subject(self) -> str:
        """Schema-registry subject (TopicNameStrategy)."""
        return f"{self.name}-value"

    def config(self) -> dict[str, str]:
        """Topic-level configs as Kafka names them."""
        cfg = {
            "retention.ms": str(self.retention_ms),
            "cleanup.policy": self.cleanup_policy,
            "compression.type": self.compression,
            "min.insync.replicas": str(min(2, self.replication_factor)),
        }
        cfg.update(self.extra_config)
        return cfg


TRADES = Topic(
    "torghut.trades.v1",
    "symbol",
    7,
    "torghut.Envelope",
    "raw Alpaca trades (+corrections, cancelErrors)",
)
QUOTES = Topic("torghut.quotes.v1", "symbol", 7, "torghut.Envelope", "raw Alpaca quotes")
BARS_1M = Topic(
    "torghut.bars.1m.v1",
    "symbol",
    30,
    "torghut.Envelope",
    "Alpaca 1 min bars, updatedBars (is_final=false) and dailyBars",
)
STATUS = Topic(
    "torghut.status.v1",
    "feed",
    7,
    "torghut.Envelope",
    "forwarder status: connect, reconnect reason/attempt, errors, trading status",
)
TA_BARS_1S = Topic("ta.bars.1s.v1", "symbol", 30, "torghut.ta.MicroBar", "1 s micro-bars")
TA_SIGNALS = Topic("ta.signals.v1", "symbol", 14, "torghut.ta.Signal", "indicators per bar")
TA_STATUS = Topic(
    "ta.status.v1",
    "job",
    7,
    "torghut.ta.TaStatus",
    "job heartbeat: watermark lag, late/out-of-order counts, seq gaps",
)

TA_BAR_CHECKS = Topic(
    "ta.bar-checks.v1",
    "symbol",
    30,
    "torghut.ta.BarCheck",
    "the minute check: the job's 1 s bars rolled up per minute against Alpaca's minute bars",
)

RAW_TOPICS: tuple[Topic, ...] = (TRADES, QUOTES, BARS_1M, STATUS)
DERIVED_TOPICS: tuple[Topic, ...] = (TA_BARS_1S, TA_SIGNALS, TA_STATUS)
#: written by the minute check (`torghut check-bars`), not by the job
CHECK_TOPICS: tuple[Topic, ...] = (TA_BAR_CHECKS,)
ALL_TOPICS: tuple[Topic, ...] = RAW_TOPICS + DERIVED_TOPICS + CHECK_TOPICS

# The partition count of the symbol-keyed topics is the one catalog setting: one partition
# today (the architecture's short-term plan); more partitions shard the symbols across them
# (the record key is the symbol: one symbol's records stay in order in one partition) and the
# TA job's parallelism should match. Status topics (keyed by feed / job) keep one.
PARTITIONS_ENV = "TORGHUT_PARTITIONS"
MAX_PARTITIONS = 64


def catalog(partitions: int = 1) -> tuple[Topic, ...]:
    """`ALL_TOPICS` with `partitions` partitions for every symbol-keyed topic.

    Kafka can only add partitions, and adding them moves symbols to other partitions (their
    order across the change is then not kept): choose the count before the first deploy."""
    if not 1 <= partitions <= MAX_PARTITIONS:
        raise ValueError(
            f"{PARTITIONS_ENV}={partitions}: the symbol-keyed topics take 1 to "
            f"{MAX_PARTITIONS} partitions"
        )
    return tuple(replace(t, partitions=partitions) if t.key == "symbol" else t for t in ALL_TOPICS)


def partitions_from_env(environ: dict[str, str] | None = None) -> int:
    """The partition count `TORGHUT_PARTITIONS` asks for (default 1), validated."""
    import os

    raw = (os.environ if environ is None else environ).get(PARTITIONS_ENV, "1")
    try:
        n = int(raw)
    except ValueError:
        raise ValueError(f"{PARTITIONS_ENV}={raw!r}: give a whole number of partitions") from None
    catalog(n)  # validates the range
    return n


BY_NAME: dict[str, Topic] = {t.name: t for t in ALL_TOPICS}

# Alpaca stream channel -> raw topic it is forwarded to.
CHANNEL_TOPICS: dict[str, Topic] = {
    "trades": TRADES,
    "corrections": TRADES,
    "cancelErrors": TRADES,
    "quotes": QUOTES,
    "bars": BARS_1M,
    "updatedBars": BARS_1M,
    "dailyBars": BARS_1M,
    "statuses": STATUS,
    "lulds": STATUS,
    "status": STATUS,
}


def topic(name: str) -> Topic:
    """Look a topic up by name; a typo names the known topics instead of failing later."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown topic {name!r}; the catalog has {sorted(BY_NAME)}") from None
