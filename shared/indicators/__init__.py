"""Streaming indicator kernels (pure Python, no I/O), one `SignalState` per symbol."""

from shared.indicators.exceptions import (
    BarOrderError,
    IndicatorError,
    InvalidBarError,
    SignalStateError,
)
from shared.indicators.session import NEW_YORK, SessionCalendar
from shared.indicators.signals import (
    STATE_VERSION,
    VOL_WINDOW_NS,
    VWAP_WINDOW_NS,
    Quote,
    SignalConfig,
    SignalState,
    SignalValues,
)
from shared.indicators.windows import RollingVolatility, RollingVwap

__all__ = [
    "NEW_YORK",
    "STATE_VERSION",
    "VOL_WINDOW_NS",
    "VWAP_WINDOW_NS",
    "BarOrderError",
    "IndicatorError",
    "InvalidBarError",
    "Quote",
    "RollingVolatility",
    "RollingVwap",
    "SessionCalendar",
    "SignalConfig",
    "SignalState",
    "SignalStateError",
    "SignalValues",
]
