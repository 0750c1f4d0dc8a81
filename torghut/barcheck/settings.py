"""`BarCheckSettings`: the minute check's settings, from `TORGHUT_CHECK_*` (strict names)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import KafkaConnectionFields, StrictEnvSettings


class BarCheckSettings(StrictEnvSettings, KafkaConnectionFields):
    """Typed configuration of `torghut check-bars` (docs/design.md, "The minute check").

    Frozen; an unknown `TORGHUT_CHECK_*` variable is an error naming the nearest valid one.
    """

    model_config = SettingsConfigDict(
        env_prefix="TORGHUT_CHECK_", extra="forbid", frozen=True, populate_by_name=True
    )

    registry_url: str = "http://127.0.0.1:8081"
    consumer_group: str = Field(
        "torghut-bar-check",
        description="consumer group id (offsets are never committed: every start positions "
        "itself, see from_beginning)",
    )
    from_beginning: bool = Field(
        False,
        description="read the topics from their beginning (replays, tests); default: from "
        "their end, checking the minutes that start after the check started",
    )
    ta_subtasks: int = Field(
        1,
        ge=1,
        description="the TA job's parallelism: the watermark of ta.status.v1 counts once this "
        "many subtasks reported one (the lowest of them)",
    )
    ta_job: str = Field("", description="only ta.status.v1 records of this job name ('' any)")
    vendor_wait_s: float = Field(
        120.0,
        gt=0,
        description="a minute of ours with no vendor bar is only_ours after this long (or "
        "once a vendor bar of a later minute arrived)",
    )
    produce: bool = Field(True, description="write each check to ta.bar-checks.v1")
    http_port: int = Field(8082, ge=0, le=65535, description="/metrics; 0: no server")
    http_host: str = "0.0.0.0"
    log_disagreements: bool = True
