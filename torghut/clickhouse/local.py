"""Query the local embedded ClickHouse while `torghut run` owns it, and after it stopped.

chdb allows one process per data dir. The process that owns it (the pipeline) serves a
subset of ClickHouse's HTTP interface on loopback (`QueryServer`) and registers it in
`<data_dir>/query-server.json` (url, pid, token; mode 0600). Other processes find it with
`open_local`, which gives an `HttpClient` while that server answers and opens the data dir
directly (`ChdbClient`) when nothing runs. docs/querying.md describes the interface.
"""

from __future__ import annotations

import contextlib
import fcntl
import hmac
import ipaddress
import json
import os
import re
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
import requests

from torghut.clickhouse.client import (
    ChdbClient,
    ClickHouseClient,
    ClickHouseError,
    json_compact_rows,
)

REGISTRATION = "query-server.json"
TOKEN_HEADER = "X-ClickHouse-Key"  # ClickHouse's own password header
DEFAULT_FORMAT = "TabSeparated"  # what a ClickHouse server answers without a format
# URL parameters the server understands; any other is refused (a real server takes settings
# there, which this one cannot apply per query without touching the pipeline's session)
PARAMETERS = ("query", "default_format", "query_id", "user")
MAX_BODY = 512 << 20
SYSTEM_DATABASES = ("system", "INFORMATION_SCHEMA", "information_schema")

# HTTP status of an exception by the name ClickHouse puts at the end of its message, as a
# ClickHouse server answers (its src/Server/HTTP/exceptionCodeToHTTPStatus.cpp); others: 500
_NAMES_BY_STATUS: dict[int, str] = {
    401: "REQUIRED_PASSWORD",
    403: "UNKNOWN_USER WRONG_PASSWORD AUTHENTICATION_FAILED SET_NON_GRANTED_ROLE ACCESS_DENIED",
    400: "BAD_ARGUMENTS CANNOT_COMPILE_REGEXP CANNOT_PARSE_TEXT CANNOT_PARSE_ESCAPE_SEQUENCE "
    "CANNOT_PARSE_QUOTED_STRING CANNOT_PARSE_DATE CANNOT_PARSE_DATETIME CANNOT_PARSE_NUMBER "
    "CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING CANNOT_PARSE_IPV4 CANNOT_PARSE_IPV6 "
    "CANNOT_PARSE_INPUT_ASSERTION_FAILED CANNOT_PARSE_UUID DUPLICATE_COLUMN ILLEGAL_COLUMN "
    "UNKNOWN_ELEMENT_IN_AST UNKNOWN_TYPE_OF_AST_NODE THERE_IS_NO_COLUMN TOO_DEEP_AST "
    "TOO_BIG_AST UNEXPECTED_AST_STRUCTURE SYNTAX_ERROR INCORRECT_DATA TYPE_MISMATCH "
    "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE",
    404: "UNKNOWN_TABLE UNKNOWN_FUNCTION UNKNOWN_IDENTIFIER UNKNOWN_TYPE UNKNOWN_STORAGE "
    "UNKNOWN_DATABASE UNKNOWN_SETTING UNKNOWN_DIRECTION_OF_SORTING UNKNOWN_AGGREGATE_FUNCTION "
    "UNKNOWN_FORMAT UNKNOWN_DATABASE_ENGINE UNKNOWN_TYPE_OF_QUERY UNKNOWN_ROLE",
    413: "QUERY_IS_TOO_LARGE",
    501: "NOT_IMPLEMENTED",
    503: "SOCKET_TIMEOUT CANNOT_OPEN_FILE CANNOT_SCHEDULE_TASK",
    411: "HTTP_LENGTH_REQUIRED",
    408: "TIMEOUT_EXCEEDED",
    415: "UNSUPPORTED_MEDIA_TYPE",
}
_STATUS_BY_NAME = {n: status for status, names in _NAMES_BY_STATUS.items() for n in names.split()}
_CODE = re.compile(r"Code: (\d+)\.")
_NAME = re.compile(r"\(([A-Z][A-Z0-9_]+)\)")
_SESSION_STATEMENT = re.compile(r"\s*(SET|USE)\s", re.IGNORECASE)
_COMMENT_LINES = re.compile(r"^\s*--[^\n]*\n?", re.MULTILINE)
_INSERT = re.compile(r"\s*INSERT\b", re.IGNORECASE)
_FORMAT_CLAUSE = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*\Z", re.IGNORECASE)
_STD_EXCEPTION = 1001  # ClickHouse's code for an error that is not one of its own


