"""`torghut recording info` and `export`: the summary, and JSONL that the simulator's replay
and the test oracles read (read_jsonl) holding exactly the recorded market data."""

from __future__ import annotations

import msgpack
import orjson

from shared.recording import RecordingWriter, RecordKind
from torghut.cli import main
from torghut.sim import SyntheticConfig, SyntheticMarket, read_jsonl
from torghut.sim.protocol import encode_json, encode_msgpack

T0 = 1_700_000_000_000_000_000


def recording(directory) -> list[dict]:
    market = SyntheticMarket(SyntheticConfig(symbols=("AAPL", "SPY"), seed=4), T0, 4)
    msgs = market.advance(T0 + 3 * 10**9)
    w = RecordingWriter(directory, {"url": "ws://x/v2/iex", "wire_format": "msgpack"})
    w.write(T0, RecordKind.SESSION, orjson.dumps({"event": "subscribed", "attempt": 0}))
    half = len(msgs) // 2
    w.write(T0 + 1, RecordKind.BINARY, encode_msgpack(msgs[:half]))
    w.write(T0 + 2, RecordKind.BINARY, msgpack.packb([{"T": "error", "code": 407, "msg": "x"}]))
    w.write(T0 + 3, RecordKind.BINARY, b"\xc1")
    w.write(T0 + 4, RecordKind.TEXT, encode_json(msgs[half:]))
    w.close()
    return msgs


def test_export_writes_the_recorded_market_data_as_jsonl_read_jsonl_reads(tmp_path, capsys):
    msgs = recording(tmp_path / "rec")
    out = tmp_path / "out.jsonl"
    assert main(["recording", "export", str(tmp_path / "rec"), "--jsonl", str(out)]) == 0
    assert read_jsonl(out) == msgs
    err = capsys.readouterr().err
    assert f"wrote {len(msgs)} messages of 4 frames" in err
    assert "1 undecodable frames" in err and "1 control or non-market messages" in err


def test_info_prints_the_summary_and_a_bad_path_is_one_line_and_exit_1(tmp_path, capsys):
    msgs = recording(tmp_path / "rec")
    assert main(["recording", "info", str(tmp_path / "rec")]) == 0
    text = capsys.readouterr().out
    assert "frames    4 (binary 3, text 1, undecodable 1)" in text
    assert f"messages  {len(msgs) + 1}:" in text and "symbols   2: AAPL, SPY" in text
    assert "sessions  subscribed 1" in text
    assert main(["recording", "info", str(tmp_path / "rec"), "--json"]) == 0
    summary = orjson.loads(capsys.readouterr().out)
    assert summary["frames"] == 4 and summary["symbols"] == ["AAPL", "SPY"]
    assert main(["recording", "info", str(tmp_path / "nothing")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist; expected a directory" in err
