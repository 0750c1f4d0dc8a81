"""The pure parts of the local query server (torghut/clickhouse/local.py): statuses and
codes of ClickHouse's messages, formats, the registration file, the data dir lock probe.
The server itself runs against the real engine in
tests/integration/test_clickhouse_query_server.py."""

from __future__ import annotations

import base64
import fcntl
import os
import stat
from pathlib import Path

import pytest

from torghut.clickhouse.local import (
    QueryServer,
    Registration,
    _basic_auth_password,
    content_type,
    data_dir_holder,
    error_status,
    output_format,
    pid_alive,
    read_registration,
    registration_path,
    remove_registration,
    write_registration,
)

# messages as chdb-core 26.9 writes them
SYNTAX = (
    "Code: 62. DB::Exception: Syntax error: failed at position 55 (end of query): (close > 1. "
    "Unmatched parentheses: '(' at position 45 is never closed. (SYNTAX_ERROR)"
)
UNKNOWN_TABLE = (
    "Code: 60. DB::Exception: Unknown table expression identifier 'torghut.nope'. Maybe you "
    "meant system.one? In scope SELECT * FROM torghut.nope. (UNKNOWN_TABLE)"
)
THROW = (
    "Code: 395. DB::Exception: Value passed to 'throwIf' function is non-zero: while executing "
    "'FUNCTION throwIf(1_UInt8 :: 1) -> throwIf(1_UInt8) UInt8 : 2'. "
    "(FUNCTION_THROW_IF_VALUE_IS_NON_ZERO)"
)


def test_statuses_and_codes_follow_clickhouses_http_interface() -> None:
    assert error_status(SYNTAX) == (400, 62)
    assert error_status(UNKNOWN_TABLE) == (404, 60)
    assert error_status(THROW) == (500, 395)
    assert error_status("Code: 516. DB::Exception: x. (AUTHENTICATION_FAILED)") == (403, 516)
    assert error_status("Code: 194. DB::Exception: x. (REQUIRED_PASSWORD)") == (401, 194)
    # not ClickHouse's: STD_EXCEPTION, 500
    assert error_status("'NoneType' object has no attribute 'query'") == (500, 1001)


def test_the_answers_format_is_the_trailing_format_clause_else_the_default() -> None:
    assert output_format("SELECT 1", "TabSeparated") == "TabSeparated"
    assert output_format("SELECT 1 FORMAT JSONEachRow", "TabSeparated") == "JSONEachRow"
    assert output_format("select 1 format csv ;\n", "TabSeparated") == "csv"
    assert output_format("SELECT 'FORMAT CSV' AS s", "TSV") == "TSV"
    assert content_type("TabSeparated").startswith("text/tab-separated-values")
    assert content_type("CSVWithNames").endswith("header=present")
    assert content_type("JSONEachRow").startswith("application/json")
    assert content_type("Parquet") == "application/octet-stream"
    assert content_type("PrettyCompactMonoBlock").startswith("text/plain")


def test_the_registration_is_written_for_its_owner_only_and_removed_only_if_still_ours(
    tmp_path: Path,
) -> None:
    old = os.umask(0)  # even a permissive umask leaves it 0600
    try:
        reg = Registration("http://127.0.0.1:1/", os.getpid(), "t0k", "now", str(tmp_path))
        path = write_registration(tmp_path, reg)
    finally:
        os.umask(old)
    assert path == registration_path(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_registration(tmp_path) == reg
    newer = Registration("http://127.0.0.1:2/", os.getpid(), "other", "later", str(tmp_path))
    write_registration(tmp_path, newer)
    assert not remove_registration(tmp_path, reg)  # a newer server's: kept
    assert remove_registration(tmp_path, newer) and not path.exists()
    path.write_text("{not json")
    assert read_registration(tmp_path) is None


def test_the_data_dir_holder_is_whoever_holds_clickhouses_status_lock(tmp_path: Path) -> None:
    assert data_dir_holder(tmp_path) is None  # no status file: never opened
    status = tmp_path / "status"
    status.write_text("PID: 4242\nStarted at: 2026-12-07 20:59:13\nRevision: 54515\n")
    assert data_dir_holder(tmp_path) is None  # left by a process that ended
    fd = os.open(status, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as the engine holds it
        assert data_dir_holder(tmp_path) == 4242
    finally:
        os.close(fd)
    assert data_dir_holder(tmp_path) is None


def test_pid_alive() -> None:
    assert pid_alive(os.getpid())
    assert not pid_alive(0) and not pid_alive(-1)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5", "::", "example.com"])
def test_the_server_binds_to_loopback_only(host: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="loopback only"):
        QueryServer(object(), tmp_path, host=host)  # type: ignore[arg-type]


def test_the_token_may_come_as_the_basic_auth_password() -> None:
    header = "Basic " + base64.b64encode(b"default:s3cret").decode()
    assert _basic_auth_password(header) == "s3cret"
    assert _basic_auth_password("Bearer s3cret") == ""
    assert _basic_auth_password("Basic !!!") == ""
