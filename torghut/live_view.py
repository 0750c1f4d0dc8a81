"""The terminal view of `torghut run`, and the run's latency/throughput plot.

Rows come from the signal stream itself (`ta.signals.v1`, read_uncommitted: provisional and
final records as the job emits them), so the table moves every second with the newest
signal of each symbol and its age; ClickHouse says which bars are final there (loaded
through the Kafka engine from committed records). A symbol whose indicators are not all
defined yet is labelled as warming up (MACD's signal line is the last: 34 bars).
"""

from __future__ import annotations

import collections
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: final bars until every indicator has a value (TA-Lib's MACD signal: 26 + 9 - 1)
WARMUP_BARS = 34
#: the live view's latency window: recent behaviour, not the start-up (JIT warm-up, backlog)
LATENCY_WINDOW_S = 30.0
_SHOWN = ("close", "ema12", "rsi14", "macd", "vwap_session", "spread")


@dataclass
class _Second:
    signals: int = 0
    finals: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    forwarded: int | None = None  # the forwarder's acked market-data total at this second


class LiveView:
    """What the view shows; fed by the signal consumer thread, read by the render loop."""

    def __init__(self, started_ns: int | None = None) -> None:
        self.started_ns = started_ns or time.time_ns()
        self._lock = threading.Lock()
        self.latest: dict[str, dict[str, Any]] = {}  # symbol -> newest signal record
        self.finals_seen: collections.Counter[str] = collections.Counter()
        self.signals_seen = 0
        # (receive ns, latency ms) of recent provisional signals
        self.latencies: collections.deque[tuple[int, float]] = collections.deque(maxlen=50_000)
        self.seconds: dict[int, _Second] = {}  # wall second since start -> what happened
        # the job starts after the forwarder and reads the topics from their start: what was
        # forwarded before its first signal is a start-up backlog, not event -> signal latency
        self.first_signal_ns: int | None = None
        self.backlog = 0
        # symbol -> newest final bar start read from the stream (the job emitted it)
        self.final_in_stream: dict[str, int] = {}
        self.last_final_wall_ns = 0
        # the job's status (ta.status.v1): its event-time watermark (ns) as of its newest
        # closed bar, each symbol's newest trade (ns), and when the status was emitted
        self.job_watermark_ns: int | None = None
        self.job_last_trade_ns: dict[str, int] = {}
        self.job_status_emit_ns = 0
        # the canary's newest scrape (torghut canary): lag per symbol, input idle, verdicts
        self.canary: dict[str, Any] | None = None

    def _second(self, now_ns: int) -> _Second:
        sec = max(0, (now_ns - self.started_ns) // 1_000_000_000)
        s = self.seconds.get(sec)
        if s is None:
            s = self.seconds[sec] = _Second()
        return s

    def on_signal(self, rec: dict[str, Any], now_ns: int | None = None) -> None:
        now = now_ns or time.time_ns()
        with self._lock:
            self.signals_seen += 1
            sym = rec["symbol"]
            prev = self.latest.get(sym)
            start = _ns(rec["window"]["start"])
            if prev is None or (start, rec["is_final"]) >= (prev["_start_ns"], prev["is_final"]):
                self.latest[sym] = {**rec, "_received_ns": now, "_start_ns": start}
            s = self._second(now)
            s.signals += 1
            if rec["is_final"]:
                s.finals += 1
                self.finals_seen[sym] += 1
                self.last_final_wall_ns = now
                if start > self.final_in_stream.get(sym, -1):
                    self.final_in_stream[sym] = start
                return
            if self.first_signal_ns is None:
                self.first_signal_ns = now
            if rec["ingest_ts"] < self.first_signal_ns:
                self.backlog += 1
                return
            # provisional: forwarder ingest -> readable by a consumer (event -> signal)
            ms = (now - rec["ingest_ts"]) / 1e6
            self.latencies.append((now, ms))
            s.latencies_ms.append(ms)

    def on_status(self, rec: dict[str, Any]) -> None:
        """A status record of the job (ta.status.v1)."""
        with self._lock:
            if rec["emit_ts"] < self.job_status_emit_ns:
                return
            self.job_status_emit_ns = rec["emit_ts"]
            self.job_watermark_ns = rec.get("watermark_ts")
            for sym in rec.get("symbols") or ():
                t = sym.get("last_event_ts") or 0
                if t > self.job_last_trade_ns.get(sym["symbol"], 0):
                    self.job_last_trade_ns[sym["symbol"]] = t

    def every_bar_closed(self, since_ns: int, bar_ns: int = 1_000_000_000) -> bool:
        """The job said (in a status emitted after `since_ns`) that its watermark has passed
        the bar of every symbol's newest trade: every final bar has been emitted."""
        with self._lock:
            if self.job_status_emit_ns < since_ns or self.job_watermark_ns is None:
                return False
            if not self.job_last_trade_ns:
                return False
            last_end = max(t // bar_ns * bar_ns + bar_ns for t in self.job_last_trade_ns.values())
            return self.job_watermark_ns >= last_end - 1_000_000

    def on_forwarded(self, total: int, now_ns: int | None = None) -> None:
        with self._lock:
            self._second(now_ns or time.time_ns()).forwarded = total

    def on_canary(self, metrics_text: str) -> None:
        """One scrape of the canary's /metrics (Prometheus text)."""
        from prometheus_client.parser import text_string_to_metric_families

        got: dict[str, Any] = {"lag": {}, "final_lag": {}}
        for family in text_string_to_metric_families(metrics_text):
            for sample in family.samples:
                if sample.name == "torghut_canary_lag_seconds":
                    got["lag"][sample.labels["symbol"]] = sample.value
                elif sample.name == "torghut_canary_final_lag_seconds":
                    got["final_lag"][sample.labels["symbol"]] = sample.value
                elif sample.name in (
                    "torghut_canary_input_idle_seconds",
                    "torghut_canary_input_stalled",
                    "torghut_canary_lagging",
                ):
                    got[sample.name.removeprefix("torghut_canary_")] = sample.value
        with self._lock:
            self.canary = got

    def canary_line(self) -> str:
        """The canary's view in one line: each symbol's lag (derived / final), input idle."""
        with self._lock:
            c = self.canary
        if c is None:
            return "canary (output vs raw input): no scrape yet"
        verdict = (
            "INPUT STALLED"
            if c.get("input_stalled")
            else "TA LAGGING"
            if c.get("lagging")
            else "ok"
        )
        lags = ", ".join(
            f"{sym} {lag:.1f}/{c['final_lag'].get(sym, math.nan):.1f}"
            for sym, lag in sorted(c["lag"].items())
        )
        return (
            f"canary: {verdict}; lag s (output/final) {lags or '-'}; "
            f"input idle {c.get('input_idle_seconds', math.nan):.1f} s"
        )

    def latency_summary(self, now_ns: int) -> tuple[float, float, int]:
        """p50, p99 (ms) and count of the provisional signals of the last LATENCY_WINDOW_S."""
        since = now_ns - int(LATENCY_WINDOW_S * 1e9)
        with self._lock:
            lat = sorted(ms for t, ms in self.latencies if t >= since)
        if not lat:
            return math.nan, math.nan, 0
        return lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))], len(lat)

    def render(
        self,
        title: str,
        final_through: dict[str, int],
        final_counts: dict[str, int],
        footer: list[str],
        now_ns: int | None = None,
        waiting_hint: str = "",
    ) -> str:
        """The screen. `final_through`: symbol -> newest final window_start (epoch ns) in
        ClickHouse; `final_counts`: symbol -> final bars there."""
        now = now_ns or time.time_ns()
        with self._lock:
            latest = dict(self.latest)
        lines = [
            f"{title} — {time.strftime('%H:%M:%S')}   (Ctrl-C stops everything)",
            "",
            f"{'symbol':<9}{'bar (UTC)':<14}{'age ms':>8}"
            + "".join(
                f"{c:>11}" for c in ("close", "ema12", "rsi14", "macd", "vwap_sess", "spread")
            )
            + "  state",
        ]
        for sym in sorted(latest):
            rec = latest[sym]
            start_ns = rec["_start_ns"]
            age_ms = (now - rec["_received_ns"]) / 1e6
            through = final_through.get(sym)
            if through is not None and start_ns <= through:
                state = "final in ClickHouse"
            else:
                state = "final, loading" if rec["is_final"] else "provisional"
            if rec.get("macd_signal") is None:
                n = final_counts.get(sym, 0)
                state += f"; warm-up {min(n, WARMUP_BARS)}/{WARMUP_BARS} bars"
            if rec.get("gap"):
                state += "; gap"
            bar = time.strftime("%H:%M:%S", time.gmtime(start_ns / 1e9))
            lines.append(
                f"{sym:<9}{bar:<14}{age_ms:>8.0f}"
                + "".join(_fmt(rec.get(c)) for c in _SHOWN)
                + f"  {state}"
            )
        if not latest:
            lines.append(
                "(waiting for the first signal)" + (f" {waiting_hint}" if waiting_hint else "")
            )
        p50, p99, n = self.latency_summary(now)
        lines += [
            "",
            *footer,
            f"event->signal (forwarder ingest -> provisional signal readable, read_uncommitted): "
            f"p50 {p50:.1f} ms  p99 {p99:.1f} ms  over {n} signals in the last "
            f"{LATENCY_WINDOW_S:.0f} s"
            + (f" ({self.backlog} of the start-up backlog not counted)" if self.backlog else ""),
        ]
        return "\n".join(lines)

    def save_png(self, path: Path, title: str) -> Path | None:
        """Per-second latency (p50/p99 of provisional signals) and throughput (signals/s,
        forwarded messages/s) of the run; None when nothing happened."""
        with self._lock:
            secs = sorted(self.seconds.items())
        if not secs:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        t = [s for s, _ in secs]
        p50 = [_pct(v.latencies_ms, 0.5) for _, v in secs]
        p99 = [_pct(v.latencies_ms, 0.99) for _, v in secs]
        sig = [v.signals for _, v in secs]
        fwd_t, fwd_rate = [], []
        prev: tuple[int, int] | None = None
        for s, v in secs:
            if v.forwarded is None:
                continue
            if prev is not None and s > prev[0]:
                fwd_t.append(s)
                fwd_rate.append((v.forwarded - prev[1]) / (s - prev[0]))
            prev = (s, v.forwarded)
        fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
        ax1.plot(t, p50, label="p50")
        ax1.plot(t, p99, label="p99")
        ax1.set_ylabel("event -> provisional signal (ms)")
        ax1.set_yscale("log")
        ax1.legend()
        ax1.grid(True, alpha=0.3)
        ax2.plot(t, sig, label="signals/s (provisional + final)")
        if fwd_t:
            ax2.plot(fwd_t, fwd_rate, label="forwarded messages/s")
        ax2.set_xlabel("seconds since start")
        ax2.set_ylabel("per second")
        ax2.legend()
        ax2.grid(True, alpha=0.3)
        fig.suptitle(title)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path


def _pct(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * q))]


def _fmt(v: Any) -> str:
    return f"{v:11.4f}" if isinstance(v, float) else f"{'-':>11}"


def _ns(v: Any) -> int:
    """A record's timestamp (fastavro: aware datetime for timestamp-micros, or int) in ns."""
    if isinstance(v, int):
        return v * 1000 if v < 10**17 else v
    import datetime

    return (
        (v - datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC))
        // datetime.timedelta(microseconds=1)
        * 1000
    )
