"""`torghut run`: the whole pipeline on this machine, with a live terminal view.

stack (Kafka, MinIO, registry; fresh per run) -> ClickHouse (the embedded engine, owned by
this process, on a data dir kept between runs) -> the source (simulator, Alpaca, or a
recording replayed by the simulator) -> forwarder -> TA job -> ClickHouse via Kafka engine
tables. While it runs, `torghut sql` queries the tables through this process's loopback
query server. Ctrl-C (or --duration) stops everything in reverse order and leaves no
process behind; a replay ends by itself once its last bars are final in ClickHouse.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from torghut.live_view import LiveView
from torghut.sources import (
    TEST_FEED_SYMBOL,
    KeyProblem,
    Source,
    SourceError,
    alpaca_keys_from_env,
    check_alpaca_keys,
    stream_url,
)
from torghut.stack import apps, paths, procs, supervisor
from torghut.stack.state import StackState

DEFAULT_SYMBOLS = "AAPL,MSFT,NVDA,TSLA,SPY"
RECORD_AUTO = "auto"
EXIT_KEYS = 2  # Alpaca refused the key, or none is set (the forwarder's exit code too)

EXAMPLES = """\
examples:
  torghut run                                        # the simulator, 5 symbols
  APCA_API_KEY_ID=... APCA_API_SECRET_KEY=... \\
    torghut run --source alpaca --feed iex --symbols AAPL,MSFT --record
  torghut run --source alpaca --feed test            # Alpaca's test stream (FAKEPACA), any hour
  torghut run --source replay .data/recordings/<run> --speed max
  torghut run --source alpaca --symbols AAPL --seed .data/backfill/<name>/seed.json

while it runs, and after:  torghut sql "SELECT * FROM torghut.ta_signals_latest"
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EXAMPLES
    parser.add_argument(
        "--source",
        nargs="+",
        default=["sim"],
        metavar="SOURCE",
        help="sim (default: the Alpaca-compatible simulator), alpaca (your account's "
        "stream; keys from APCA_API_KEY_ID / APCA_API_SECRET_KEY), or replay PATH (a "
        "recording made with --record: a directory, one of its files or a glob)",
    )
    parser.add_argument(
        "--symbols",
        help=f"comma-separated symbols (default: sim/alpaca {DEFAULT_SYMBOLS}; the test "
        f"feed {TEST_FEED_SYMBOL}; replay: every symbol in the recording)",
    )
    alpaca = parser.add_argument_group("--source alpaca")
    alpaca.add_argument(
        "--feed",
        default="iex",
        choices=("iex", "sip", "delayed_sip", "test"),
        help="iex (free plan), sip (paid), delayed_sip (15 min late) or test "
        "(FAKEPACA around the clock) (default: %(default)s)",
    )
    alpaca.add_argument(
        "--alpaca-url",
        help="stream URL instead of wss://stream.data.alpaca.markets/v2/FEED (a proxy, "
        "or the simulator: ws://127.0.0.1:PORT/v2/iex)",
    )
    replay = parser.add_argument_group("--source replay")
    replay.add_argument(
        "--speed",
        default="1",
        help="the recording's original pace times this factor, or 'max' for as fast as the "
        "forwarder reads (default: %(default)s)",
    )
    replay.add_argument(
        "--keep-running",
        action="store_true",
        help="stay up after the replay's last bars are final (default: stop then)",
    )
    sim = parser.add_argument_group("--source sim")
    sim.add_argument(
        "--trades-per-sec", type=float, default=20.0, help="per symbol (default: %(default)s)"
    )
    sim.add_argument(
        "--quotes-per-sec", type=float, default=20.0, help="per symbol (default: %(default)s)"
    )
    out = parser.add_argument_group("data")
    out.add_argument(
        "--record",
        nargs="?",
        const=RECORD_AUTO,
        metavar="DIR",
        help="the forwarder records every frame the stream sent, as received, into DIR "
        f"(default with no DIR: {paths.RECORDINGS_DIR}/run-<time>); replay it with "
        "--source replay DIR",
    )
    out.add_argument(
        "--data-dir",
        type=Path,
        default=paths.CLICKHOUSE_DIR,
        help="the embedded ClickHouse's data, kept between runs (default: %(default)s)",
    )
    out.add_argument(
        "--seed",
        type=Path,
        metavar="FILE",
        help="indicator state to continue from, per symbol: the seed file `torghut backfill` "
        "writes (its symbols' first live bars continue the backfilled history)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=0.0,
        help="stop after this many seconds (default: run until Ctrl-C)",
    )
    parser.add_argument(
        "--checkpoint-interval-ms",
        type=int,
        help="the TA job's checkpoint interval: final records are readable (and in "
        "ClickHouse) at each checkpoint (default: 10000; a replay 2000)",
    )
    parser.add_argument(
        "--no-view", action="store_true", help="print one status line per interval instead"
    )


