"""`torghut sql` and the local query server against the real engine (chdb), no mocks.

This test process plays the pipeline: it owns an embedded ClickHouse data dir with the real
schema's storage tables and views (schemas/clickhouse/10_tables.sql, 30_views.sql) and serves
it with `QueryServer`. `torghut sql` runs as a subprocess, as a user runs it: through the
server while this process holds the dir, from the dir itself once it let go. The last test
stops the server, so the module's tests run in file order.
"""

from __future__ import annotations

import io
import json
import os
import re
import select
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow.parquet as pq
import pytest
import requests

from tests.conftest import REPO_ROOT
from torghut.clickhouse.client import ChdbClient, ClickHouseError
from torghut.clickhouse.local import (
    REGISTRATION,
    HttpClient,
    QueryServer,
    Registration,
    open_local,
    write_registration,
)
from torghut.clickhouse.schema import SQL_DIR, SchemaParams, render, split_statements
from torghut.sql_cli import EXAMPLES, FORMATS

pytestmark = pytest.mark.integration

SYMBOLS = ("AAPL", "MSFT", "NVDA")
SECONDS = 90
LATEST = (
    "SELECT symbol, window_start, close, rsi14, macd FROM torghut.ta_signals_latest "
    "ORDER BY symbol"
)
MALFORMED = "SELECT symbol FROM torghut.ta_signals WHERE (close > 1"


@dataclass
class Served:
    data_dir: Path
    home: Path  # TORGHUT_DATA_HOME of the subprocesses (the prompt's history)
    client: ChdbClient
    server: QueryServer
    url: str


def _ts(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S.%f")


def _rows() -> tuple[list[dict], list[dict]]:
    """Bars and signals of the last SECONDS seconds (inside the tables' TTL), a final and a
    provisional row per bar, distinct keys: merges change no answer."""
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=SECONDS + 5)
    bars, signals = [], []
    for k, sym in enumerate(SYMBOLS):
        for i in range(SECONDS):
            start = t0 + timedelta(seconds=i)
            for final in (False, True):
                close = 100.0 * (k + 1) + i / 10 + (0.0 if final else 0.05)
                common = {
                    "symbol": sym,
                    "window_start": _ts(start),
                    "window_end": _ts(start + timedelta(seconds=1)),
                    "window_size_ms": 1000,
                    "is_final": final,
                    "close": close,
                    "version": 2 if final else 1,
                    "event_ts": _ts(start),
                    "ingest_ts": _ts(start),
                    "emit_ts": _ts(start + timedelta(seconds=1)),
                    "seq": i,
                    "source": "test",
                    "trace_id": f"{sym}-{i}",
                }
                bars.append(
                    common
                    | {
                        "open": close - 0.1,
                        "high": close + 0.2,
                        "low": close - 0.2,
                        "volume": 10.0 + i,
                        "vwap": close,
                        "trade_count": 3,
                        "gap": i == 40,
                    }
                )
                signals.append(
                    common
                    | {
                        "ema12": close - 0.01,
                        "rsi14": 50.0 + (i % 20),
                        "macd": None if i < 25 else 0.01 * i,
                    }
                )
    return bars, signals


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("query-server")
    data_dir, home = root / "clickhouse", root / "home"
    client = ChdbClient(data_dir)
    params = SchemaParams(kafka_broker="", registry_url="")
    for name in ("10_tables.sql", "30_views.sql"):  # the storage tables and views, no Kafka
        for stmt in split_statements(render((SQL_DIR / name).read_text(), params)):
            client.execute(stmt)
    bars, signals = _rows()
    client.insert_rows("torghut.ta_microbars", bars)
    client.insert_rows("torghut.ta_signals", signals)
    client.insert_rows(
        "torghut.ta_dead_letters",
        [{"topic": "ta.bars.1s.v1", "partition": 0, "offset": 7, "key": "AAPL",
          "raw_message": "not avro", "error": "Cannot parse"}],
    )
    server = QueryServer(client, data_dir)
    url = server.start()
    try:
        yield Served(data_dir, home, client, server, url)
    finally:
        server.stop()
        client.close()


