"""Every tuning knob of the TA job, in one typed object read from `TORGHUT_TA_*` env vars."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from shared.limits import PRICE_MAX, PRICE_MIN, SIZE_MAX, PlausibleLimits
from shared.settings import KafkaConnectionFields, StrictEnvSettings


class TaSettings(StrictEnvSettings, KafkaConnectionFields):
    """TA job settings. Defaults are the low-latency profile measured in docs/low-latency.md.

    Frozen; an unknown `TORGHUT_TA_*` variable is an error naming the nearest valid one.
    The Kafka connection fields (`kafka_*`) are the shared `KafkaConnectionFields`.
    """

    model_config = SettingsConfigDict(env_prefix="TORGHUT_TA_", extra="forbid", frozen=True)

    # registry and consumer
    registry_url: str = "http://127.0.0.1:8081"
    # an unreachable registry at (re)start is waited for this long inside the task, then the
    # task fails and Flink's restart strategy starts it again (docs/reliability.md)
    registry_wait_s: float = Field(60.0, ge=0)
    consumer_group: str = "torghut-ta"
    starting_offsets: Literal["committed-earliest", "committed-latest", "earliest", "latest"] = (
        "committed-earliest"
    )
    # exactly-once: one Kafka transaction per checkpoint, read_committed readers see each
    # final record once. at-least-once (the fallback profile): no transactions, records are
    # readable at once, and a restore re-emits what followed the checkpoint — the same
    # records again (the output is a function of the log), which ClickHouse's
    # ReplacingMergeTree collapses; other readers dedup by (symbol, window, is_final)
    delivery_guarantee: Literal["exactly-once", "at-least-once"] = "exactly-once"
    transactional_id_prefix: str = "torghut-ta-local"
    # the broker allows at most its transaction.max.timeout.ms (15 min default in Kafka; a
    # larger value fails the sink's InitProducerId). A Kafka outage or a restore longer than
    # this lets the broker abort the last checkpoint's transaction: its records are lost and
    # the committer counts failedCommittables (alert TorghutTaSinkCommitFailures), so
    # use all the broker allows (docs/reliability.md)
    transaction_timeout_ms: int = 900_000

    # checkpoints and restarts
    checkpoint_dir: str = "s3a://flink-checkpoints/torghut-ta/checkpoints"
    checkpoint_interval_ms: int = Field(10_000, ge=1_000)
    checkpoint_timeout_ms: int = 120_000
    # failed (e.g. timed-out) checkpoints in a row before the job fails over and replays from
    # its last completed checkpoint. Keep (this + 1) x (interval + pause + timeout + two S3A
    # calls) below the transaction timeout: a later checkpoint commits the transactions of
    # failed ones, so they must not have timed out by then (checkpoint storage outage,
    # docs/reliability.md; tests/unit/test_transaction_timeout.py)
    tolerable_failed_checkpoints: int = Field(3, ge=0)
    min_pause_between_checkpoints_ms: int = 500
    # execution.checkpointing.data-inline-threshold (Flink allows <= 1 MB)
    checkpoint_inline_state_kb: int = Field(512, ge=0, le=1024)
    s3_endpoint: str = ""
    s3_access_key: str = ""
    s3_secret_key: SecretStr = SecretStr("")
    s3_path_style_access: bool = True
    # bounds of every S3A call (checkpoint files, the JobManager's _metadata). Hadoop's
    # defaults (200 s socket timeout, 20 SDK attempts, 7 S3A retries) let a hung store hold a
    # checkpoint's finalization for hours, which the checkpoint timeout does not cover; a
    # checkpoint completing after the broker aborted its transaction loses that
    # transaction's records. Worst case per call ~ (retry_limit + 1) x attempts x timeout,
    # kept well below the transaction timeout (tests/unit/test_transaction_timeout.py)
    s3_socket_timeout_ms: int = Field(5_000, ge=500)
    s3_attempts: int = Field(2, ge=1)
    s3_retry_limit: int = Field(2, ge=0)
    restart_initial_backoff_ms: int = 1_000
    restart_max_backoff_ms: int = 60_000

    # event time
    out_of_orderness_ms: int = Field(1_000, ge=0, le=10_000)
    # 0 = off: quiet partitions move on through the forwarder's heartbeats; idleness skips a
    # partition by wall-clock time, which makes lateness depend on processing speed
    idleness_ms: int = Field(0, ge=0)
    # an event time this far past the envelope's ingest time is rejected and cannot move
    # event time (the forwarder rejects beyond its own TORGHUT_FWD_MAX_FUTURE_S first)
    max_future_ms: int = Field(2_000, ge=0, le=3_600_000)
    # plausibility limits (shared/limits.py, docs/design.md "Bad input"): a trade or quote
    # outside them is refused like a non-finite one; the emit guard holds back a bar whose
    # prices leave them. The forwarder has the same three (TORGHUT_FWD_*), same defaults.
    # Bounded by the indicators' own domain (shared/indicators/signals.py: 1e-100 .. 1e100)
    price_min: float = Field(PRICE_MIN, ge=1e-100, le=1e100)
    price_max: float = Field(PRICE_MAX, ge=1e-100, le=1e100)
    size_max: float = Field(SIZE_MAX, gt=0, le=1e100)
    bar_size_ms: int = 1_000
    provisional_interval_ms: int = Field(200, ge=0, description="0 disables provisional output")
    quote_max_age_ms: int = 5_000
    session_start_local: str = "04:00"  # America/New_York
    status_interval_ms: int = 5_000
    job_name: str = "torghut-ta"

    # PyFlink latency tuning (defaults would give ~1.5 s p99 per event; never ship those)
    python_execution_mode: Literal["thread", "process"] = "thread"
    bundle_time_ms: int = Field(5, ge=1, le=10)
    bundle_size: int = Field(1_000, ge=1_000)
    buffer_timeout_ms: int = Field(1, ge=0, le=5)
    watermark_interval_ms: int = 50
    # unset: the cluster's parallelism.default (the FlinkDeployment's job.parallelism, so a
    # rescale through the operator spec takes effect); the local MiniCluster runs 1
    parallelism: int | None = Field(None, ge=1)
    # records of one symbol handed to Python together (SymbolBatchOperator, in Java): a batch
    # goes out at this many buffered records, this long after its first one, and before
    # every watermark and checkpoint barrier; delay 0 = one record per call
    batch_max_records: int = Field(256, ge=1)
    batch_max_delay_ms: int = Field(1, ge=0, le=50)
    # JVM options of the local MiniCluster (`torghut ta`, tests, benchmarks; not Kubernetes).
    # C1 only: on a 2-core machine the C2 compiler thread took ~0.3 cores for the first
    # minute, CPU the Python-bound task thread needed; measured in docs/low-latency.md
    local_jvm_opts: str = "-XX:TieredStopAtLevel=1"
    # Flink's Prometheus reporter on this port of the local MiniCluster (`torghut ta`, tests);
    # 0 = off. In Kubernetes the FlinkDeployment's flinkConfiguration turns it on (9249)
    metrics_port: int = Field(0, ge=0, le=65535)
    # the keyed function's per-symbol cache (live objects rebuilt from keyed state on a miss):
    # a symbol idle this long is dropped, and at most this many are kept (LRU beyond)
    symbol_cache_idle_s: float = Field(300.0, gt=0)
    symbol_cache_max: int = Field(100_000, ge=1)
    # indicator state to continue from (`torghut backfill` writes it; flink_job/seed.py): a
    # symbol without keyed signal state starts from its seed; "" = none (docs/design.md,
    # "Backfill")
    seed_file: str = ""

    @model_validator(mode="after")
    def _limits_are_a_range(self) -> TaSettings:
        self.limits()  # price_min < price_max, or a ValueError naming both
        return self

    def limits(self) -> PlausibleLimits:
        return PlausibleLimits(self.price_min, self.price_max, self.size_max)

    def kafka_properties(self) -> dict[str, str]:
        """Client security properties for the Java Kafka clients of source and sink."""
        return self.kafka.as_java_properties()

    def function_config(self) -> TaFunctionConfig:
        """What the keyed function needs (pickled into the job graph with it)."""
        return TaFunctionConfig(
            registry_url=self.registry_url,
            registry_wait_s=self.registry_wait_s,
            bar_size_ms=self.bar_size_ms,
            provisional_interval_ms=self.provisional_interval_ms,
            quote_max_age_ms=self.quote_max_age_ms,
            session_start_local=self.session_start_local,
            status_interval_ms=self.status_interval_ms,
            job_name=self.job_name,
            max_future_ms=self.max_future_ms,
            price_min=self.price_min,
            price_max=self.price_max,
            size_max=self.size_max,
            symbol_cache_idle_s=self.symbol_cache_idle_s,
            symbol_cache_max=self.symbol_cache_max,
            seed=self._seed(),
        )

    def _seed(self) -> tuple[tuple[str, int, tuple], ...]:
        """The seed file's states as plain values (read here, in the driver: the function
        is pickled with them, so no task reads the file)."""
        if not self.seed_file:
            return ()
        from flink_job.seed import seed_states

        return seed_states(
            self.seed_file, self.bar_size_ms, self.session_start_local, self.quote_max_age_ms
        )


@dataclass(frozen=True)
class TaFunctionConfig:
    """The keyed function's slice of `TaSettings` (plain values: it is pickled)."""

    registry_url: str
    registry_wait_s: float = 60.0
    # plausibility limits (shared/limits.py, docs/design.md "Bad input"): a trade or quote
    # outside them is refused like a non-finite one; the emit guard holds back a bar whose
    # prices leave them. The forwarder has the same three (TORGHUT_FWD_*), same defaults.
    # Bounded by the indicators' own domain (shared/indicators/signals.py: 1e-100 .. 1e100)
    price_min: float = Field(PRICE_MIN, ge=1e-100, le=1e100)
    price_max: float = Field(PRICE_MAX, ge=1e-100, le=1e100)
    size_max: float = Field(SIZE_MAX, gt=0, le=1e100)
    bar_size_ms: int = 1_000
    provisional_interval_ms: int = 200
    quote_max_age_ms: int = 5_000
    session_start_local: str = "04:00"
    status_interval_ms: int = 5_000
    job_name: str = "torghut-ta"
    max_future_ms: int = 2_000
    # plausibility limits (TaSettings.price_min ...; shared/limits.py)
    price_min: float = PRICE_MIN
    price_max: float = PRICE_MAX
    size_max: float = SIZE_MAX
    # a key's log is compacted into its snapshot at the latest after this many records (a bar
    # close compacts too); bounds the checkpointed log and the replay after a restore
    state_log_max: int = 512
    symbol_cache_idle_s: float = 300.0
    symbol_cache_max: int = 100_000
    # (symbol, seed end ns, SignalState.to_state()) per seeded symbol (flink_job/seed.py)
    seed: tuple[tuple[str, int, tuple], ...] = ()

    def limits(self) -> PlausibleLimits:
        return PlausibleLimits(self.price_min, self.price_max, self.size_max)
