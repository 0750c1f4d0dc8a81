"""Errors raised by the indicator kernels."""


class IndicatorError(ValueError):
    """Base class for indicator-kernel errors."""


class BarOrderError(IndicatorError):
    """A bar was committed or peeked whose end is not after the last committed bar's end."""


class InvalidBarError(IndicatorError):
    """A bar carries a price the indicators cannot use (not finite, or not positive)."""


class SignalStateError(IndicatorError):
    """A stored state tuple is not one `SignalState.to_state` wrote (version or shape)."""
