"""`torghut sim` flags build the documented SimConfig and a bounded run exits by itself."""

import argparse

import pytest

from torghut.sim import SimConfig, read_jsonl
from torghut.sim.cli import add_arguments, build_config, run

# a real simulator (and clients) on loopback sockets
pytestmark = pytest.mark.integration


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="torghut sim")
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_defaults_are_the_documented_ones():
    cfg = build_config(parse())
    assert cfg.synthetic.symbols == ("AAPL", "MSFT", "NVDA", "TSLA", "SPY")
    assert cfg.synthetic.trades_per_sec == 50
    assert cfg.port == 8765 and cfg.feed == "iex" and cfg.auth_timeout_s == 10
    assert cfg.faults == SimConfig().faults


def test_flags_map_to_config():
    cfg = build_config(
        parse(
            "--symbols",
            "aapl, spy",
            "--fractional-sizes",
            "--drop-every",
            "30",
            "--resend-last",
            "50",
            "--duplicate-rate",
            "0.01",
            "--key",
            "k:s",
            "--symbol-limit",
            "30",
            "--feed",
            "sip",
            "--late-delay",
            "1,3",
            "--replay",
            "x.jsonl",
            "--pace",
            "fast",
        )
    )
    assert cfg.synthetic.symbols == ("AAPL", "SPY") and cfg.synthetic.fractional_sizes
    assert cfg.synthetic.feed == "sip" and cfg.synthetic.late_delay_s == (1.0, 3.0)
    assert (cfg.faults.drop_every_s, cfg.faults.resend_last) == (30, 50)
    assert cfg.keys[0].key == "k" and cfg.symbol_limit == 30
    assert cfg.source == "replay" and cfg.replay is not None and cfg.replay.pace == "fast"


def test_bounded_run_records_and_exits(tmp_path, capsys):
    path = tmp_path / "run.jsonl"
    args = parse(
        "--port",
        "0",
        "--start-immediately",
        "--max-trades",
        "200",
        "--trades-per-sec",
        "500",
        "--record",
        str(path),
        "--exit-when-done",
        "--progress-every",
        "0",
        "--seed",
        "1",
    )
    assert run(args) == 0
    assert sum(m["T"] == "t" for m in read_jsonl(path)) == 200
    assert "serving ws://127.0.0.1:" in capsys.readouterr().err


def test_bad_settings_exit_2_with_a_message(tmp_path, capsys):
    assert run(parse("--late-rate", "2")) == 2
    assert "late_rate" in capsys.readouterr().err
    assert run(parse("--replay", str(tmp_path / "missing.jsonl"), "--port", "0")) == 1
    assert "does not exist" in capsys.readouterr().err