def error_status(message: str) -> tuple[int, int]:
    """(HTTP status, ClickHouse exception code) of a ClickHouse error message."""
    code = _CODE.search(message)
    names = _NAME.findall(message)
    status = _STATUS_BY_NAME.get(names[-1], 500) if names else 500
    return status, int(code.group(1)) if code else _STD_EXCEPTION


def clickhouse_message(code: int, name: str, text: str) -> str:
    """An error in ClickHouse's own shape, for refusals of this server."""
    return f"Code: {code}. DB::Exception: {text}. ({name})"


def content_type(fmt: str) -> str:
    f = fmt.lower()
    if f.startswith(("tabseparated", "tsv")):
        return "text/tab-separated-values; charset=UTF-8"
    if f.startswith("csv"):
        return "text/csv; charset=UTF-8; header=" + ("present" if "names" in f else "absent")
    if f.startswith("json") or f == "ndjson":
        return "application/json; charset=UTF-8"
    if f in {"parquet", "arrow", "arrowstream", "orc", "native", "avro", "protobuf", "npy"} or (
        f.startswith("rowbinary")
    ):
        return "application/octet-stream"
    return "text/plain; charset=UTF-8"


def output_format(sql: str, default: str) -> str:
    """The format a query's result comes in: its trailing FORMAT clause, else `default`."""
    m = _FORMAT_CLAUSE.search(sql)
    return m.group(1) if m else default


# --- registration -------------------------------------------------------------------------


@dataclass(frozen=True)
class Registration:
    url: str
    pid: int
    token: str
    started: str
    data_dir: str


def registration_path(data_dir: Path) -> Path:
    return Path(data_dir) / REGISTRATION


def read_registration(data_dir: Path) -> Registration | None:
    """The registered server of `data_dir`; None when there is none or it is unreadable."""
    try:
        raw = json.loads(registration_path(data_dir).read_text())
        return Registration(
            url=str(raw["url"]),
            pid=int(raw["pid"]),
            token=str(raw["token"]),
            started=str(raw.get("started", "")),
            data_dir=str(raw.get("data_dir", data_dir)),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_registration(data_dir: Path, reg: Registration) -> Path:
    """Write the registration readable by this user only (0600), atomically."""
    path = registration_path(data_dir)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, json.dumps(asdict(reg), indent=2).encode() + b"\n")
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


def remove_registration(data_dir: Path, reg: Registration) -> bool:
    """Remove the registration if it is still `reg` (not a newer server's)."""
    current = read_registration(data_dir)
    if current is None or (current.pid, current.token) != (reg.pid, reg.token):
        return False
    with contextlib.suppress(FileNotFoundError):
        registration_path(data_dir).unlink()
    return True


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def data_dir_holder(data_dir: Path) -> int | None:
    """The pid of the process that holds `data_dir` (ClickHouse's flock on its `status`
    file), 0 if held by an unknown pid; None when no process holds it."""
    status = Path(data_dir) / "status"
    try:
        fd = os.open(status, os.O_RDONLY)
    except FileNotFoundError:
        return None
    except OSError:
        return 0
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            m = re.search(rb"PID: (\d+)", os.pread(fd, 4096, 0))
            return int(m.group(1)) if m else 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def ping(url: str, timeout: float = 2.0) -> bool:
    """True when a query server answers `/ping` with ClickHouse's `Ok.`."""
    with requests.Session() as s:
        s.trust_env = False  # loopback: never through an HTTP(S)_PROXY
        try:
            r = s.get(url.rstrip("/") + "/ping", timeout=timeout)
        except requests.RequestException:
            return False
    return r.status_code == 200 and r.text == "Ok.\n"


