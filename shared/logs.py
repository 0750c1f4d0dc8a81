"""Structured logs for every torghut-ta process: one JSON object per line (or a readable line
on a developer's terminal), built on structlog's stdlib integration.

Every process calls ``configure(component=...)`` once at start (the forwarder, the TA job's
Python side in its keyed function's ``open``, the minute check, the simulator, the
backfill; a canary consumer calls ``configure(component="canary")``). Modules keep using
``logging.getLogger(name)``; structlog's ``ProcessorFormatter`` renders every stdlib
record, so libraries' lines are JSON too.

Every line has ``timestamp`` (UTC, ISO 8601), ``level``, ``logger``, ``app``
(``torghut-ta``), ``component`` and ``message``: the same top-level keys the JVM's log4j2
JSON Template Layout writes (k8s/base/flink/log4j-console.json), so one collector
pipeline parses both. A record-level line (a rejected, late or refused record, a gap
marker, a traced record) also carries the six correlation fields of ``RECORD_FIELDS``,
all six keys on every such line (``null`` where the record has no value for one):
pass ``extra=record_fields(...)`` to the logging call.

Format and level: ``TORGHUT_LOG_FORMAT`` = ``json`` | ``text`` | ``auto`` (the default:
text when the stream is a terminal, JSON otherwise, so containers and the log files of
``torghut run`` get JSON), ``TORGHUT_LOG_LEVEL`` (``INFO``). An argument of
``configure`` wins over the environment. docs/runbooks.md, "Logs".
"""

from __future__ import annotations

import logging
import sys
import time
from typing import IO, Any, Literal

import structlog
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

APP = "torghut-ta"
#: the correlation fields of a record-level line: the envelope's own field names, so a line
#: joins the record in Kafka and its row in ClickHouse (``trace_id``, ``seq``)
RECORD_FIELDS = ("symbol", "channel", "event_ts", "seq", "source", "trace_id")
#: the top-level keys of every line, Python and JVM alike
LINE_FIELDS = ("timestamp", "level", "logger", "app", "component", "message")
LogFormat = Literal["json", "text", "auto"]


class LogSettingsError(ValueError):
    """``TORGHUT_LOG_FORMAT`` or ``TORGHUT_LOG_LEVEL`` holds a value this module cannot use."""


class LogSettings(BaseSettings):
    """``TORGHUT_LOG_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="TORGHUT_LOG_", extra="ignore", frozen=True)

    format: LogFormat = Field(
        "auto", description="json, text, or auto (text on a terminal, JSON otherwise)"
    )
    level: str = Field("INFO", description="DEBUG, INFO, WARNING, ERROR")

    @field_validator("level")
    @classmethod
    def _known_level(cls, v: str) -> str:
        name = v.strip().upper()
        if not isinstance(logging.getLevelName(name), int):
            raise ValueError(f"{v!r} is not a logging level; use DEBUG, INFO, WARNING or ERROR")
        return name


def record_fields(
    symbol: str | None = None,
    channel: str | None = None,
    event_ts: int | None = None,
    seq: int | None = None,
    source: str | None = None,
    trace_id: str | None = None,
) -> dict[str, Any]:
    """The ``extra=`` of a record-level line: all six correlation fields, None where unknown.
    ``event_ts`` is epoch nanoseconds as in the envelope."""
    return {
        "symbol": symbol,
        "channel": channel,
        "event_ts": event_ts,
        "seq": seq,
        "source": source,
        "trace_id": trace_id,
    }


def _component_adder(component: str):
    def add(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
        # upper case like log4j's levels (WARNING here is WARN there)
        event["level"] = str(event.get("level", "")).upper()
        event["app"] = APP
        event["component"] = component
        return event

    return add


def _is_terminal(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


#: libraries whose INFO lines (a connection opened or closed, a request sent) are noise in
#: every component: WARNING and above unless the level is DEBUG
QUIET_LIBRARIES = ("websockets", "urllib3", "requests")


def formatter(component: str, fmt: Literal["json", "text"]) -> logging.Formatter:
    """The formatter of `component`'s lines: structlog's ``ProcessorFormatter`` over stdlib
    records (the ``extra`` fields of a call become keys of the line)."""
    chain: list[Any] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        _component_adder(component),
    ]
    if fmt == "json":
        processors: list[Any] = [
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.EventRenamer("message"),
            structlog.processors.JSONRenderer(sort_keys=False),
        ]
    else:
        processors = [
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.dev.ConsoleRenderer(colors=False),
        ]
    return structlog.stdlib.ProcessorFormatter(foreign_pre_chain=chain, processors=processors)


def handler(
    component: str, fmt: Literal["json", "text"] = "json", stream: IO[str] | None = None
) -> logging.Handler:
    """A stream handler writing `component`'s lines (tests attach one to a logger)."""
    h = logging.StreamHandler(stream if stream is not None else sys.stderr)
    h.setFormatter(formatter(component, fmt))
    return h