def sql(
    served: Served, *args: str, stdin: str | None = None, data_dir: Path | None = None
) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "TORGHUT_DATA_HOME": str(served.home)}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "torghut.cli",
            "sql",
            "--data-dir",
            str(data_dir or served.data_dir),
            *args,
        ],
        input=None if stdin is None else stdin.encode(),
        stdin=subprocess.DEVNULL if stdin is None else None,
        capture_output=True,
        cwd=REPO_ROOT,
        env=env,
        timeout=60,
    )


def token(served: Served) -> str:
    return json.loads((served.data_dir / REGISTRATION).read_text())["token"]


def get(served: Served, key: str | None = None, **params: str) -> requests.Response:
    headers = {} if key is None else {"X-ClickHouse-Key": key}
    return requests.get(served.url, params=params, headers=headers, timeout=10)


def test_the_server_registers_itself_for_its_owner_only_on_loopback(served: Served) -> None:
    path = served.data_dir / REGISTRATION
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    reg = json.loads(path.read_text())
    assert reg["url"] == served.url and served.url.startswith("http://127.0.0.1:")
    assert reg["pid"] == os.getpid()
    assert len(reg["token"]) >= 40 and reg["started"]
    assert requests.get(served.url + "ping", timeout=5).text == "Ok.\n"  # no token, like ClickHouse
    assert requests.get(served.url, timeout=5).text == "Ok.\n"


def test_a_request_without_the_token_or_with_a_wrong_one_is_refused(served: Served) -> None:
    missing = get(served, query="SELECT count() FROM torghut.ta_signals")
    assert missing.status_code == 401
    assert missing.headers["X-ClickHouse-Exception-Code"] == "194"
    assert "X-ClickHouse-Key" in missing.text and "(REQUIRED_PASSWORD)" in missing.text
    wrong = get(served, "not-the-token", query="SELECT count() FROM torghut.ta_signals")
    assert wrong.status_code == 403
    assert wrong.headers["X-ClickHouse-Exception-Code"] == "516"
    assert str(SECONDS) not in wrong.text
    # ClickHouse also takes the password as Basic auth (curl -u default:TOKEN)
    basic = requests.get(
        served.url, params={"query": "SELECT 1"}, auth=("default", token(served)), timeout=5
    )
    assert basic.status_code == 200 and basic.text == "1\n"


