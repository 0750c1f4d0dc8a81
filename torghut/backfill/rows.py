"""Avro records of the derived topics -> rows of the ClickHouse tables, as the materialized
views of `schemas/clickhouse/20_ingest.sql` map them (`ta_microbars_mv`, `ta_signals_mv`).

One function for both tables: the window becomes ``window_start``/``window_end``
(DateTime64(6)) and ``window_size_ms``, the epoch-ns times DateTime64(9)
(``fromUnixTimestamp64Nano``), every other field keeps its name and value. DateTime64 values
are 'YYYY-MM-DD hh:mm:ss.fffffffff' strings, what `ClickHouseClient.insert_rows` takes.
``loaded_at`` is left to its default, as the views leave it. The equality with the views is
a test: tests/integration/test_backfill_rows.py.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

NS_PER_S = 1_000_000_000
_NS_FIELDS = ("event_ts", "ingest_ts", "emit_ts")


def datetime64(ns: int, digits: int) -> str:
    """'YYYY-MM-DD hh:mm:ss.f…' (``digits`` fraction digits, truncated) of epoch ns, UTC."""
    s, frac = divmod(ns, NS_PER_S)
    head = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(s))
    return f"{head}.{frac:09d}"[: len(head) + 1 + digits]


def clickhouse_row(record: Mapping[str, Any]) -> dict[str, Any]:
    """The row a materialized view writes for ``record`` (a `microbar_record` or a
    `signal_record`: window start/end in epoch µs, times in epoch ns)."""
    row: dict[str, Any] = {}
    for name, value in record.items():
        if name == "window":
            row["window_start"] = datetime64(value["start"] * 1000, 6)
            row["window_end"] = datetime64(value["end"] * 1000, 6)
            row["window_size_ms"] = value["size_ms"]
        elif name in _NS_FIELDS:
            row[name] = datetime64(value, 9)
        else:
            row[name] = value
    return row
