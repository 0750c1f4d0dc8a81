"""Structured logs (shared/logs.py, docs/runbooks.md "Logs"): every line's keys, the six
correlation fields of record-level lines from the forwarder and the job, the JSON/text
switch, the rate limit, the JVM's log4j2 JSON configuration and the Loki collection module."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from flink_job import environment
from flink_job.symbol_processor import NO_PRICE, SymbolProcessor, SymbolState
from forwarder.app import Forwarder
from forwarder.settings import ForwarderSettings
from shared.indicators import SignalState
from shared.logs import (
    LINE_FIELDS,
    RECORD_FIELDS,
    LogBudget,
    LogSettingsError,
    configure,
    handler,
    record_fields,
)
from shared.sale_conditions import trade_updates
from tests.support.k8s import built, one

ROOT = Path(__file__).resolve().parents[2]
ALLOY = ROOT / "k8s" / "base" / "logging" / "config.alloy"
S = 1_000_000_000


@pytest.fixture
def restore_root() -> Iterator[None]:
    """`configure` replaces the root logger's handlers: put pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _capture(logger_name: str, component: str) -> tuple[io.StringIO, logging.Handler]:
    stream = io.StringIO()
    h = handler(component, "json", stream)
    logger = logging.getLogger(logger_name)
    logger.addHandler(h)
    logger.setLevel(logging.INFO)
    return stream, h


def _lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_every_json_line_has_the_line_keys_and_a_record_line_all_six_correlation_fields(
    restore_root,
) -> None:
    out = io.StringIO()
    configure("canary", level="INFO", fmt="json", stream=out)
    log = logging.getLogger("canary.check")
    log.info("plain %s", "line")
    log.warning("a record", extra=record_fields(symbol="AAPL", seq=7, trace_id="ab12"))
    plain, rec = _lines(out)
    assert set(LINE_FIELDS) <= plain.keys()
    assert (plain["app"], plain["component"], plain["logger"]) == (
        "torghut-ta",
        "canary",
        "canary.check",
    )
    assert (plain["level"], plain["message"]) == ("INFO", "plain line")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", plain["timestamp"])
    assert set(RECORD_FIELDS) <= rec.keys()
    assert {k: rec[k] for k in RECORD_FIELDS} == {
        "symbol": "AAPL",
        "channel": None,
        "event_ts": None,
        "seq": 7,
        "source": None,
        "trace_id": "ab12",
    }


def test_auto_is_text_on_a_terminal_and_json_otherwise_and_the_environment_decides(
    restore_root, monkeypatch
) -> None:
    tty = _Tty()
    configure("forwarder", stream=tty)
    logging.getLogger("forwarder").warning("hello")
    assert not tty.getvalue().startswith("{") and "hello" in tty.getvalue()
    pipe = io.StringIO()
    configure("forwarder", stream=pipe)
    logging.getLogger("forwarder").warning("hello")
    assert json.loads(pipe.getvalue())["message"] == "hello"
    monkeypatch.setenv("TORGHUT_LOG_FORMAT", "text")
    pipe = io.StringIO()
    configure("forwarder", stream=pipe)
    logging.getLogger("forwarder").warning("hello")
    assert not pipe.getvalue().startswith("{")