def test_the_http_interface_answers_as_clickhouse_does(
    served: Served, capfd: pytest.CaptureFixture[str]
) -> None:
    key = token(served)
    q = "SELECT symbol, count() FROM torghut.ta_microbars_final GROUP BY symbol ORDER BY symbol"
    r = get(served, key, query=q)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/tab-separated-values")
    assert r.content == served.client.query(q, "TabSeparated")  # ClickHouse's own default
    assert r.text == "".join(f"{s}\t{SECONDS}\n" for s in SYMBOLS)
    as_json = get(served, key, query=q, default_format="JSONEachRow")
    assert [json.loads(line)["symbol"] for line in as_json.text.splitlines()] == list(SYMBOLS)
    clause = get(served, key, query=q + " FORMAT CSV", default_format="JSONEachRow")
    assert clause.text.startswith('"AAPL",') and clause.headers["X-ClickHouse-Format"] == "CSV"
    # POST: the body is the query, or follows the `query` parameter after a newline (inserts)
    posted = requests.post(served.url, data=q, headers={"X-ClickHouse-Key": key}, timeout=5)
    assert posted.content == r.content
    served.client.execute("CREATE TABLE IF NOT EXISTS default.http_scratch (n UInt32) ENGINE = Memory")
    ins = requests.post(
        served.url,
        params={"query": "INSERT INTO default.http_scratch FORMAT CSV"},
        data="1\n2\n3\n",
        headers={"X-ClickHouse-Key": key},
        timeout=5,
    )
    assert ins.status_code == 200 and ins.content == b""
    assert served.client.rows("SELECT sum(n) FROM default.http_scratch") == [[6]]
    bad = get(served, key, query=MALFORMED)
    assert bad.status_code == 400 and bad.headers["X-ClickHouse-Exception-Code"] == "62"
    assert bad.text.startswith("Code: 62. DB::Exception: Syntax error")
    assert bad.text.rstrip().endswith("(SYNTAX_ERROR)")
    missing = get(served, key, query="SELECT * FROM torghut.no_such_table")
    assert missing.status_code == 404 and missing.headers["X-ClickHouse-Exception-Code"] == "60"
    unsupported = get(served, key, query="SELECT 1", database="torghut")
    assert unsupported.status_code == 400 and "database" in unsupported.text
    # a chunked body (requests sends a generator so), as a ClickHouse server takes it
    chunked = requests.post(
        served.url,
        data=(part.encode() for part in ("SELECT symbol, count() FROM torghut.", q[q.index("ta_"):])),
        headers={"X-ClickHouse-Key": key},
        timeout=5,
    )
    assert chunked.content == r.content
    # a request the server cannot parse: an error answer, never a traceback on the terminal
    with socket.create_connection(("127.0.0.1", urlsplit(served.url).port), timeout=5) as raw:
        raw.sendall(
            f"POST / HTTP/1.1\r\nHost: x\r\nX-ClickHouse-Key: {key}\r\n"
            "Content-Length: lots\r\n\r\n".encode()
        )
        answer = b""
        while chunk := raw.recv(65536):  # the server closes after such an answer
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400") and b"ValueError" in answer
    # the session is the pipeline's: what would change it for good is refused
    for stmt in ("SET max_threads = 1", "-- mine\nUSE torghut"):
        refused = get(served, key, query=stmt)
        assert refused.status_code == 400 and "SETTINGS clause" in refused.text
    assert served.client.rows("SELECT currentDatabase()") == [["default"]]
    assert "Traceback" not in capfd.readouterr().err


@pytest.mark.parametrize("fmt", ["table", "csv", "json"])
def test_sql_prints_clickhouses_formats_through_the_running_pipelines_server(
    served: Served, fmt: str
) -> None:
    # this process holds the data dir: only the server can answer
    out = sql(served, "--format", fmt, LATEST)
    assert out.returncode == 0, out.stderr
    assert out.stderr == b""
    assert out.stdout == served.client.query(LATEST, FORMATS[fmt])
    text = out.stdout.decode()
    if fmt == "table":
        assert "│ AAPL" in text and "\x1b" not in text
    elif fmt == "csv":
        assert text.splitlines()[0] == '"symbol","window_start","close","rsi14","macd"'
    else:
        assert [json.loads(line)["symbol"] for line in text.splitlines()] == list(SYMBOLS)


def test_sql_writes_parquet_to_a_file_or_a_pipe_never_a_terminal(
    served: Served, tmp_path: Path
) -> None:
    q = "SELECT * FROM torghut.ta_signals_final ORDER BY symbol, window_start"
    expected = pq.read_table(io.BytesIO(served.client.query(q, "Parquet")))
    assert expected.num_rows == len(SYMBOLS) * SECONDS
    target = tmp_path / "signals.parquet"
    to_file = sql(served, "--format", "parquet", "--output", str(target), q)
    assert to_file.returncode == 0, to_file.stderr
    assert pq.read_table(target).equals(expected)
    piped = sql(served, "--format", "parquet", q)  # stdout is a pipe here
    assert piped.returncode == 0 and pq.read_table(io.BytesIO(piped.stdout)).equals(expected)
    master, slave = os.openpty()
    try:
        tty = subprocess.run(
            [sys.executable, "-m", "torghut.cli", "sql", "--data-dir", str(served.data_dir),
             "--format", "parquet", q],
            stdout=slave, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd=REPO_ROOT,
            timeout=60,
        )
        os.set_blocking(master, False)
        try:
            written = os.read(master, 65536)
        except BlockingIOError:
            written = b""
    finally:
        os.close(master)
        os.close(slave)
    assert tty.returncode == 2
    assert b"refusing to write it to a terminal" in tty.stderr
    assert b"PAR1" not in written


