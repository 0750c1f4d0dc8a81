"""Reading a process's Prometheus `/metrics` in tests: a free loopback port to serve it on,
one scrape, and its samples by name."""

from __future__ import annotations

import socket
import urllib.request
from collections import defaultdict

from prometheus_client.parser import text_string_to_metric_families


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for a metrics endpoint the test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape_text(port: int) -> str:
    """The text of `http://127.0.0.1:<port>/metrics`, or "" while nothing answers there."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            return r.read().decode()
    except OSError:
        return ""  # not up yet


def series(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name -> (labels, value) of every sample of one `/metrics` scrape."""
    out: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name].append((dict(sample.labels), sample.value))
    return dict(out)