# --- the server ---------------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    app: QueryServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up mid-answer; the pipeline's terminal is its live view


class _HTTPServer6(_HTTPServer):
    address_family = socket.AF_INET6


class _BadRequest(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every answer has a Content-Length
    server_version = "torghut-query-server"
    timeout = 120  # an idle keep-alive connection is closed after this
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the pipeline owns the terminal (its live view)

    def do_GET(self) -> None:
        self._handle(post=False)

    def do_POST(self) -> None:
        self._handle(post=True)

    def setup(self) -> None:
        super().setup()
        self.server.app._connections.add(self.connection)

    def finish(self) -> None:
        self.server.app._connections.discard(self.connection)
        super().finish()

    def _handle(self, post: bool) -> None:
        app = self.server.app
        self._body_read = not post
        with app._request():
            try:
                self._serve(app, post)
            except _BadRequest as exc:
                if not self._body_read:
                    self.close_connection = True  # refused unread: no keep-alive after it
                self._send_error(exc.status, exc.code, str(exc))
            except Exception as exc:  # never a traceback on the owner's terminal
                self.close_connection = True
                self._send_error(
                    400 if isinstance(exc, ValueError) else 500,
                    _STD_EXCEPTION,
                    f"torghut's query server: {type(exc).__name__}: {exc}",
                )

    def _serve(self, app: QueryServer, post: bool) -> None:
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        if url.path == "/ping" or (url.path == "/" and not post and "query" not in params):
            if post:
                self._read_body()
            self._send(200, b"Ok.\n", "text/plain; charset=UTF-8")
            return
        if url.path != "/":
            raise _BadRequest(
                404,
                0,
                f"There is no handle {url.path}\n\nUse / or /ping for health checks.\n"
                "Send queries to / (torghut's query server: docs/querying.md).",
            )
        app.check_token(self.headers)  # before reading a body
        body = self._read_body() if post else b""
        unknown = sorted(set(params) - set(PARAMETERS))
        if unknown:
            raise _bad_arguments(
                f"URL parameter(s) {', '.join(unknown)} not supported by torghut's query "
                f"server (it takes {', '.join(PARAMETERS)}; put settings in the query's "
                "SETTINGS clause, qualify tables with their database)"
            )
        if app.stopping:
            self.close_connection = True
            raise _BadRequest(
                503, 0, "torghut's query server is stopping (the pipeline is shutting down)"
            )
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _bad_arguments(
                "the request body must be UTF-8 text (binary input formats are not "
                "supported by torghut's query server)"
            ) from exc
        query = params.get("query", "")
        sql = f"{query}\n{text}" if query and text else query or text
        if not sql.strip():
            raise _BadRequest(400, 62, clickhouse_message(62, "SYNTAX_ERROR", "Empty query"))
        if _SESSION_STATEMENT.match(_COMMENT_LINES.sub("", sql)):
            # over HTTP a real server forgets them after the query; here the session is the
            # pipeline's own, which they would change for good
            raise _BadRequest(
                400,
                36,
                clickhouse_message(
                    36,
                    "BAD_ARGUMENTS",
                    "SET and USE would change the pipeline's own session; torghut's query "
                    "server refuses them (put settings in the query's SETTINGS clause, qualify "
                    "tables with their database)",
                ),
            )
        fmt = params.get("default_format") or DEFAULT_FORMAT
        try:
            out = app.client.query(sql, fmt)
        except ClickHouseError as exc:
            status, code = error_status(exc.server_message)
            raise _BadRequest(status, code, exc.server_message) from exc
        except Exception as exc:  # the engine's own failure: still an answer, not a hang-up
            raise _BadRequest(500, _STD_EXCEPTION, f"{type(exc).__name__}: {exc}") from exc
        # an INSERT's FORMAT clause names its input; it answers nothing
        shown = "" if _INSERT.match(sql) else output_format(query or text, fmt)
        self._send(
            200,
            out,
            content_type(shown) if shown else "text/plain; charset=UTF-8",
            {
                "X-ClickHouse-Format": shown,
                "X-ClickHouse-Query-Id": params.get("query_id") or str(uuid.uuid4()),
            },
        )

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts, total = [], 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    self._body_read = True
                    return b"".join(parts)
                total += size
                if total > MAX_BODY:
                    raise _too_large()
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise _too_large()
        body = self.rfile.read(length) if length else b""
        self._body_read = True
        return body

    def _send(
        self, status: int, body: bytes, ctype: str, headers: Mapping[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        for k, v in (headers or {}).items():
            if v:
                self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _send_error(self, status: int, code: int, message: str) -> None:
        headers = {"X-ClickHouse-Exception-Code": str(code)} if code else {}
        self._send(
            status, (message.rstrip("\n") + "\n").encode(), "text/plain; charset=UTF-8", headers
        )


def _bad_arguments(text: str) -> _BadRequest:
    return _BadRequest(400, 36, clickhouse_message(36, "BAD_ARGUMENTS", text))


def _too_large() -> _BadRequest:
    return _BadRequest(
        413,
        229,
        clickhouse_message(
            229, "QUERY_IS_TOO_LARGE", f"the request body is over {MAX_BODY >> 20} MiB"
        ),
    )


class QueryServer:
    """A subset of ClickHouse's HTTP interface over `client`, on loopback, for the process
    that owns `data_dir` (`torghut run`). docs/querying.md.

        server = QueryServer(client, data_dir)
        url = server.start()   # registers <data_dir>/query-server.json
        ...
        server.stop()          # before client.close(); removes the registration
    """

    def __init__(
        self,
        client: ClickHouseClient,
        data_dir: Path,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if host == "localhost":
            host = "127.0.0.1"
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ValueError(f"the query server binds to loopback only, not {host!r}")
        own = getattr(client, "data_dir", None)
        if own is not None and Path(own).resolve() != Path(data_dir).resolve():
            raise ValueError(f"the client's data dir is {own}, not {data_dir}")
        self.client = client
        self.data_dir = Path(data_dir)
        self.host, self.port = host, port
        self.url = ""
        self.token = ""
        self.stopping = False
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._registration: Registration | None = None
        self._active = 0
        self._connections: set[socket.socket] = set()  # open client connections (keep-alive)
        self._idle = threading.Condition()

    def start(self) -> str:
        """Serve and register; returns the URL (http://127.0.0.1:PORT/)."""
        if self._httpd is not None:
            raise RuntimeError("the query server is already started")
        # a server's Pretty formats never colour (the owner's stdout may be a terminal);
        # a session setting: the pipeline's own queries read JSON
        with contextlib.suppress(ClickHouseError):
            self.client.execute("SET output_format_pretty_color = 0")
        cls = _HTTPServer6 if ":" in self.host else _HTTPServer
        httpd = cls((self.host, self.port), _Handler)
        httpd.app = self
        self.port = httpd.server_address[1]
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{shown}:{self.port}/"
        self.token = secrets.token_urlsafe(32)
        self.stopping = False
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, name="torghut-query-server", daemon=True
        )
        self._thread.start()
        self._registration = Registration(
            url=self.url,
            pid=os.getpid(),
            token=self.token,
            started=datetime.now(UTC).isoformat(timespec="seconds"),
            data_dir=str(self.data_dir.resolve()),
        )
        write_registration(self.data_dir, self._registration)
        return self.url

    def stop(self, drain_s: float = 5.0) -> None:
        """Unregister, stop accepting, wait up to `drain_s` for queries in flight. Call it
        before closing the client."""
        if self._httpd is None:
            return
        self.stopping = True
        if self._registration is not None:
            remove_registration(self.data_dir, self._registration)
            self._registration = None
        self._httpd.shutdown()
        self._httpd.server_close()
        deadline = time.monotonic() + drain_s
        with self._idle:
            while self._active and time.monotonic() < deadline:
                self._idle.wait(max(0.0, deadline - time.monotonic()))
        for conn in list(self._connections):  # idle keep-alive connections: hang up
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=drain_s)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> QueryServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @contextlib.contextmanager
    def _request(self):  # type: ignore[no-untyped-def]
        with self._idle:
            self._active += 1
        try:
            yield
        finally:
            with self._idle:
                self._active -= 1
                self._idle.notify_all()

    def check_token(self, headers: Any) -> None:
        given = headers.get(TOKEN_HEADER)
        if given is None:
            given = _basic_auth_password(headers.get("Authorization", ""))
        if not given:
            raise _BadRequest(
                401,
                194,
                clickhouse_message(
                    194,
                    "REQUIRED_PASSWORD",
                    f"torghut's query server needs its token in header {TOKEN_HEADER} (or as "
                    f"the Basic auth password); it is in {registration_path(self.data_dir)}, "
                    "readable by its owner only",
                ),
            )
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            raise _BadRequest(
                403,
                516,
                clickhouse_message(
                    516,
                    "AUTHENTICATION_FAILED",
                    "torghut's query server: wrong token (a new one is made at every start; "
                    f"read {registration_path(self.data_dir)})",
                ),
            )


def _basic_auth_password(header: str) -> str:
    import base64
    import binascii

    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return ""
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return ""
    return decoded.partition(":")[2]


# --- the client ---------------------------------------------------------------------------


class ServerUnreachable(ClickHouseError):
    """The query server did not answer (the pipeline stopped?): nothing says whether the
    statement ran."""


class HttpClient:
    """The client interface over a query server (or any ClickHouse HTTP interface that
    takes the password in X-ClickHouse-Key)."""

    kind = "http"

    def __init__(
        self, url: str, token: str, timeout_s: float = 600.0, server_pid: int | None = None
    ) -> None:
        self.url = url.rstrip("/") + "/"
        self.server_pid = server_pid
        self._timeout = (5.0, timeout_s)
        self._session = requests.Session()
        self._session.trust_env = False  # loopback: never through an HTTP(S)_PROXY
        self._session.headers[TOKEN_HEADER] = token
        self._lock = threading.Lock()  # a requests.Session is not documented thread-safe

    def _post(self, sql: str, params: dict[str, str], body: bytes) -> bytes:
        try:
            with self._lock:
                r = self._session.post(self.url, params=params, data=body, timeout=self._timeout)
        except requests.RequestException as exc:
            message = f"torghut's query server at {self.url} did not answer: {exc}"
            raise ServerUnreachable(f"{message}\n-- query:\n{sql.strip()}", message) from exc
        if r.status_code == 503 and "X-ClickHouse-Exception-Code" not in r.headers:
            message = f"torghut's query server at {self.url} is stopping"
            raise ServerUnreachable(f"{message}\n-- query:\n{sql.strip()}", message)
        if r.status_code != 200:
            message = r.content.decode("utf-8", "replace").strip() or f"HTTP {r.status_code}"
            raise ClickHouseError(f"{message}\n-- query:\n{sql.strip()}", message)
        return r.content

    def execute(self, sql: str) -> None:
        self._post(sql, {}, sql.encode())

    def rows(self, sql: str) -> list[list[Any]]:
        return json_compact_rows(self.query(sql, "JSONCompact"))

    def query(self, sql: str, fmt: str) -> bytes:
        return self._post(sql, {"default_format": fmt}, sql.encode())

    def insert_rows(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            # as ClickHouse takes inserts over HTTP: the statement in `query`, the data the body
            query = f"INSERT INTO {table} FORMAT JSONEachRow"
            body = b"\n".join(orjson.dumps(dict(r)) for r in rows)
            self._post(query, {"query": query}, body)

    def close(self) -> None:
        self._session.close()


# --- opening the local engine -------------------------------------------------------------


class LocalOpenError(ClickHouseError):
    """The local engine could not be opened (no data, or the data dir is held)."""


class NoLocalData(LocalOpenError):
    """The data dir has no tables (or does not exist)."""


class DataDirBusy(LocalOpenError):
    """Another process holds the data dir and serves no queries for it."""


def _no_data(data_dir: Path, what: str) -> NoLocalData:
    message = (
        f"{what} {data_dir}: run `torghut run` or `torghut backfill` first, or pass --data-dir"
    )
    return NoLocalData(message, message)


def _busy(data_dir: Path, pid: int | None, detail: str = "") -> DataDirBusy:
    who = f"process {pid}" if pid else "another process"
    message = (
        f"{who} holds the ClickHouse data dir {data_dir} (chdb allows one process per data "
        "dir) and registered no query server that answers; wait for it to end, or query "
        "it through its own interface" + (f" ({detail})" if detail else "")
    )
    return DataDirBusy(message, message)


def user_table_count(client: ClickHouseClient) -> int:
    names = ", ".join(f"'{d}'" for d in SYSTEM_DATABASES)
    rows = client.rows(f"SELECT count() FROM system.tables WHERE database NOT IN ({names})")
    return int(rows[0][0]) if rows else 0


def open_local(
    data_dir: Path | None = None, *, create: bool = False, ping_timeout_s: float = 2.0
) -> ClickHouseClient:
    """The local ClickHouse of `data_dir` (default `torghut.stack.paths.CLICKHOUSE_DIR`).

    A running pipeline's query server when one is registered for the dir and answers
    (`HttpClient`); otherwise the dir itself (`ChdbClient`, which this process then owns
    until `close()`). A registration whose pid is gone, or whose server does not answer
    while nobody holds the dir, is stale: it is removed. Raises `NoLocalData` for a dir
    without tables (unless `create`: a writer that applies the schema itself) and
    `DataDirBusy` when another process holds the dir with no server.
    """
    if data_dir is None:
        from torghut.stack.paths import CLICKHOUSE_DIR

        data_dir = CLICKHOUSE_DIR
    data_dir = Path(data_dir)
    reg = read_registration(data_dir)
    if reg is not None:
        alive = pid_alive(reg.pid)
        if alive and ping(reg.url, ping_timeout_s):
            return HttpClient(reg.url, reg.token, server_pid=reg.pid)
        holder = data_dir_holder(data_dir)
        if alive and holder in (reg.pid, 0):
            raise _busy(data_dir, holder or reg.pid, f"its query server {reg.url} is silent")
        remove_registration(data_dir, reg)  # stale: a killed pipeline's (or its pid reused)
    if not create and not (data_dir / "metadata").is_dir():
        # not (yet) a ClickHouse data dir: opening it would make one there
        raise _no_data(data_dir, "no ClickHouse data dir at")
    holder = data_dir_holder(data_dir)
    if holder is not None:
        raise _busy(data_dir, holder)
    try:
        client = ChdbClient(data_dir)
    except Exception as exc:  # the dir was taken between the check and the open
        raise _busy(data_dir, data_dir_holder(data_dir), str(exc)) from exc
    if not create:
        try:
            empty = user_table_count(client) == 0
        except ClickHouseError:
            client.close()
            raise
        if empty:
            client.close()
            raise _no_data(data_dir, "no tables in the ClickHouse data dir")
    return client


def describe(client: ClickHouseClient, data_dir: Path) -> str:
    """One line saying what `open_local` attached to."""
    if isinstance(client, HttpClient):
        pid = f"pid {client.server_pid}, " if client.server_pid else ""
        return f"attached to the running pipeline's query server ({pid}{client.url}) for {data_dir}"
    return (
        f"opened the data dir {data_dir} directly (no pipeline running; `torghut run` cannot "
        "start on it until this ends)"
    )
