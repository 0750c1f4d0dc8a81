"""The PNG of ``torghut bench pipeline``: latency histograms, the live latency over time and
the throughput run's records_in curve."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torghut.bench.common import LIVE_TARGET_P99_MS
from torghut.bench.results import LiveConfig, LivePhaseResult, PipelineResult, ThroughputPhaseResult
from torghut.bench.stats import pct

Series = tuple[str, list[float], str]  # label, values (ms), colour


def _hist(ax: Any, series: list[Series], title: str, lines: list[tuple[float, str]]) -> None:
    """Log-binned histograms of ``series`` with dashed marks at ``lines`` (ms, label)."""
    import numpy as np

    vals = [v for _, s, _ in series for v in s if v > 0]
    if not vals:
        ax.set_title(title + " (no data)")
        return
    bins = np.logspace(np.log10(max(0.1, min(vals))), np.log10(max(vals) * 1.05), 60)
    for label, s, color in series:
        pos = [v for v in s if v > 0]
        if pos:
            ax.hist(
                pos,
                bins=bins,
                alpha=0.55,
                color=color,
                label=f"{label}: p50 {pct(pos, 50):.1f}, p99 {pct(pos, 99):.1f} ms",
            )
    for x, label in lines:
        ax.axvline(x, ls="--", color="#c33", lw=1)
        y = ax.get_ylim()[1] * 0.9
        ax.text(x, y, f" {label}", color="#c33", fontsize=8, rotation=90, va="top")
    ax.set_xscale("log")
    ax.set_xlabel("ms (log)")
    ax.set_ylabel("records")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)


def _live_hist(ax: Any, live: LivePhaseResult | None, cfg: LiveConfig) -> None:
    series: list[Series] = [
        ("recv - ingest_ts", live.live_ms if live else [], "#2a7"),
        ("recv - event_ts", live.live_event_ms if live else [], "#27a"),
    ]
    title = (
        f"provisional signal readable (read_uncommitted)\n{cfg.rate:g} ev/s, "
        f"{live.symbols if live else '?'} symbols, provisional >= {cfg.provisional_interval_ms} ms"
    )
    _hist(ax, series, title, [(LIVE_TARGET_P99_MS, "target p99 50 ms")])


def _final_hist(ax: Any, live: LivePhaseResult | None, cfg: LiveConfig) -> None:
    title = (
        f"final 1 s bar readable (read_committed)\ncheckpoint {cfg.checkpoint_interval_ms} ms, "
        f"out-of-orderness {cfg.out_of_orderness_ms} ms"
    )
    marks = [
        (cfg.checkpoint_interval_ms + 200.0, "checkpoint+200"),
        (
            cfg.out_of_orderness_ms + cfg.checkpoint_interval_ms + 200.0,
            "ooo+checkpoint+200",
        ),
    ]
    _hist(ax, [("recv - window.end", live.final_ms if live else [], "#a72")], title, marks)


def _timeline(ax: Any, live: LivePhaseResult | None) -> None:
    if not live or not live.live_at_s:
        ax.set_title("provisional signals over time (no data)")
        return
    ax.scatter(live.live_at_s, live.live_ms, s=2, color="#2a7", alpha=0.5, label="recv - ingest_ts")
    ax.axhline(LIVE_TARGET_P99_MS, ls="--", color="#c33", lw=1, label="target p99 50 ms")
    ax.set_yscale("log")
    ax.set_xlabel("s since the measurement started (receive time)")
    ax.set_ylabel("ms (log)")
    ax.set_title("provisional signals over time: when the tail happens", fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(alpha=0.3)


def _throughput_panel(ax: Any, tp: ThroughputPhaseResult) -> None:
    xs, ys = zip(*tp.points, strict=True)
    ax.plot(xs, ys, "o-", color="#2a7", ms=3)
    ax.set_xlabel("s since first record processed")
    ax.set_ylabel("job records_in (ta.status.v1)")
    ax.set_title(
        f"throughput, 1 slot: {tp.trades_per_s:,.0f} trades/s "
        f"({tp.events_per_s:,.0f} events/s)\nend to end {tp.end_to_end_trades_per_s:,.0f} "
        f"trades/s; target 20k trades/s\nprojected on a full core: "
        f"~{tp.projected_trades_per_s_full_core:,.0f} trades/s "
        f"(busiest task thread {tp.busiest_task_thread_cores:.2f} cores)",
        fontsize=9,
    )
    ax.grid(alpha=0.3)


def save_figure(fig: Any, path: Path, title: str, fontsize: int = 10, dpi: int = 110) -> Path:
    """Title, lay out, write ``path`` (its directory made) and close: every benchmark's PNG."""
    import matplotlib.pyplot as plt

    fig.suptitle(title, fontsize=fontsize)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def plot(out_dir: Path, res: PipelineResult) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tp = res.throughput
    if res.ladder:
        return _ladder_plot(out_dir, res, plt)
    ncol = 3 if tp else 2
    fig = plt.figure(figsize=(17 if tp else 12, 8.4))
    grid = fig.add_gridspec(2, ncol)
    axes = [fig.add_subplot(grid[0, i]) for i in range(ncol)]
    timeline = fig.add_subplot(grid[1, :])
    _live_hist(axes[0], res.live, res.live_config)
    _final_hist(axes[1], res.live, res.live_config)
    _timeline(timeline, res.live)
    if tp:
        _throughput_panel(axes[2], tp)
    title = (
        f"torghut bench pipeline {res.timestamp} — {os.cpu_count()} CPUs, load {res.loadavg_start}"
    )
    return save_figure(fig, out_dir / f"pipeline-{res.timestamp}.png", title)


def _ladder_plot(out_dir: Path, res: PipelineResult, plt: Any) -> Path:
    """The ladder's p50/p99 per rung, and the throughput run's curve if there was one."""
    from torghut.bench.ladder import plot_ladder

    tp = res.throughput
    fig, axes = plt.subplots(1, 2 if tp else 1, figsize=(15 if tp else 9, 5.6), squeeze=False)
    plot_ladder(axes[0][0], res.ladder or [])
    if tp:
        _throughput_panel(axes[0][1], tp)
    title = (
        f"torghut bench pipeline --ladder {res.timestamp} — {os.cpu_count()} CPUs, "
        f"load {res.loadavg_start}"
    )
    return save_figure(fig, out_dir / f"pipeline-ladder-{res.timestamp}.png", title)