def test_a_malformed_query_prints_clickhouses_message_and_exits_1(served: Served) -> None:
    out = sql(served, MALFORMED)
    assert out.returncode == 1
    err = out.stderr.decode()
    assert err.startswith("Code: 62. DB::Exception: Syntax error"), err
    assert "Traceback" not in err and "-- query" not in err
    assert out.stdout == b""


def test_rows_inserted_through_open_local_reach_the_servers_engine(served: Served) -> None:
    client = open_local(served.data_dir)
    try:
        assert isinstance(client, HttpClient) and client.server_pid == os.getpid()
        bars, _ = _rows()
        extra = [b | {"symbol": "BKFL"} for b in bars if b["symbol"] == "AAPL"]
        client.insert_rows("torghut.ta_microbars", extra)
        assert served.client.rows(
            "SELECT count() FROM torghut.ta_microbars WHERE symbol = 'BKFL'"
        ) == [[len(extra)]]
        assert client.rows(
            "SELECT count() FROM torghut.ta_microbars_final WHERE symbol = 'BKFL'"
        ) == [[SECONDS]]
        with pytest.raises(ClickHouseError) as err:
            client.rows(MALFORMED)
        assert err.value.server_message.startswith("Code: 62. DB::Exception: Syntax error")
        assert "-- query" not in err.value.server_message  # ClickHouse's message alone
        client.execute("ALTER TABLE torghut.ta_microbars DELETE WHERE symbol = 'BKFL' "
                       "SETTINGS mutations_sync = 1")
        assert served.client.rows(
            "SELECT count() FROM torghut.ta_microbars WHERE symbol = 'BKFL'"
        ) == [[0]]
    finally:
        client.close()


def test_concurrent_clients_each_get_their_own_answer_while_the_owner_queries_too(
    served: Served,
) -> None:
    key = token(served)
    queries = {
        sym: f"SELECT symbol, count(), max(close) FROM torghut.ta_microbars_final "
        f"WHERE symbol = '{sym}' GROUP BY symbol"
        for sym in SYMBOLS
    }
    expected = {sym: served.client.query(q, "TabSeparated") for sym, q in queries.items()}
    errors: list[str] = []

    def remote(sym: str) -> None:
        client = HttpClient(served.url, key)
        try:
            for _ in range(15):
                got = client.query(queries[sym], "TabSeparated")
                if got != expected[sym]:
                    errors.append(f"{sym}: {got!r}")
        finally:
            client.close()

    threads = [threading.Thread(target=remote, args=(sym,)) for sym in SYMBOLS * 3]
    for t in threads:
        t.start()
    for _ in range(15):  # the pipeline's own queries meanwhile (its live view)
        assert served.client.rows("SELECT count() FROM torghut.ta_signals_latest") == [
            [len(SYMBOLS)]
        ]
    for t in threads:
        t.join(timeout=60)
    assert errors == []


def test_the_help_shows_examples_and_each_one_runs(served: Served) -> None:
    helped = sql(served, "--help")
    assert helped.returncode == 0
    text = helped.stdout.decode()
    assert "JSONEachRow" in text and "CSVWithNames" in text and "--output" in text
    client = open_local(served.data_dir)
    try:
        for what, q in EXAMPLES:
            assert q in text, what
            assert client.query(q, "TabSeparated").strip(), what  # every example answers rows
    finally:
        client.close()


def test_the_queries_in_docs_querying_md_run(served: Served) -> None:
    blocks = re.findall(r"```sql\n(.*?)```", (REPO_ROOT / "docs" / "querying.md").read_text(), re.S)
    assert len(blocks) >= 5
    client = open_local(served.data_dir)
    try:
        for block in blocks:
            assert client.query(block.strip().rstrip(";"), "TabSeparated").strip(), block
    finally:
        client.close()


