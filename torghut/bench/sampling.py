"""CPU of the benchmark's components, sampled from Linux ``/proc``: per process group, per
thread name, and the keyed task thread's scheduler statistics."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torghut.bench.common import NS_PER_S


def _stat_fields(stat: str) -> list[str]:
    """The fields of a ``/proc/.../stat`` line after ``(comm)``: state ppid pgrp ...
    utime (index 11) stime (12)."""
    return stat.rsplit(")", 1)[1].split()


def _cpu_ticks(fields: list[str]) -> int:
    return int(fields[11]) + int(fields[12])


def _group_procs(pgid: int) -> list[tuple[Path, list[str]]]:
    """(/proc/<pid>, stat fields) of every live process in a process group."""
    out: list[tuple[Path, list[str]]] = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = _stat_fields((d / "stat").read_text())
        except OSError:
            continue
        if int(fields[2]) == pgid:
            out.append((d, fields))
    return out


def group_cpu_s(pgid: int) -> float:
    """CPU seconds (user+system) of every live process in a process group (Linux /proc)."""
    return sum(_cpu_ticks(fields) for _, fields in _group_procs(pgid)) / os.sysconf("SC_CLK_TCK")


def group_tasks(pgid: int) -> list[Path]:
    """/proc/<pid>/task/<tid> of every thread of every process in a process group."""
    out: list[Path] = []
    for d, _ in _group_procs(pgid):
        try:
            out.extend((d / "task").iterdir())
        except OSError:
            continue
    return out


def thread_cpu_s(pgid: int) -> dict[str, float]:
    """CPU seconds per thread name (digits folded) over a process group: JVM task threads
    ("Source: raw-tra", "bars-signals ->"), Kafka clients, GC, JIT compiler, ..."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for t in group_tasks(pgid):
        try:
            raw = (t / "stat").read_text()
        except OSError:
            continue
        name = raw[raw.index("(") + 1 : raw.rindex(")")].rstrip("0123456789")
        out[name] = out.get(name, 0.0) + _cpu_ticks(_stat_fields(raw)) / tick
    return out


def slot_schedstat(pgid: int) -> tuple[int, int] | None:
    """(ns on a CPU, ns runnable but waiting for one) of the keyed task thread
    ("bars-signals -> ..."), from /proc/<pid>/task/<tid>/schedstat; None if not found."""
    for t in group_tasks(pgid):
        try:
            if (t / "comm").read_text().startswith("bars-signals"):
                run_ns, wait_ns, _ = (t / "schedstat").read_text().split()
                return int(run_ns), int(wait_ns)
        except (OSError, ValueError):
            continue
    return None


def component_groups(state: Any, started: list[tuple[str, int]]) -> dict[str, int]:
    """Process group per component: the stack's (kafka, minio, registry, each its own
    session) and this benchmark's children (job, simulator, forwarder: ``started``)."""
    groups = {name: comp.pid for name, comp in state.components.items()}
    groups.update({name: pid for name, pid in started})
    return groups


def components_cpu_s(groups: dict[str, int]) -> dict[str, float]:
    """CPU seconds per component (process group), plus this benchmark process."""
    out = {name: group_cpu_s(pgid) for name, pgid in groups.items()}
    t = os.times()
    out["bench"] = t.user + t.system
    return out


def cores_between(
    a: tuple[int, dict[str, float]], b: tuple[int, dict[str, float]]
) -> dict[str, float]:
    """Cores per name between two (wall ns, CPU seconds per name) samples."""
    wall_s = (b[0] - a[0]) / NS_PER_S
    return {name: (cpu - a[1].get(name, 0.0)) / wall_s for name, cpu in b[1].items()}
