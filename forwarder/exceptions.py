"""Typed errors of the forwarder; each message names the input and the fix."""

from __future__ import annotations


class ForwarderError(RuntimeError):
    """Base class of forwarder failures."""


class FatalStreamError(ForwarderError):
    """Alpaca refused the account for good (402 auth failed, 409 insufficient subscription).

    Retrying cannot help, so the forwarder stops with a non-zero exit code.
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class ConnectionLimitError(ForwarderError):
    """Alpaca answered 406: another connection holds this account; retried with a long backoff."""

    code = 406


class StreamProtocolError(ForwarderError):
    """The server broke the handshake (unexpected answer, timeout); the connection is retried."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class InvalidMessageError(ValueError):
    """One market-data message does not fit the Envelope; ``reason`` is the metric label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class EnvelopeTooLargeError(InvalidMessageError):
    """One message whose envelope would exceed ``TORGHUT_FWD_MAX_ENVELOPE_BYTES`` (kept
    below librdkafka's and the broker's ``message.max.bytes``): rejected before it takes a
    seq or a dedup entry and never produced, so no produce error can loop on it."""

    def __init__(
        self,
        kind: object,
        symbol: object,
        size: int,
        limit: int,
    ) -> None:
        super().__init__(
            "envelope_too_large",
            f"T={str(kind)[:8]!r} S={str(symbol)[:32]!r}: an envelope of about {size} bytes "
            f"exceeds TORGHUT_FWD_MAX_ENVELOPE_BYTES={limit} (its strings or conditions are far beyond any Alpaca message; "
            "to accept such messages raise TORGHUT_FWD_MAX_ENVELOPE_BYTES and, with it, the "
            "broker's message.max.bytes and the raw topics' max.message.bytes)",
        )
        self.size = size
        self.limit = limit


class ProducerFatalError(ForwarderError):
    """librdkafka reported a fatal producer error (e.g. idempotence state lost)."""


class ProducerConfigError(ForwarderError):
    """The producer's librdkafka settings contradict the forwarder's (start-up fails)."""


class SequenceRecoveryError(ForwarderError):
    """The seq floor could not be recovered from the Kafka tail (broker unreachable)."""