def _speed(text: str) -> tuple[str, float]:
    """('fast', 1.0) for 'max', else ('original', factor)."""
    if text.strip().lower() in ("max", "fast"):
        return "fast", 1.0
    try:
        factor = float(text)
    except ValueError:
        factor = 0.0
    if not factor > 0:
        raise SourceError(f"--speed {text!r}: a factor > 0 (1 = original pace) or 'max'")
    return "original", factor


class Pipeline:
    """Starts and stops the pipeline's processes; owns the embedded ClickHouse."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.source = Source.parse(list(args.source))
        self.procs: list[tuple[str, Any, Path]] = []  # (name, Popen, log)
        self.state: StackState | None = None
        self.run_dir = Path(".")
        self.ch: Any = None
        self.query_server: Any = None
        self.view = LiveView()
        self.record_dir: Path | None = None
        self.forwarder_metrics_url = ""
        self.canary_metrics_url = ""
        self.replay_exited_at: float | None = None
        self.replay_exited_wall_ns = 0
        self._stop = threading.Event()
        self._keys_env: dict[str, str] = {}
        self.url = ""
        self.symbols = ""
        self.checkpoint_ms = args.checkpoint_interval_ms or (
            2_000 if self.source.kind == "replay" else 10_000
        )
        self.pace = _speed(args.speed) if self.source.kind == "replay" else ("original", 1.0)

    # --- before anything starts: what could only fail later, fails now -----------------

    def check(self) -> None:
        a, src = self.args, self.source
        if a.seed is not None and not a.seed.is_file():
            raise SourceError(f"--seed {a.seed}: no such file (`torghut backfill` prints it)")
        if src.kind == "replay":
            assert src.path is not None
            if not (src.path.exists() or any(src.path.parent.glob(src.path.name))):
                raise SourceError(
                    f"--source replay {src.path}: no such recording (record one with "
                    "`torghut run --record`)"
                )
            self.symbols = a.symbols or "*"
        elif src.kind == "alpaca":
            keys = alpaca_keys_from_env()
            self.url = stream_url(a.feed, a.alpaca_url)
            self.symbols = a.symbols or (TEST_FEED_SYMBOL if a.feed == "test" else DEFAULT_SYMBOLS)
            print(f"[run] checking the Alpaca key at {self.url}", file=sys.stderr)
            check_alpaca_keys(self.url, keys)
            # the forwarder's own names; handed over in its environment, never in argv
            self._keys_env = {
                "TORGHUT_FWD_ALPACA_KEY_ID": keys.key_id.get_secret_value(),
                "TORGHUT_FWD_ALPACA_SECRET_KEY": keys.secret.get_secret_value(),
            }
        else:
            self.symbols = a.symbols or DEFAULT_SYMBOLS
        _refuse_data_dir_in_use(a.data_dir)

    # --- start -------------------------------------------------------------------------

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str]) -> None:
        log = self.run_dir / "logs" / f"{name}.log"
        # the launcher: settings-checked environment; the child dies with this process
        proc = apps.launch(cmd, env, log)
        self.procs.append((name, proc, log))
        print(f"[run] {name} started (pid {proc.pid}, log {log})", file=sys.stderr)

    def start(self) -> None:
        from torghut.clickhouse.client import ChdbClient
        from torghut.clickhouse.schema import SchemaParams, apply

        # the stack is this command's: it dies with it, even when it is killed -9
        with procs.tied_to_this_process():
            self.state = supervisor.up()
        self.run_dir = Path(self.state.run_dir)
        st = self.state
        self.ch = ChdbClient(self.args.data_dir)
        n = apply(
            self.ch,
            SchemaParams(
                kafka_broker=st.kafka_bootstrap,
                registry_url=st.registry_url,
                ingest_db_engine="Memory",
            ),
        )
        print(
            f"[run] ClickHouse schema applied ({n} statements) on {self.args.data_dir}",
            file=sys.stderr,
        )
        self._start_query_server()
        fwd_values: dict[str, Any] = {"http_port": procs.free_port(), "linger_ms": 5}
        url = self._start_source(fwd_values)
        if self.args.record:
            self.record_dir = (
                paths.RECORDINGS_DIR / f"run-{time.strftime('%Y%m%dT%H%M%S')}"
                if self.args.record == RECORD_AUTO
                else Path(self.args.record)
            ).resolve()
            fwd_values["record_dir"] = str(self.record_dir)
            print(f"[run] recording the stream into {self.record_dir}", file=sys.stderr)
        fwd_env = apps.forwarder_env(st, url, symbols=self.symbols, **fwd_values)
        fwd_env.update(self._keys_env)
        self.forwarder_metrics_url = f"http://127.0.0.1:{fwd_values['http_port']}/metrics"
        self._spawn("forwarder", list(apps.FORWARDER), fwd_env)
        ta_values: dict[str, Any] = {
            "transactional_id_prefix": f"torghut-ta-local-{os.getpid()}",
            "checkpoint_interval_ms": self.checkpoint_ms,
            # the stack is new with this run: everything in its topics is this run's
            "starting_offsets": "earliest",
        }
        if self.source.kind == "replay":
            ta_values["status_interval_ms"] = 1000  # tells when the replay's last bar closed
        if self.args.seed is not None:
            ta_values["seed_file"] = str(self.args.seed.resolve())
        ta_env = {
            **apps.ta_job_env(st, **ta_values),
            "FLINK_LOG_DIR": str(self.run_dir / "logs" / "flink"),
        }
        self._spawn("ta", list(apps.TA_JOB), ta_env)
        # the minute check (docs/design.md "The minute check"): the stack is this run's, so
        # it reads from the beginning; its rows land in torghut.ta_bar_checks
        check_env = apps.bar_check_env(
            st, from_beginning=True, http_port=procs.free_port(), consumer_group="torghut-run-check"
        )
        self._spawn("check-bars", list(apps.CHECK_BARS), check_env)
        self._start_canary(st)
        threading.Thread(target=self._watch_signals, daemon=True).start()
        threading.Thread(target=self._watch_forwarder, daemon=True).start()

    def _start_canary(self, st: StackState) -> None:
        """The canary (docs/design.md "The canary") on this run's symbols; its lag is a line
        of the view. A replay of every symbol (`*`) has no list to label: no canary."""
        if self.symbols == "*":
            print(
                "[run] canary not started: a replay of every symbol (--symbols names them)",
                file=sys.stderr,
            )
            return
        port = procs.free_port()
        env = apps.canary_env(
            st,
            symbols=self.symbols,
            http_port=port,
            http_host="127.0.0.1",
            consumer_group=f"torghut-run-canary-{os.getpid()}",
        )
        self.canary_metrics_url = f"http://127.0.0.1:{port}/metrics"
        self._spawn("canary", list(apps.CANARY), env)
        threading.Thread(target=self._watch_canary, daemon=True).start()

    def _watch_canary(self) -> None:
        """The canary's /metrics, once a second, into the view."""
        import requests

        while not self._stop.wait(1.0):
            try:
                text = requests.get(self.canary_metrics_url, timeout=1.0).text
            except requests.RequestException:
                continue
            self.view.on_canary(text)

    def _start_query_server(self) -> None:
        from torghut.clickhouse.local import QueryServer

        self.query_server = QueryServer(self.ch, self.args.data_dir)
        url = self.query_server.start()
        print(f"[run] ClickHouse queries: torghut sql (served at {url})", file=sys.stderr)

    def _start_source(self, fwd_values: dict[str, Any]) -> str:
        """Start the simulator when the source needs one; the forwarder's stream URL."""
        a, src = self.args, self.source
        if src.kind == "alpaca":
            return self.url
        port = procs.free_port()
        cmd = [*apps.SIM, "--port", str(port), "--key", "local:local-secret"]
        if src.kind == "sim":
            cmd += [
                "--symbols",
                self.symbols,
                "--trades-per-sec",
                str(a.trades_per_sec),
                "--quotes-per-sec",
                str(a.quotes_per_sec),
            ]
        else:
            pace, factor = self.pace
            cmd += ["--replay", str(src.path), "--pace", pace, "--speed", str(factor)]
            cmd += ["--exit-when-done"]
            wire = _recording_wire_format(src.path)
            if wire is not None:
                fwd_values["wire_format"] = wire  # the recorded frames go out byte for byte
        self._spawn("sim" if src.kind == "sim" else "replay", cmd, {})
        return f"ws://127.0.0.1:{port}/v2/iex"

    # --- watchers ----------------------------------------------------------------------

    def _watch_signals(self) -> None:
        """Every signal record as a consumer sees it (read_uncommitted: provisional too)."""
        from confluent_kafka import Consumer

        from shared.registry import SchemaRegistryClient
        from shared.serde import AvroDeserializer

        assert self.state is not None
        deser = AvroDeserializer(SchemaRegistryClient(self.state.registry_url))
        c = Consumer(
            {
                **self.state.kafka_client_config(),
                "group.id": f"torghut-run-{os.getpid()}",
                "auto.offset.reset": "earliest",
                "isolation.level": "read_uncommitted",
                "enable.auto.commit": False,
            }
        )
        c.subscribe(["ta.signals.v1", "ta.status.v1"])
        try:
            while not self._stop.is_set():
                msg = c.poll(0.2)
                if msg is None or msg.error():
                    continue
                rec = deser.decode(msg.value(), msg.topic(), msg.partition(), msg.offset())
                if msg.topic() == "ta.status.v1":
                    self.view.on_status(rec)
                else:
                    self.view.on_signal(rec)
        finally:
            c.close()

    def _watch_forwarder(self) -> None:
        """The forwarder's acked market-data messages, once a second (throughput)."""
        import requests
        from prometheus_client.parser import text_string_to_metric_families

        while not self._stop.wait(1.0):
            try:
                text = requests.get(self.forwarder_metrics_url, timeout=1.0).text
            except requests.RequestException:
                continue
            total = 0
            for fam in text_string_to_metric_families(text):
                if fam.name == "torghut_forwarder_messages":
                    total += int(
                        sum(
                            s.value
                            for s in fam.samples
                            if s.name.endswith("_total") and s.labels.get("channel") != "status"
                        )
                    )
            self.view.on_forwarded(total)

    # --- the loop ----------------------------------------------------------------------

    def check_alive(self) -> None:
        for name, proc, log in self.procs:
            code = proc.poll()
            if code is None:
                continue
            if name == "replay" and code == 0:
                if self.replay_exited_at is None:
                    self.replay_exited_at = time.monotonic()
                    self.replay_exited_wall_ns = time.time_ns()
                    print("[run] the recording has been replayed", file=sys.stderr)
                continue
            if name == "forwarder" and code == EXIT_KEYS:
                raise KeyProblem(_last_error_line(log) or "Alpaca refused the key", EXIT_KEYS)
            raise RuntimeError(f"{name} exited with code {code}; see {log}")

    def clickhouse_finals(self) -> tuple[dict[str, int], dict[str, int]]:
        """symbol -> newest final window_start (ns) and -> final bars in ClickHouse, for the
        symbols this run has seen."""
        assert self.ch is not None
        symbols = sorted(self.view.latest)
        if not symbols:
            return {}, {}
        listed = ", ".join("'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'" for s in symbols)
        rows = self.ch.rows(
            "SELECT symbol, toString(toUnixTimestamp64Nano(max(window_start))), "
            f"uniqExact(window_start) FROM torghut.ta_signals WHERE is_final AND symbol IN ({listed}) "
            "GROUP BY symbol"
        )
        return {r[0]: int(r[1]) for r in rows}, {r[0]: int(r[2]) for r in rows}

    def replay_finished(self) -> bool:
        """The simulator has sent the whole recording, the job says (in a status emitted
        after that) that its watermark passed the bar of every symbol's newest trade, so
        every final bar has been emitted, and ClickHouse holds each symbol's newest final
        bar the job emitted (bars commit and load in order)."""
        if self.replay_exited_at is None:
            return False
        if not self.view.every_bar_closed(self.replay_exited_wall_ns):
            return False
        through, _ = self.clickhouse_finals()
        return all(
            through.get(sym, -1) >= start for sym, start in self.view.final_in_stream.items()
        )

    def _checks_line(self) -> str:
        """The minute check's results in ClickHouse (every run's: the data dir is kept)."""
        rows = self.ch.rows(
            "SELECT result, count() FROM torghut.ta_bar_checks FINAL GROUP BY result ORDER BY result"
        )
        if not rows:
            return "minute check (vs the source's minute bars): no minute checked yet"
        done = ", ".join(f"{r[1]} {r[0]}" for r in rows)
        return (
            f"minute check (vs the source's minute bars; torghut.ta_bar_checks): {done} "
            "(late_trades: the source's bar holds trades the job counted as late and dropped)"
        )

    def title(self) -> str:
        src = self.source
        what = {
            "sim": "simulator",
            "alpaca": f"Alpaca {self.args.feed} feed",
            "replay": f"replay of {src.path} ({self._pace_text()})",
        }[src.kind]
        return f"torghut-ta local pipeline: {what}"

    def _pace_text(self) -> str:
        pace, factor = self.pace
        return "as fast as possible" if pace == "fast" else f"{factor:g}x original pace"

    def screen(self) -> str:
        through, counts = self.clickhouse_finals()
        total = self.ch.rows(
            "SELECT (SELECT count() FROM torghut.ta_microbars WHERE is_final), "
            "(SELECT count() FROM torghut.ta_signals WHERE is_final)"
        )[0]
        footer = [
            f"ClickHouse ({self.args.data_dir}): {total[0]} final bars, {total[1]} final "
            f"signals in all; {sum(counts.values())} final bars of the symbols shown",
            f"signals read from the stream: {self.view.signals_seen}",
            self.view.canary_line() if self.canary_metrics_url else "canary: not started",
            self._checks_line(),
        ]
        hint = ""
        if self.source.kind == "alpaca" and time.time_ns() - self.view.started_ns > 60 * 10**9:
            hint = (
                "- Alpaca's stream is quiet outside market hours (regular trading hours 09:30-16:00 "
                "New York); --feed test streams FAKEPACA at any hour"
            )
        return self.view.render(self.title(), through, counts, footer, waiting_hint=hint)

    def stop(self) -> None:
        self._stop.set()
        for name, proc, _log in reversed(self.procs):
            procs.stop(proc.pid)
            _say(f"[run] {name} stopped")
        if self.query_server is not None:
            with contextlib.suppress(Exception):
                self.query_server.stop()
        if self.ch is not None:
            self.ch.close()
        if self.state is not None:
            supervisor.down(self.state)
            _say("[run] stack stopped")
        if self.state is not None:
            with contextlib.suppress(Exception):
                png = self.view.save_png(self.run_dir / "run.png", self.title())
                if png is not None:
                    _say(f"[run] latency and throughput of this run: {png}")
        _say(f"[run] ClickHouse data kept in {self.args.data_dir}: torghut sql")
        if self.record_dir is not None:
            _say(
                f"[run] recording: {self.record_dir} (replay: torghut run --source replay "
                f"{self.record_dir})"
            )


