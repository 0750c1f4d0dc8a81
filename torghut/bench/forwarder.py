"""``torghut bench forwarder``: throughput from the simulator to acked Kafka records.

The simulator runs ``--fast`` in a subprocess (its own core); it generates every message
and encodes the frames before the first data frame, so during the measurement it only
sends bytes. The forwarder runs in this process. Throughput = messages / (last broker ack
- first frame read). The peer is the official ``alpaca-py`` ``StockDataStream`` decoding
the same stream (msgpack) into its models with no Kafka at all. Both sides also report CPU
time per message (the whole process, and the client's own thread), which a busy machine
disturbs far less than msgs/s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

SYMBOLS = "AAPL,MSFT,NVDA,TSLA,SPY"
#: the peer has ended short when nothing arrived for this long (seen once: alpaca-py's
#: handlers missed the last frame); the run then reports what it got, not a deadline
PEER_IDLE_S = 10.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--messages",
        type=int,
        default=1_000_000,
        help="messages per run (default: %(default)s, ~3 s for the forwarder; shorter runs "
        "weigh the final ack wait and the first frames more and scatter more)",
    )
    parser.add_argument(
        "--stack-dir",
        default=None,
        help="use this running stack (default: $TORGHUT_STACK_DIR, "
        ".stack/current, else start a temporary one)",
    )
    parser.add_argument("--kafka-bootstrap", default=None, help="use this broker, not a stack")
    parser.add_argument("--registry-url", default=None, help="use this registry, not a stack")
    parser.add_argument("--wire-format", choices=("msgpack", "json"), default="msgpack")
    parser.add_argument("--linger-ms", type=int, default=20)
    parser.add_argument("--skip-peer", action="store_true", help="do not run alpaca-py")
    parser.add_argument("--out", default="bench-results", help="directory of the PNG")


def _start_sim(messages: int) -> tuple[subprocess.Popen[bytes], str]:
    from torghut.stack.procs import free_port, port_open

    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "torghut.cli",
            "sim",
            "--port",
            str(port),
            "--fast",
            "--max-messages",
            str(messages),
            "--symbols",
            SYMBOLS,
            "--seed",
            "7",
            "--exit-when-done",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while not port_open(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the simulator did not start")
        time.sleep(0.05)
    return proc, f"ws://127.0.0.1:{port}/v2/iex"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
    if proc.poll() is None:
        proc.kill()


def _thread_cpu(thread: threading.Thread) -> Any:
    """A zero-argument function: CPU seconds of ``thread`` so far (Linux thread clock)."""
    assert thread.ident is not None
    clock = time.pthread_getcpuclockid(thread.ident)
    return lambda: time.clock_gettime(clock)


def _result(n: int, wall: float, cpu: float, thread_cpu: float) -> dict[str, float]:
    return {
        "messages": n,
        "seconds": wall,
        "msgs_per_s": n / wall,
        "cpu_seconds": cpu,
        "msgs_per_cpu_s": n / max(1e-9, cpu),
        "cpu_us_per_msg": cpu / max(1, n) * 1e6,
        "thread_cpu_us_per_msg": thread_cpu / max(1, n) * 1e6,
    }


def bench_forwarder(
    messages: int, bootstrap: str, registry_url: str, wire_format: str, linger_ms: int
) -> dict[str, float]:
    """The clock starts when the forwarder reads the first market-data frame and stops when
    the broker has acked ``messages`` envelopes (acks=all)."""
    from forwarder.app import ForwarderThread
    from forwarder.settings import ForwarderSettings

    sim, url = _start_sim(messages)
    settings = ForwarderSettings(
        alpaca_key_id="bench",
        alpaca_secret_key="bench",
        alpaca_url=url,
        kafka_bootstrap=bootstrap,
        registry_url=registry_url,
        wire_format=wire_format,
        linger_ms=linger_ms,
        http_port=0,
        seq_scan_records=0,
    )
    try:
        fwd = ForwarderThread(settings).start()
        m = fwd.metrics
        thread_cpu = _thread_cpu(fwd._thread)
        t_first = cpu0 = tcpu0 = None
        deadline = time.monotonic() + max(60.0, messages / 5000)
        while time.monotonic() < deadline:
            stream = fwd.forwarder._stream
            if t_first is None and stream is not None and stream.first_data_at is not None:
                t_first, cpu0, tcpu0 = stream.first_data_at, time.process_time(), thread_cpu()
            if sum(m.messages[:-1]) >= messages:
                break
            time.sleep(0.001)
        t_last, cpu1, tcpu1 = time.monotonic(), time.process_time(), thread_cpu()
        acked = sum(m.messages[:-1])
        fwd.stop()
    finally:
        _stop(sim)
    if t_first is None or cpu0 is None or tcpu0 is None or acked < messages:
        raise RuntimeError(f"only {acked} of {messages} messages acked before the deadline")
    return _result(acked, t_last - t_first, cpu1 - cpu0, tcpu1 - tcpu0)


def bench_alpaca_py(messages: int) -> dict[str, float]:
    """alpaca-py's client as its users run it: msgpack frames decoded into its pydantic
    models (Trade, Quote, ...) and handed to async handlers. The clock starts at the first
    message handed to a handler and stops when ``messages`` were."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from alpaca.data.live import StockDataStream

    sim, url = _start_sim(messages)
    count = [0]
    first: list[float] = []  # wall, process CPU, thread CPU at the first message
    last = [0.0]  # wall at the latest message
    thread_cpu: list[Any] = []

    async def handler(_: Any) -> None:
        if not first:
            first.extend((time.monotonic(), time.process_time(), thread_cpu[0]()))
        count[0] += 1
        last[0] = time.monotonic()

    stream = StockDataStream("bench", "bench", url_override=url)
    stream.subscribe_trades(handler, "*")
    stream.subscribe_quotes(handler, "*")
    stream.subscribe_bars(handler, "*")
    stream.subscribe_updated_bars(handler, "*")
    stream.subscribe_daily_bars(handler, "*")
    stream.subscribe_trading_statuses(handler, "*")
    stream.register_trade_corrections(handler)
    stream.register_trade_cancels(handler)
    thread = threading.Thread(target=lambda: asyncio.run(stream._run_forever()), daemon=True)
    try:
        thread.start()
        thread_cpu.append(_thread_cpu(thread))
        deadline = time.monotonic() + max(60.0, messages / 2000)
        while count[0] < messages and time.monotonic() < deadline:
            if first and time.monotonic() - last[0] > PEER_IDLE_S:
                break  # the stream ended short (the client lost messages): report what came
            time.sleep(0.001)
        cpu1, tcpu1 = time.process_time(), thread_cpu[0]()
        t_last = last[0] if count[0] < messages else time.monotonic()
        loop = stream._loop
        if loop is not None and loop.is_running():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(stream.stop_ws(), loop).result(timeout=5)
    finally:
        _stop(sim)
        thread.join(10)
    if not first:
        raise RuntimeError("alpaca-py received nothing")
    if count[0] < messages:
        print(
            f"warning   : alpaca-py got {count[0]:,} of {messages:,} messages (nothing more "
            f"for {PEER_IDLE_S:.0f}s); its rate is over what it got, until its last message",
            file=sys.stderr,
        )
    return _result(count[0], t_last - first[0], cpu1 - first[1], tcpu1 - first[2])


