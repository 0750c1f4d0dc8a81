"""`torghut run`: the whole pipeline on this machine, with a live terminal view.

stack (Kafka, MinIO, registry) -> ClickHouse DDL (embedded engine, owned by this process)
-> simulator -> forwarder -> TA job -> ClickHouse via Kafka engine tables. Ctrl-C (or
--duration) stops everything in reverse order and leaves no process behind.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import signal
import sys
import threading
import time
from pathlib import Path

from torghut.stack import apps, procs, supervisor
from torghut.stack.state import StackState

DEFAULT_SYMBOLS = "AAPL,MSFT,NVDA,TSLA,SPY"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--symbols", default=DEFAULT_SYMBOLS, help="simulated symbols (default: %(default)s)"
    )
    parser.add_argument(
        "--trades-per-sec", type=float, default=20.0, help="per symbol (default: %(default)s)"
    )
    parser.add_argument(
        "--quotes-per-sec", type=float, default=20.0, help="per symbol (default: %(default)s)"
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=0.0,
        help="stop after this many seconds (default: run until Ctrl-C)",
    )
    parser.add_argument("--checkpoint-interval-ms", type=int, default=10_000)
    parser.add_argument(
        "--no-view", action="store_true", help="print one status line per interval instead"
    )


# the live view's latency window: recent behaviour, not the start-up (JIT warm-up, backlog)
LATENCY_WINDOW_S = 30.0


class Pipeline:
    """Starts and stops the pipeline's processes; owns the embedded ClickHouse."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.procs: list[tuple[str, int, Path]] = []
        self.state: StackState | None = None
        self.run_dir = Path(".")
        self.ch = None
        # (receive time ns, latency ms) of recent signals; the view shows the last LATENCY_WINDOW_S
        self.latencies: collections.deque[tuple[int, float]] = collections.deque(maxlen=50_000)
        self.signals_seen = 0
        self._stop = threading.Event()

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str]) -> None:
        log = self.run_dir / "logs" / f"{name}.log"
        # the launcher: settings-checked environment; the child dies with this process
        pid = apps.launch(cmd, env, log).pid
        self.procs.append((name, pid, log))
        print(f"[run] {name} started (pid {pid}, log {log})", file=sys.stderr)

    def start(self) -> None:
        from torghut.clickhouse.client import ChdbClient
        from torghut.clickhouse.schema import SchemaParams, apply

        # the stack is this command's: it dies with it, even when it is killed -9
        with procs.tied_to_this_process():
            self.state = supervisor.up()
        self.run_dir = Path(self.state.run_dir)
        st = self.state
        self.ch = ChdbClient(self.run_dir / "clickhouse")
        n = apply(
            self.ch,
            SchemaParams(
                kafka_broker=st.kafka_bootstrap,
                registry_url=st.registry_url,
                ingest_db_engine="Memory",
            ),
        )
        print(f"[run] ClickHouse schema applied ({n} statements)", file=sys.stderr)
        sim_port = procs.free_port()
        self._spawn(
            "sim",
            [
                *apps.SIM,
                "--port",
                str(sim_port),
                "--symbols",
                self.args.symbols,
                "--trades-per-sec",
                str(self.args.trades_per_sec),
                "--quotes-per-sec",
                str(self.args.quotes_per_sec),
                "--key",
                "local:local-secret",
            ],
            {},
        )
        fwd_env = apps.forwarder_env(
            st,
            f"ws://127.0.0.1:{sim_port}/v2/iex",
            symbols=self.args.symbols,
            http_port=procs.free_port(),
            linger_ms=5,
        )
        self._spawn("forwarder", list(apps.FORWARDER), fwd_env)
        ta_env = {
            **apps.ta_job_env(
                st,
                transactional_id_prefix=f"torghut-ta-local-{os.getpid()}",
                checkpoint_interval_ms=self.args.checkpoint_interval_ms,
                starting_offsets="latest",
            ),
            "FLINK_LOG_DIR": str(self.run_dir / "logs" / "flink"),
        }
        self._spawn("ta", list(apps.TA_JOB), ta_env)
        threading.Thread(target=self._watch_latency, daemon=True).start()

    def _watch_latency(self) -> None:
        """Event-to-signal latency as a consumer sees it (read_uncommitted: provisional too)."""
        from confluent_kafka import Consumer

        from shared.registry import SchemaRegistryClient
        from shared.serde import AvroDeserializer

        assert self.state is not None
        deser = AvroDeserializer(SchemaRegistryClient(self.state.registry_url))
        c = Consumer(
            {
                **self.state.kafka_client_config(),
                "group.id": f"torghut-run-{os.getpid()}",
                "auto.offset.reset": "latest",
                "isolation.level": "read_uncommitted",
                "enable.auto.commit": False,
            }
        )
        c.subscribe(["ta.signals.v1"])
        while not self._stop.is_set():
            msg = c.poll(0.2)
            if msg is None or msg.error():
                continue
            rec = deser.decode(msg.value(), msg.topic(), msg.partition(), msg.offset())
            self.signals_seen += 1
            if rec["is_final"]:
                # a final record waits for the watermark (out-of-orderness) by design: the
                # event -> signal line is about the provisional updates
                continue
            now = time.time_ns()
            self.latencies.append((now, (now - rec["ingest_ts"]) / 1e6))
        c.close()

    def check_alive(self) -> None:
        for name, pid, log in self.procs:
            if not procs.alive(pid):
                raise RuntimeError(f"{name} exited; see {log}")

    def latency_summary(self, now_ns: int) -> tuple[float, float, int]:
        """p50, p99 (ms) and count of the signals received in the last LATENCY_WINDOW_S."""
        since = now_ns - int(LATENCY_WINDOW_S * 1e9)
        lat = sorted(ms for t, ms in list(self.latencies) if t >= since)
        if not lat:
            return float("nan"), float("nan"), 0
        return lat[len(lat) // 2], lat[int(len(lat) * 0.99)], len(lat)

    def view(self) -> str:
        assert self.ch is not None
        rows = self.ch.rows(
            "SELECT symbol, toString(window_start), close, ema12, rsi14, macd, vwap_session, spread, is_final "
            "FROM torghut.ta_signals_latest ORDER BY symbol"
        )
        counts = self.ch.rows(
            "SELECT (SELECT count() FROM torghut.ta_microbars FINAL WHERE is_final), "
            "(SELECT count() FROM torghut.ta_signals FINAL WHERE is_final)"
        )[0]
        p50, p99, n = self.latency_summary(time.time_ns())
        fmt = lambda v: f"{v:10.4f}" if isinstance(v, float) else f"{'-':>10}"  # noqa: E731
        lines = [
            f"torghut-ta local pipeline — {time.strftime('%H:%M:%S')}   (Ctrl-C stops everything)",
            "",
            f"{'symbol':<7}{'bar (UTC)':<28}{'close':>10}{'ema12':>10}{'rsi14':>10}{'macd':>10}"
            f"{'vwap_sess':>10}{'spread':>10} final",
        ]
        for sym, start, close, ema, rsi, macd, vwap, spread, final in rows:
            lines.append(
                f"{sym:<7}{start:<28}{fmt(close)}{fmt(ema)}{fmt(rsi)}{fmt(macd)}{fmt(vwap)}"
                f"{fmt(spread)} {'yes' if final else 'no'}"
            )
        lines += [
            "",
            f"ClickHouse: {counts[0]} final bars, {counts[1]} final signals",
            f"event->signal (forwarder ingest -> provisional signal readable, read_uncommitted): "
            f"p50 {p50:.1f} ms  p99 {p99:.1f} ms  over {n} signals in the last "
            f"{LATENCY_WINDOW_S:.0f} s",
        ]
        return "\n".join(lines)

    def stop(self) -> None:
        self._stop.set()
        for name, pid, _log in reversed(self.procs):
            procs.stop(pid)
            _say(f"[run] {name} stopped")
        if self.ch is not None:
            self.ch.close()
        if self.state is not None:
            supervisor.down(self.state)
            _say("[run] stack stopped")


def run(args: argparse.Namespace) -> int:
    pipeline = Pipeline(args)
    interrupted = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: interrupted.set())
    code = 0
    try:
        pipeline.start()
        deadline = time.monotonic() + args.duration if args.duration else None
        tty = sys.stdout.isatty() and not args.no_view
        while not interrupted.is_set() and (deadline is None or time.monotonic() < deadline):
            pipeline.check_alive()
            screen = pipeline.view()
            if tty:
                sys.stdout.write("\x1b[H\x1b[2J" + screen + "\n")
            else:
                print(screen.splitlines()[-1], flush=True)
            sys.stdout.flush()
            interrupted.wait(1.0 if tty else 5.0)
        if not tty:
            print(pipeline.view(), flush=True)
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:
        # stdout's reader is gone (`| head`, `| tee` ended by Ctrl-C): stop like on Ctrl-C
        print("[run] stdout closed; stopping", file=sys.stderr)
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


def _say(line: str) -> None:
    """A progress line on stderr; a closed stderr (`2>&1 | tee` ended) never stops a stop."""
    with contextlib.suppress(OSError):
        print(line, file=sys.stderr, flush=True)


def _quiet_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