def run(args: argparse.Namespace) -> int:
    try:
        pipeline = Pipeline(args)
        pipeline.check()
    except SourceError as exc:
        print(f"torghut run: {exc}", file=sys.stderr)
        return EXIT_KEYS if isinstance(exc, KeyProblem) else 2
    interrupted = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: interrupted.set())
    code = 0
    try:
        pipeline.start()
        deadline = time.monotonic() + args.duration if args.duration else None
        tty = sys.stdout.isatty() and not args.no_view
        while not interrupted.is_set() and (deadline is None or time.monotonic() < deadline):
            pipeline.check_alive()
            screen = pipeline.screen()
            if tty:
                sys.stdout.write("\x1b[H\x1b[2J" + screen + "\n")
            else:
                print(screen.splitlines()[-1], flush=True)
            sys.stdout.flush()
            if (
                pipeline.source.kind == "replay"
                and not args.keep_running
                and pipeline.replay_finished()
            ):
                count = sum(pipeline.clickhouse_finals()[1].values())
                print(f"[run] replay done: {count} final bars in ClickHouse", file=sys.stderr)
                break
            interrupted.wait(1.0 if tty or pipeline.replay_exited_at else 5.0)
        if not tty:
            print(pipeline.screen(), flush=True)
    except KeyboardInterrupt:
        if not (sys.stdout.isatty() and not args.no_view):
            # a log of the run ends with what the view showed at Ctrl-C
            with contextlib.suppress(Exception):
                print(pipeline.screen(), flush=True)
    except BrokenPipeError:
        # stdout's reader is gone (`| head`, `| tee` ended by Ctrl-C): stop like on Ctrl-C
        print("[run] stdout closed; stopping", file=sys.stderr)
    except KeyProblem as exc:
        print(f"torghut run: {exc}", file=sys.stderr)
        code = EXIT_KEYS
    except Exception as exc:
        print(f"torghut run: {exc}", file=sys.stderr)
        code = 1
    finally:
        # nothing more goes to a stdout that may be closed, and a second Ctrl-C or SIGTERM
        # cannot cut the clean-up short
        _quiet_stdout()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        pipeline.stop()
    return code