def _plot(out_dir: Path, fwd: dict[str, float], peer: dict[str, float] | None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = ["torghut forwarder\n(-> acked Kafka)"]
    values = [fwd["msgs_per_s"]]
    if peer:
        labels.append("alpaca-py StockDataStream\n(parse only)")
        values.append(peer["msgs_per_s"])
    fig, ax = plt.subplots(figsize=(7, 4))
    bars = ax.bar(labels, values, color=["#2a7", "#888"][: len(values)])
    cpu = [fwd["cpu_us_per_msg"]] + ([peer["cpu_us_per_msg"]] if peer else [])
    ax.bar_label(
        bars,
        labels=[f"{v:,.0f}\n{c:.2f} CPU-µs/msg" for v, c in zip(values, cpu, strict=True)],
    )
    ax.axhline(50_000, ls="--", color="#c33", lw=1, label="target 50k msgs/s")
    ax.set_ylabel("messages / s")
    ax.set_title(f"forwarder throughput ({fwd['messages']:,.0f} msgs, {os.cpu_count()} CPUs)")
    ax.legend()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"forwarder-{time.strftime('%Y%m%d-%H%M%S')}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _endpoints(args: argparse.Namespace) -> tuple[str, str, Any]:
    """(bootstrap, registry url, stack to stop or None)."""
    if args.kafka_bootstrap and args.registry_url:
        return args.kafka_bootstrap, args.registry_url, None
    from torghut.stack import supervisor
    from torghut.stack.errors import NoStackError
    from torghut.stack.state import StackState

    try:
        state = StackState.load(args.stack_dir)
        return state.kafka_bootstrap, state.registry_url, None
    except NoStackError:
        state = supervisor.up(Path(tempfile.mkdtemp(prefix="torghut-bench-")))
        return state.kafka_bootstrap, state.registry_url, state


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("forwarder.rdkafka").setLevel(logging.ERROR)
    bootstrap, registry_url, own_stack = _endpoints(args)
    try:
        from forwarder.app import tune_gc

        # each side as it runs: the forwarder with `torghut forwarder`'s GC setting, the
        # peer with Python's defaults
        previous = tune_gc()
        try:
            fwd = bench_forwarder(
                args.messages, bootstrap, registry_url, args.wire_format, args.linger_ms
            )
        finally:
            gc.set_threshold(*previous)
            gc.unfreeze()
        peer = None if args.skip_peer else bench_alpaca_py(args.messages)
    finally:
        if own_stack is not None:
            from torghut.stack import supervisor

            supervisor.down(own_stack)
    print(
        f"forwarder : {fwd['msgs_per_s']:>10,.0f} msgs/s simulator -> acked Kafka "
        f"({fwd['messages']:,.0f} msgs in {fwd['seconds']:.2f}s; "
        f"{fwd['cpu_us_per_msg']:.2f} CPU-us/msg in this process, "
        f"{fwd['thread_cpu_us_per_msg']:.2f} in the forwarder thread)"
    )
    if peer:
        print(
            f"alpaca-py : {peer['msgs_per_s']:>10,.0f} msgs/s parsed into models "
            f"({peer['messages']:,.0f} msgs in {peer['seconds']:.2f}s; "
            f"{peer['cpu_us_per_msg']:.2f} CPU-us/msg in this process, "
            f"{peer['thread_cpu_us_per_msg']:.2f} in the client thread)"
        )
        print(
            f"ratio     : {fwd['msgs_per_s'] / peer['msgs_per_s']:.2f}x msgs/s, "
            f"{peer['cpu_us_per_msg'] / fwd['cpu_us_per_msg']:.2f}x CPU per message"
        )
    print(f"load      : {' '.join(f'{x:.2f}' for x in os.getloadavg())} (1/5/15 min)")
    path = _plot(Path(args.out), fwd, peer)
    print(f"plot      : {path}")
    return 0
