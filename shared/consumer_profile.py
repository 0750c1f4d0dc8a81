"""The consumer profile: how readers of the TA topics read them (`TORGHUT_CONSUMER_*`).

One setting drives every reader: ClickHouse's Kafka engine tables (`torghut clickhouse apply`
and `torghut clickhouse flags` render them from it) and the Python consumer
(`shared/ta_consumer.py`, `torghut consume`).

- `profile`: `exactly-once` (default) reads `read_committed`: only records of committed
  transactions, so nothing a job restore rolls back is ever seen. `at-least-once` also reads
  `read_uncommitted`: provisional records are readable as soon as the job writes them (no
  wait for its checkpoint), records may come twice, and a record of a transaction that is
  later aborted may be seen; readers dedup by `(symbol, window_start, is_final, version)`
  (ClickHouse's `ReplacingMergeTree(version)` does). ClickHouse keeps final rows on the
  committed path in both profiles (docs/flink-job.md, "Delivery").
- `enabled`: whether ClickHouse consumes at all. Off, the ingest database holds no Kafka
  table and no materialized view: nothing is read and the consumer groups' committed offsets
  stay where they were; on again, consumption resumes from them.
- `bars_version`, `signals_version`: which version of each stream to read (`ta.bars.1s.v1`,
  `ta.signals.v1`; `2` reads `ta.signals.v2` once it exists). A new topic version starts from
  its earliest offset in the same consumer group.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import StrictEnvSettings

Profile = Literal["exactly-once", "at-least-once"]
Isolation = Literal["read_committed", "read_uncommitted"]
PROFILES: tuple[Profile, ...] = ("exactly-once", "at-least-once")
ENV_PREFIX = "TORGHUT_CONSUMER_"
# the streams a profile names a version of, and the topic name of version N of each
STREAM_TOPICS = {"bars": "ta.bars.1s.v{version}", "signals": "ta.signals.v{version}"}
MAX_VERSION = 99


def isolation_of(profile: Profile) -> Isolation:
    """The isolation level a Python reader of this profile reads with."""
    return "read_committed" if profile == "exactly-once" else "read_uncommitted"


class ConsumerProfile(StrictEnvSettings):
    """Typed consumer profile (module doc); env `TORGHUT_CONSUMER_<FIELD>`, strict names."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", frozen=True, populate_by_name=True
    )

    profile: Profile = Field(
        "exactly-once",
        description="exactly-once: read_committed only; at-least-once: provisional records "
        "read_uncommitted too, duplicates removed by the reader",
    )
    enabled: bool = Field(
        True, description="ClickHouse consumes the TA topics (off: no Kafka table, no MV)"
    )
    bars_version: int = Field(1, ge=1, le=MAX_VERSION, description="reads ta.bars.1s.v<N>")
    signals_version: int = Field(1, ge=1, le=MAX_VERSION, description="reads ta.signals.v<N>")

    @property
    def bars_topic(self) -> str:
        return STREAM_TOPICS["bars"].format(version=self.bars_version)

    @property
    def signals_topic(self) -> str:
        return STREAM_TOPICS["signals"].format(version=self.signals_version)

    @property
    def isolation(self) -> Isolation:
        return isolation_of(self.profile)

    @property
    def at_least_once(self) -> bool:
        return self.profile == "at-least-once"

    def describe(self) -> str:
        state = "enabled" if self.enabled else "disabled"
        return f"{self.profile}, {state}, {self.bars_topic}, {self.signals_topic}"