def _read_until(fd: int, needle: bytes, seen: bytearray, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while needle not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{needle!r} not seen in {bytes(seen)!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                chunk = b""
            if not chunk:
                raise AssertionError(f"{needle!r} not seen before EOF in {bytes(seen)!r}")
            seen += chunk


def test_the_prompt_on_a_terminal_keeps_history_and_survives_an_error(served: Served) -> None:
    history = served.home / "sql_history"
    history.unlink(missing_ok=True)
    master, slave = os.openpty()
    env = {**os.environ, "TORGHUT_DATA_HOME": str(served.home), "TERM": "dumb"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "torghut.cli", "sql", "--data-dir", str(served.data_dir)],
        stdin=slave, stdout=slave, stderr=slave, cwd=REPO_ROOT, env=env,
        start_new_session=True,
    )
    os.close(slave)
    seen = bytearray()
    try:
        _read_until(master, b"attached to the running pipeline", seen)
        _read_until(master, b"torghut :) ", seen)
        os.write(master, b"SELECT count() AS n\n")
        _read_until(master, b"torghut :-] ", seen)  # the statement goes on until ';'
        os.write(master, b"FROM torghut.ta_signals_final;\n")
        _read_until(master, str(len(SYMBOLS) * SECONDS).encode(), seen)
        os.write(master, (MALFORMED + ";\n").encode())
        _read_until(master, b"(SYNTAX_ERROR)", seen)
        os.write(master, b"SELECT 'still here' AS alive;\n")
        _read_until(master, b"still here", seen)
        del seen[: seen.index(b"still here")]
        _read_until(master, b"torghut :) ", seen)  # the prompt is back
        os.write(master, b"\x04")  # Ctrl-D
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    assert b"Traceback" not in seen
    assert history.read_text().splitlines() == [
        "SELECT count() AS n FROM torghut.ta_signals_final;",
        MALFORMED + ";",
        "SELECT 'still here' AS alive;",
    ]
    assert stat.S_IMODE(history.stat().st_mode) == 0o600


def test_the_prompt_reads_statements_from_stdin(served: Served) -> None:
    out = sql(served, "--format", "csv", stdin=f"SELECT 1 AS one;\n{MALFORMED};\nSELECT\n 2 AS two;\n\\q\nSELECT 3;\n")
    assert out.stdout.decode().splitlines() == ['"one"', "1", '"two"', "2"]  # \q stops it
    err = out.stderr.decode()
    assert "attached to the running pipeline" in err and "(SYNTAX_ERROR)" in err
    assert out.returncode == 1  # not a terminal: a failed statement shows in the exit code
    assert "SELECT 2 AS two;" in (served.home / "sql_history").read_text().splitlines()


def test_no_pipeline_and_no_data_exits_2_with_a_clear_line(
    served: Served, tmp_path: Path
) -> None:
    for data_dir in (tmp_path / "never-made", tmp_path):
        out = sql(served, "SELECT 1", data_dir=data_dir)
        assert out.returncode == 2
        err = out.stderr.decode()
        assert err.count("\n") == 1 and "Traceback" not in err
        assert "torghut run" in err and "torghut backfill" in err and "--data-dir" in err
    assert not (tmp_path / "never-made").exists() and not (tmp_path / "metadata").exists()


OWNER = """
import sys, time
from pathlib import Path
from torghut.clickhouse.client import ChdbClient
from torghut.clickhouse.local import QueryServer
data_dir = Path(sys.argv[1])
ch = ChdbClient(data_dir)
ch.execute("CREATE DATABASE IF NOT EXISTS torghut")
ch.execute("CREATE TABLE torghut.t (n UInt32) ENGINE = MergeTree ORDER BY n")
ch.insert_rows("torghut.t", [{"n": n} for n in range(10)])
print(QueryServer(ch, data_dir).start(), flush=True)
time.sleep(120)
"""


def test_a_pipeline_killed_with_sigkill_leaves_a_registration_that_is_ignored(
    served: Served, tmp_path: Path
) -> None:
    data_dir = tmp_path / "clickhouse"
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(data_dir)], stdout=subprocess.PIPE, cwd=REPO_ROOT
    )
    try:
        assert owner.stdout is not None
        url = owner.stdout.readline().decode().strip()
        assert url.startswith("http://127.0.0.1:")
        q = "SELECT sum(n) FROM torghut.t"
        live = sql(served, q, "-f", "csv", data_dir=data_dir)
        assert live.returncode == 0 and live.stdout == b'"sum(n)"\n45\n'
    finally:
        owner.kill()  # SIGKILL: no stop(), the registration stays
        owner.wait()
    assert (data_dir / REGISTRATION).exists()
    after = sql(served, q, "-f", "csv", data_dir=data_dir)
    assert after.returncode == 0, after.stderr
    assert after.stdout == live.stdout
    assert not (data_dir / REGISTRATION).exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_after_the_pipeline_stops_sql_opens_the_dir_directly_with_the_same_answer(
    served: Served,
) -> None:
    before = sql(served, LATEST)
    assert before.returncode == 0 and b"AAPL" in before.stdout
    reg_path = served.data_dir / REGISTRATION

    # a prompt open across the stop: it says so and goes on with the dir once it is free
    count = b"SELECT count() FROM torghut.ta_signals_final;\n"
    prompt = subprocess.Popen(
        [sys.executable, "-m", "torghut.cli", "sql", "--data-dir", str(served.data_dir),
         "--format", "csv"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO_ROOT,
        env={**os.environ, "TORGHUT_DATA_HOME": str(served.home)},
    )
    assert prompt.stdin is not None and prompt.stdout is not None and prompt.stderr is not None
    out, err = bytearray(), bytearray()
    try:
        prompt.stdin.write(count)
        prompt.stdin.flush()
        _read_until(prompt.stdout.fileno(), str(len(SYMBOLS) * SECONDS).encode(), out)

        served.server.stop()
        assert not reg_path.exists()
        held = sql(served, LATEST)  # the dir still held (the client is open), no server
        assert held.returncode == 2
        assert f"process {os.getpid()} holds the ClickHouse data dir" in held.stderr.decode()
        prompt.stdin.write(count)
        prompt.stdin.flush()
        _read_until(prompt.stderr.fileno(), b"holds the ClickHouse data dir", err)
        assert b"did not answer" in err or b"is stopping" in err

        served.client.close()
        prompt.stdin.write(count)
        prompt.stdin.flush()
        _read_until(prompt.stderr.fileno(), b"now opened the data dir", err)
        del out[:]
        prompt.stdin.write(count)
        prompt.stdin.flush()
        _read_until(prompt.stdout.fileno(), str(len(SYMBOLS) * SECONDS).encode(), out)
        prompt.stdin.write(b"\\q\n")
        prompt.stdin.flush()
        assert prompt.wait(timeout=20) == 1  # two statements failed
    finally:
        if prompt.poll() is None:
            prompt.kill()
            prompt.wait()
        for f in (prompt.stdin, prompt.stdout, prompt.stderr):
            f.close()
    assert b"Traceback" not in err

    after = sql(served, LATEST)
    assert after.returncode == 0, after.stderr
    assert after.stdout == before.stdout
    bad = sql(served, MALFORMED)
    assert bad.returncode == 1
    assert bad.stderr.decode().startswith("Code: 62. DB::Exception: Syntax error")
    assert b"Traceback" not in bad.stderr

    # a registration left by a pipeline killed -9 (its pid gone), or whose pid was reused
    # by another process while nothing holds the dir: ignored and removed
    for pid in (_dead_pid(), os.getppid()):
        write_registration(
            served.data_dir,
            Registration(
                url=f"http://127.0.0.1:{_free_port()}/",
                pid=pid,
                token="stale",
                started="2026-01-01T00:00:00+00:00",
                data_dir=str(served.data_dir),
            ),
        )
        stale = sql(served, LATEST)
        assert stale.returncode == 0, stale.stderr
        assert stale.stdout == before.stdout
        assert not reg_path.exists()
