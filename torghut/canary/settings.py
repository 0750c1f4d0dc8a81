"""`CanarySettings`: the canary's settings, from `TORGHUT_CANARY_*` (strict names)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from shared.settings import KafkaConnectionFields, StrictEnvSettings


class CanarySettings(StrictEnvSettings, KafkaConnectionFields):
    """Typed configuration of `torghut canary` (docs/design.md, "The canary").

    Frozen; an unknown `TORGHUT_CANARY_*` variable is an error naming the nearest valid one.
    """

    model_config = SettingsConfigDict(
        env_prefix="TORGHUT_CANARY_", extra="forbid", frozen=True, populate_by_name=True
    )

    symbols: Annotated[tuple[str, ...], NoDecode] = Field(
        ...,
        description="the symbols the forwarder subscribes (TORGHUT_FWD_SYMBOLS): only these "
        "are metric labels; records of any other symbol are counted in one aggregate",
    )
    registry_url: str = "http://127.0.0.1:8081"
    consumer_group: str = Field(
        "torghut-canary",
        description="consumer group id (offsets are never committed: it reads from the end)",
    )
    calendar: str = Field(
        "XNYS",
        description="the exchange_calendars calendar of torghut_market_session_open ('24/7': "
        "always open, for drills outside market hours)",
    )
    lag_threshold_s: float = Field(
        30.0,
        gt=0,
        description="torghut_canary_lagging is 1 while a symbol's derived output is more "
        "than this far behind its raw input and the input is not stalled (the alert "
        "TorghutTaLagging has its own threshold in the PrometheusRule)",
    )
    input_stall_s: float = Field(
        120.0,
        gt=0,
        description="torghut_canary_input_stalled is 1 once no raw event of a configured "
        "symbol has been newer than the newest one for this long (wall clock)",
    )
    http_port: int = Field(8083, ge=0, le=65535, description="/metrics; 0: no server")
    http_host: str = "0.0.0.0"

    @field_validator("symbols", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("symbols")
    @classmethod
    def _listed_symbols(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("symbols must not be empty: the forwarder's list, e.g. AAPL,MSFT")
        if "*" in value:
            raise ValueError(
                "symbols '*' would make every traded symbol a metric label: list the "
                "forwarder's symbols (e.g. AAPL,MSFT); other symbols are counted in one "
                "aggregate"
            )
        return value

    @field_validator("calendar")
    @classmethod
    def _known_calendar(cls, value: str) -> str:
        import exchange_calendars

        names = exchange_calendars.get_calendar_names()
        if value not in names:
            raise ValueError(
                f"calendar {value!r} is not an exchange_calendars name; e.g. XNYS or 24/7"
            )
        return value
