"""`torghut sql`: query the local ClickHouse tables, while `torghut run` runs and after.

While the pipeline runs it owns the data dir (chdb allows one process per dir) and answers
through its query server (torghut/clickhouse/local.py); when nothing runs this command opens
the dir itself. ClickHouse formats the output (no formatter here). docs/querying.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import IO

from torghut.clickhouse.client import ClickHouseClient, ClickHouseError
from torghut.clickhouse.local import (
    LocalOpenError,
    ServerUnreachable,
    describe,
    open_local,
)

# --format -> ClickHouse output format. The table never colours: the engine that renders it
# may be the pipeline's, whose stdout is a terminal while ours may be a file.
FORMATS = {
    "table": "PrettyCompactNoEscapesMonoBlock",
    "csv": "CSVWithNames",
    "json": "JSONEachRow",
    "parquet": "Parquet",
}
QUIT = {"\\q", "exit", "quit", "\\q;", "exit;", "quit;"}
HISTORY_FILE = "sql_history"  # under torghut.stack.paths.DATA_HOME
HISTORY_LENGTH = 2000
PROMPT, CONTINUATION = "torghut :) ", "torghut :-] "

# (what it answers, the query): the --help examples; the integration test runs each one
EXAMPLES: list[tuple[str, str]] = [
    (
        "latest signal per symbol",
        "SELECT symbol, window_start, close, rsi14, macd, vwap_session, is_final "
        "FROM torghut.ta_signals_latest ORDER BY symbol",
    ),
    (
        "final 1 s bars of the last minute of data",
        "SELECT symbol, window_start, open, high, low, close, volume, trade_count "
        "FROM torghut.ta_microbars_final WHERE window_start > "
        "(SELECT max(window_start) FROM torghut.ta_microbars_final) - INTERVAL 1 MINUTE "
        "ORDER BY symbol, window_start",
    ),
    (
        "final bars per symbol, with the first, the last and how many are gap bars",
        "SELECT symbol, count() AS bars, min(window_start) AS first, max(window_start) AS last, "
        "countIf(gap) AS gap_bars FROM torghut.ta_microbars_final GROUP BY symbol ORDER BY symbol",
    ),
    (
        "rows per table (provisional and final, before merges)",
        "SELECT 'ta_microbars' AS table, countIf(is_final) AS final, countIf(NOT is_final) "
        "AS provisional FROM torghut.ta_microbars UNION ALL SELECT 'ta_signals', "
        "countIf(is_final), countIf(NOT is_final) FROM torghut.ta_signals",
    ),
]


def _epilog() -> str:
    lines = ["examples:"]
    for what, sql in EXAMPLES:
        lines += [f"  # {what}", f'  torghut sql "{sql}"', ""]
    lines += [
        "  # the final signals to a Parquet file, the final bars as CSV through a pipe",
        '  torghut sql -f parquet -o signals.parquet "SELECT * FROM torghut.ta_signals_final"',
        '  torghut sql -f csv "SELECT * FROM torghut.ta_microbars_final" | head',
        "",
        "  # interactive: statements end with ';', \\q or Ctrl-D quits",
        "  torghut sql",
        "",
        "Tables: torghut.ta_microbars, torghut.ta_signals (provisional and final rows),",
        "torghut.ta_dead_letters; views ta_microbars_final, ta_signals_final, ta_signals_latest,",
        "ta_dead_letter_counts. While `torghut run` runs, its query server answers (ClickHouse's",
        "HTTP interface on loopback, token in <data dir>/query-server.json); otherwise the data",
        "dir is opened directly, and `torghut run` cannot start on it until this ends.",
        "docs/querying.md has more.",
    ]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from torghut.stack.paths import CLICKHOUSE_DIR

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _epilog()
    parser.add_argument(
        "query",
        nargs="?",
        help="the SQL to run (a FORMAT clause overrides --format); none: an interactive prompt",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help=f"the embedded ClickHouse's data dir (default: {CLICKHOUSE_DIR})",
    )
    parser.add_argument(
        "-f",
        "--format",
        choices=list(FORMATS),
        default="table",
        help="table: an aligned table (ClickHouse's PrettyCompactNoEscapesMonoBlock); csv: "
        "CSVWithNames (a header line, then rows); json: JSONEachRow (one JSON object per "
        "line); parquet: Parquet (binary: needs --output or a pipe). Default: %(default)s",
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        help="write the result to this file instead of stdout (with a query only)",
    )


def _err(message: str) -> None:
    print(message.rstrip("\n"), file=sys.stderr, flush=True)


def _write(out: IO[bytes], data: bytes) -> bool:
    """False when the reader went away (`| head`)."""
    try:
        out.write(data)
        out.flush()
    except BrokenPipeError:
        # quiet exit: point stdout at /dev/null so the interpreter's own flush cannot fail
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return False
    return True


def run(args: argparse.Namespace) -> int:
    fmt = FORMATS[args.format]
    if args.query is None and args.output is not None:
        _err("torghut sql: --output needs a query (the prompt prints its results)")
        return 2
    if args.format == "parquet":
        if args.query is None:
            _err("torghut sql: --format parquet needs a query and --output (or a pipe)")
            return 2
        if args.output is None and sys.stdout.isatty():
            _err(
                "torghut sql: Parquet is binary; refusing to write it to a terminal: pass "
                "--output FILE or pipe it"
            )
            return 2
    if args.query is not None and not args.query.strip():
        _err("torghut sql: the query is empty")
        return 2
    data_dir = args.data_dir
    if data_dir is None:
        from torghut.stack.paths import CLICKHOUSE_DIR

        data_dir = CLICKHOUSE_DIR
    try:
        client = open_local(data_dir)
    except LocalOpenError as exc:
        _err(f"torghut sql: {exc.server_message}")
        return 2
    try:
        if args.query is not None:
            return _one(client, args.query, fmt, args.output)
        return Prompt(client, data_dir, fmt).loop()
    except KeyboardInterrupt:
        _err("torghut sql: interrupted")
        return 130
    finally:
        client.close()


def _one(client: ClickHouseClient, sql: str, fmt: str, output: Path | None) -> int:
    try:
        data = client.query(sql, fmt)
    except ClickHouseError as exc:
        _err(exc.server_message)
        return 1
    if output is not None:
        try:
            output.write_bytes(data)
        except OSError as exc:
            _err(f"torghut sql: cannot write {output}: {exc.strerror or exc}")
            return 1
        return 0
    _write(sys.stdout.buffer, data)
    return 0


class Prompt:
    """The interactive prompt: statements end with `;` (several lines each), `\\q`, `exit`
    or Ctrl-D quit, Ctrl-C drops the statement being typed, an error is printed and the
    prompt goes on. History (one entry per statement) in DATA_HOME/sql_history. With stdin
    not a terminal it reads the statements without prompting and exits 1 if one failed."""

    def __init__(self, client: ClickHouseClient, data_dir: Path, fmt: str) -> None:
        self.client = client
        self.data_dir = data_dir
        self.fmt = fmt
        self.tty = sys.stdin.isatty()
        # readline draws the prompt on stdout: when stdout is a file or a pipe, on stderr
        self.prompt_on_stderr = self.tty and not sys.stdout.isatty()
        self.history = _history_path()
        self.failures = 0
        self._readline = _setup_readline(self.history)

    def loop(self) -> int:
        _err(f"torghut sql: {describe(self.client, self.data_dir)}")
        if self.tty:
            _err("statements end with ';'; \\q or Ctrl-D quits")
        buf: list[str] = []
        while True:
            try:
                line = self._input(CONTINUATION if buf else PROMPT)
            except EOFError:
                if self.tty:
                    print(file=sys.stderr)
                break
            except KeyboardInterrupt:
                print(file=sys.stderr)
                buf.clear()
                continue
            stripped = line.strip()
            if not buf and (not stripped or stripped.startswith("--")):
                continue
            if not buf and stripped.lower() in QUIT:
                break
            buf.append(line)
            statement = "\n".join(buf).strip()
            if not statement.endswith(";"):
                continue
            buf.clear()
            self._remember(statement)
            if not self.run_statement(statement):
                break
        if buf:
            _err("torghut sql: the last statement had no ';' and was not run")
        return 1 if self.failures and not self.tty else 0

    def _input(self, prompt: str) -> str:
        if not self.tty:
            return input()
        if self.prompt_on_stderr:
            print(prompt, end="", file=sys.stderr, flush=True)
            return input()
        return input(prompt)

    def run_statement(self, statement: str) -> bool:
        """Run one statement; False when the output went away."""
        started = time.monotonic()
        try:
            data = self.client.query(statement, self.fmt)
        except KeyboardInterrupt:
            self.failures += 1
            where = " (it may still run in the pipeline)" if self.client.kind == "http" else ""
            _err(f"interrupted{where}")
            return True
        except ServerUnreachable as exc:
            self.failures += 1
            _err(exc.server_message)
            self._reattach()
            return True
        except ClickHouseError as exc:
            self.failures += 1
            _err(exc.server_message)
            return True
        if data and not _write(sys.stdout.buffer, data):
            return False
        if self.tty:
            _err(f"{'' if data else 'Ok. '}Elapsed: {time.monotonic() - started:.3f} sec.")
        return True

    def _reattach(self) -> None:
        """The pipeline's server went away: go on with whatever answers now."""
        try:
            client = open_local(self.data_dir)
        except LocalOpenError as exc:
            _err(f"torghut sql: {exc.server_message}")
            return
        self.client.close()
        self.client = client
        _err(f"torghut sql: now {describe(client, self.data_dir)}; run the statement again")

    def _remember(self, statement: str) -> None:
        if self._readline is None:
            return
        entry = " ".join(line.strip() for line in statement.splitlines())
        self._readline.add_history(entry)
        with contextlib.suppress(OSError):
            self._readline.write_history_file(str(self.history))


def _history_path() -> Path:
    from torghut.stack.paths import DATA_HOME

    return DATA_HOME / HISTORY_FILE


def _setup_readline(history: Path):  # type: ignore[no-untyped-def]
    """GNU readline with this prompt's own history (not the Python REPL's); None without."""
    try:
        import readline
    except ImportError:
        return None
    readline.set_auto_history(False)  # one entry per statement, added by the prompt
    readline.set_history_length(HISTORY_LENGTH)
    try:
        history.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(history, os.O_WRONLY | os.O_CREAT, 0o600))
        readline.clear_history()
        readline.read_history_file(str(history))
    except OSError as exc:
        _err(f"torghut sql: no history ({exc})")
    return readline
