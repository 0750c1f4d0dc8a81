"""The job's output records are valid Avro of the catalog's schemas and keep every value."""

from __future__ import annotations

import datetime
import io

import fastavro

from flink_job.records import microbar_record, signal_record
from flink_job.symbol_processor import Emission
from shared.bars import MicroBar
from shared.indicators import SignalValues
from shared.schemas import parsed

S = 1_000_000_000
START = 1_767_362_400 * S


def _roundtrip(record: dict, schema: str) -> dict:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parsed(schema), record)
    buf.seek(0)
    return fastavro.schemaless_reader(buf, parsed(schema))


def _emission(final: bool) -> Emission:
    bar = MicroBar.open_with("AAPL", START, S, 101.25, 0.125, START + 7)
    bar.add_trade(101.5, 3.0, START + 900)
    values = SignalValues(ema12=101.3, rsi14=55.5, spread=0.02, imbalance=-0.25)
    return Emission(bar, values, final, START + 900, START + 1_234, 42, "tr-1")


def test_microbar_record_round_trips_with_window_in_micros_and_ns_timestamps():
    rec = _roundtrip(microbar_record(_emission(True), START + 5 * S), "torghut.ta.MicroBar")
    start = datetime.datetime.fromtimestamp(START // S, datetime.UTC)
    assert rec["window"] == {
        "size_ms": 1000,
        "step_ms": 1000,
        "start": start,
        "end": start + datetime.timedelta(seconds=1),
    }
    assert (rec["open"], rec["close"], rec["volume"], rec["trade_count"]) == (
        101.25,
        101.5,
        3.125,
        2,
    )
    assert (rec["event_ts"], rec["ingest_ts"], rec["emit_ts"]) == (
        START + 900,
        START + 1_234,
        START + 5 * S,
    )
    assert rec["is_final"] and rec["version"] == START + 5 * S and rec["seq"] == 42


def test_signal_record_keeps_values_and_nulls_of_a_provisional_bar():
    rec = _roundtrip(signal_record(_emission(False), START + 2 * S), "torghut.ta.Signal")
    assert not rec["is_final"] and rec["close"] == 101.5
    assert (rec["ema12"], rec["rsi14"], rec["spread"], rec["imbalance"]) == (
        101.3,
        55.5,
        0.02,
        -0.25,
    )
    assert rec["macd"] is None and rec["atr14"] is None and rec["vwap_5m"] is None