def configure(
    component: str,
    level: str | int | None = None,
    fmt: LogFormat | None = None,
    stream: IO[str] | None = None,
    sink: logging.Handler | None = None,
) -> logging.Handler:
    """Send every log record of this process to `stream` (stderr) as `component`'s lines,
    replacing the root logger's handlers; returns the handler. `level` and `fmt` default to
    ``TORGHUT_LOG_LEVEL`` and ``TORGHUT_LOG_FORMAT`` (``LogSettings``); a value neither
    accepts raises ``LogSettingsError`` naming it. `sink`: a handler of the caller's that
    writes the lines instead (e.g. above a progress bar), given this module's formatter;
    `stream` then only decides ``auto``."""
    try:
        settings = LogSettings()  # type: ignore[call-arg]  # from the environment
    except ValidationError as exc:
        raise LogSettingsError(
            f"invalid log settings in the environment (TORGHUT_LOG_FORMAT json|text|auto, "
            f"TORGHUT_LOG_LEVEL DEBUG|INFO|WARNING|ERROR):\n{exc}"
        ) from exc
    out = stream if stream is not None else sys.stderr
    chosen = fmt or settings.format
    if chosen not in ("json", "text", "auto"):
        raise LogSettingsError(f"log format {chosen!r}: use json, text or auto")
    if chosen == "auto":
        chosen = "text" if _is_terminal(out) else "json"
    if level is None:
        level = settings.level
    if isinstance(level, str):
        resolved = logging.getLevelName(level.strip().upper())
        if not isinstance(resolved, int):
            raise LogSettingsError(f"log level {level!r}: use DEBUG, INFO, WARNING or ERROR")
        level = resolved
    if sink is not None:
        h: logging.Handler = sink
        h.setFormatter(formatter(component, "text" if chosen == "text" else "json"))
    else:
        h = handler(component, "text" if chosen == "text" else "json", out)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(h)
    root.setLevel(level)
    for name in QUIET_LIBRARIES:  # their INFO lines are per connection/request, never ours
        logging.getLogger(name).setLevel(
            logging.DEBUG if level <= logging.DEBUG else logging.WARNING
        )
    return h


class LogBudget:
    """At most `lines` log lines per `interval_s` for one kind of record-level event (a flood
    of bad records must not become a flood of lines): ``take()`` says whether to log this
    one, ``suppressed`` how many were counted but not logged since the last line."""

    __slots__ = ("_clock", "_left", "_window_end", "interval_s", "lines", "suppressed")

    def __init__(self, lines: int, interval_s: float, clock=time.monotonic) -> None:
        self.lines, self.interval_s, self._clock = lines, interval_s, clock
        self._left, self._window_end, self.suppressed = lines, -1.0, 0

    def take(self) -> bool:
        now = self._clock()
        if now >= self._window_end:
            self._window_end, self._left = now + self.interval_s, self.lines
        if self._left > 0:
            self._left -= 1
            return True
        self.suppressed += 1
        return False

    def drain(self) -> int:
        """The suppressed count for the line being written; resets it."""
        n, self.suppressed = self.suppressed, 0
        return n