def _refuse_data_dir_in_use(data_dir: Path) -> None:
    """One process owns an embedded ClickHouse data dir: say who, before starting anything."""
    from torghut.clickhouse.local import data_dir_holder

    holder = data_dir_holder(data_dir)
    if holder is not None:
        who = f"pid {holder}" if holder else "another process"
        raise SourceError(
            f"{data_dir} is in use by {who} (another torghut run, torghut sql or backfill): "
            "stop it, or give this run its own --data-dir"
        )


def _recording_wire_format(path: Path | None) -> str | None:
    """msgpack or json: what the recorded stream spoke (None if it does not say)."""
    try:
        from shared.recording import recording_wire_format
    except ImportError:  # pragma: no cover
        return None
    return recording_wire_format(path) if path is not None else None


def _last_error_line(log: Path) -> str:
    """The forwarder's last ERROR line (e.g. Alpaca's 402 and what to do): the message of a
    JSON line (shared/logs.py), or a text line as it is."""
    with contextlib.suppress(OSError):
        for line in reversed(log.read_text(errors="replace").splitlines()):
            if line.startswith("{"):
                with contextlib.suppress(ValueError, AttributeError):
                    entry = json.loads(line)
                    text = str(entry.get("message", ""))
                    if entry.get("level") == "ERROR" or "Alpaca error" in text:
                        return text.split(": ", 1)[-1] if text.startswith("stopping:") else text
                continue
            if "ERROR" in line or "Alpaca error" in line:
                return line.split(": ", 1)[-1] if "stopping:" in line else line
    return ""


def _say(line: str) -> None:
    """A progress line on stderr; a closed stderr (`2>&1 | tee` ended) never stops a stop."""
    with contextlib.suppress(OSError):
        print(line, file=sys.stderr, flush=True)


def _quiet_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