@pytest.mark.parametrize(
    ("env", "value", "needle"),
    [("TORGHUT_LOG_FORMAT", "xml", "TORGHUT_LOG_FORMAT"), ("TORGHUT_LOG_LEVEL", "LOUD", "LOUD")],
)
def test_a_bad_log_setting_is_a_typed_error_naming_it(
    restore_root, monkeypatch, env: str, value: str, needle: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(LogSettingsError, match=needle):
        configure("forwarder", stream=io.StringIO())


def test_the_budget_logs_so_many_lines_per_interval_and_counts_the_rest() -> None:
    now = [0.0]
    budget = LogBudget(2, 5.0, clock=lambda: now[0])
    assert [budget.take() for _ in range(5)] == [True, True, False, False, False]
    assert budget.drain() == 3 and budget.suppressed == 0
    now[0] = 5.0
    assert budget.take()


def test_the_forwarders_rejected_message_is_a_record_level_line() -> None:
    stream, h = _capture("forwarder", "forwarder")
    try:
        fwd = Forwarder(ForwarderSettings(alpaca_key_id="k", alpaca_secret_key="s"))
        fwd.on_reject("invalid_price", "p=1e308", {"T": "t", "S": "AAPL", "t": 5, "p": 1e308})
    finally:
        logging.getLogger("forwarder").removeHandler(h)
    (line,) = [r for r in _lines(stream) if r["message"].startswith("rejected market data")]
    assert {k: line[k] for k in RECORD_FIELDS} == {
        "symbol": "AAPL",
        "channel": "trades",
        "event_ts": 5,  # as received: never produced, so no seq and no trace id
        "seq": None,
        "source": "alpaca",
        "trace_id": None,
    }
    assert line["reason"] == "invalid_price"


def test_the_jobs_refused_bar_line_carries_the_trade_it_concerns() -> None:
    """The default refusal hook (the keyed function's counts and rate-limits the same)."""
    stream, h = _capture("torghut.ta", "ta-job")
    odd_lot = (
        "t",
        "AAPL",
        10 * S + 900,
        4,
        10 * S + 1000,
        "tr4",
        50.0,
        30.0,
        4,
        trade_updates("A", ("@", "I")),
    )
    try:
        SymbolProcessor().on_trade(SymbolState(), SignalState(), odd_lot, 0, 10**18)
    finally:
        logging.getLogger("torghut.ta").removeHandler(h)
    (line,) = _lines(stream)
    assert NO_PRICE in line["message"] and line["component"] == "ta-job"
    assert {k: line[k] for k in RECORD_FIELDS} == {
        "symbol": "AAPL",
        "channel": "trades",
        "event_ts": 10 * S + 900,
        "seq": 4,
        "source": None,
        "trace_id": "tr4",
    }


def _event_template(properties: str) -> dict:
    (raw,) = re.findall(r"^appender\.json\.layout\.eventTemplate = (.*)$", properties, re.M)
    return json.loads(raw)


def test_the_flink_deployment_logs_json_with_the_python_sides_top_level_keys() -> None:
    props = environment.LOG4J_JSON.read_text()
    fd = one(built("prod"), "FlinkDeployment", "torghut-ta")
    assert fd["spec"]["logConfiguration"]["log4j-console.properties"] == props
    template = _event_template(props)
    assert set(LINE_FIELDS) <= template.keys()
    assert template["app"] == "torghut-ta"
    assert "appender.json.layout.type = JsonTemplateLayout" in props
    assert "rootLogger.appenderRef.json.ref = JsonConsole" in props


def test_local_jvms_write_the_same_json_lines_to_a_file_next_to_their_text_log(
    tmp_path, monkeypatch
) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    monkeypatch.setattr(environment, "FLINK_LIB", lib)
    base = tmp_path / "log4j-cli.properties"
    base.write_text("rootLogger.appenderRef.file.ref = FileAppender\n")
    assert environment.local_log4j_properties(base, tmp_path / "a.properties") is None  # no jar
    (lib / "log4j-layout-template-json-2.24.3.jar").write_bytes(b"")
    text = environment.local_log4j_properties(base, tmp_path / "b.properties").read_text()
    assert text.startswith(base.read_text())  # the text log stays as it was
    assert "appender.json.type = File\nappender.json.fileName = ${sys:log.file}.jsonl\n" in text
    assert "rootLogger.appenderRef.json.ref = JsonFile" in text
    assert _event_template(text) == _event_template(environment.LOG4J_JSON.read_text())


def _block(text: str, head: str) -> str:
    """The body of the first `head { ... }` block (or `head = { ... }` attribute) of an Alloy
    file, braces balanced."""
    m = re.search(re.escape(head) + r"\s*=?\s*\{", text)
    assert m, f"no {head} block"
    start = m.end()
    depth, i = 1, start
    while depth:
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
    return text[start : i - 1]


def _keys(block: str) -> set[str]:
    return set(re.findall(r"^\s*(\w+)\s*=", _block(block, "values"), re.M))


def test_loki_labels_are_only_low_cardinality_fields_and_the_record_fields_are_metadata() -> None:
    text = re.sub(r"//.*", "", ALLOY.read_text())
    labels = _keys(_block(text, "stage.labels"))
    assert labels == {"app", "component", "channel", "level"}
    assert not labels & {"symbol", "seq", "trace_id", "event_ts", "source", "pod"}
    metadata = _keys(_block(text, "stage.structured_metadata"))
    assert {"symbol", "seq", "trace_id", "event_ts", "source"} <= metadata
    parsed = set(
        re.findall(r"^\s*(\w+)\s*=", _block(_block(text, "stage.json"), "expressions"), re.M)
    )
    assert labels | set(RECORD_FIELDS) <= parsed
    assert re.search(r'\bvalues\s*=\s*\["pod"\]', _block(text, "stage.label_drop"))


def test_loki_collects_only_our_pods() -> None:
    text = re.sub(r"//.*", "", ALLOY.read_text())
    selectors = _block(_block(text, 'discovery.kubernetes "pods"'), "selectors")
    assert re.search(r'label\s*=\s*"torghut\.dev/pipeline=torghut-ta"', selectors)
    cm = one(built("prod"), "ConfigMap", "torghut-alloy-logs")
    assert cm["data"]["config.alloy"] == ALLOY.read_text()


def test_torghut_run_still_finds_the_forwarders_last_error_in_its_json_log(tmp_path) -> None:
    from torghut.pipeline import _last_error_line

    log = tmp_path / "forwarder.log"
    with open(log, "w", encoding="utf-8") as stream:
        h = handler("forwarder", "json", stream)
        logger = logging.getLogger("forwarder.t")
        logger.addHandler(h)
        try:
            logger.error("stopping: %s", "Alpaca error 402 'auth failed': check the key")
            logger.warning("status disconnected")
        finally:
            logger.removeHandler(h)
    assert _last_error_line(log) == "Alpaca error 402 'auth failed': check the key"
