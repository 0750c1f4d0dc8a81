"""`torghut k8s register-schemas` against a Confluent-compatible registry on loopback."""

from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from shared.topics import ALL_TOPICS
from torghut import k8s_cli


class FakeRegistry(BaseHTTPRequestHandler):
    """The registry REST calls the Job makes; records what it was asked."""

    config: ClassVar[dict[str, str]] = {}
    versions: ClassVar[dict[str, list[str]]] = {}
    refuse: ClassVar[set[str]] = set()

    def _reply(self, code: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict:
        return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

    def do_GET(self) -> None:
        self._reply(200, sorted(self.versions))

    def do_PUT(self) -> None:
        subject = self.path.removeprefix("/config/")
        self.config[subject] = self._body()["compatibility"]
        self._reply(200, {"compatibility": self.config[subject]})

    def do_POST(self) -> None:
        subject = self.path.removeprefix("/subjects/").removesuffix("/versions")
        if subject in self.refuse:
            self._reply(409, {"error_code": 409, "message": "incompatible schema"})
            return
        schema = self._body()["schema"]
        known = self.versions.setdefault(subject, [])
        if schema not in known:
            known.append(schema)
        self._reply(
            200, {"id": 1 + sorted({s for v in self.versions.values() for s in v}).index(schema)}
        )

    def log_message(self, *args: object) -> None:
        del args


@pytest.fixture
def registry():
    FakeRegistry.config, FakeRegistry.versions, FakeRegistry.refuse = {}, {}, set()
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeRegistry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def avro_dir(tmp_path):
    for full_name in {t.value_schema for t in ALL_TOPICS}:
        namespace, name = full_name.rsplit(".", 1)
        schema = {
            "type": "record",
            "name": name,
            "namespace": namespace,
            "fields": [{"name": "symbol", "type": "string"}],
        }
        (tmp_path / f"{name}.avsc").write_text(json.dumps(schema))
    return tmp_path


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    k8s_cli.add_arguments(parser)
    return k8s_cli.run(parser.parse_args(argv))


def test_every_topic_subject_gets_backward_compatibility_and_its_schema(registry, avro_dir) -> None:
    assert (
        _run(
            [
                "register-schemas",
                "--registry-url",
                registry,
                "--schemas-dir",
                str(avro_dir),
                "--wait",
                "5",
            ]
        )
        == 0
    )
    subjects = {t.subject for t in ALL_TOPICS}
    assert FakeRegistry.config == dict.fromkeys(subjects, "BACKWARD")
    assert set(FakeRegistry.versions) == subjects
    envelope = json.loads(FakeRegistry.versions["torghut.trades.v1-value"][0])
    assert (envelope["namespace"], envelope["name"]) == ("torghut", "Envelope")


def test_registering_twice_is_idempotent(registry, avro_dir) -> None:
    argv = ["register-schemas", "--registry-url", registry, "--schemas-dir", str(avro_dir)]
    assert _run(argv) == 0 and _run(argv) == 0
    assert all(len(v) == 1 for v in FakeRegistry.versions.values())


def test_an_incompatible_schema_fails_the_step(registry, avro_dir, capsys) -> None:
    FakeRegistry.refuse = {"ta.signals.v1-value"}
    assert (
        _run(["register-schemas", "--registry-url", registry, "--schemas-dir", str(avro_dir)]) == 1
    )
    assert "HTTP 409" in capsys.readouterr().err


def test_a_missing_schema_file_names_the_record(registry, tmp_path, capsys) -> None:
    assert (
        _run(["register-schemas", "--registry-url", registry, "--schemas-dir", str(tmp_path)]) == 1
    )
    assert "torghut.Envelope" in capsys.readouterr().err


def test_an_unreachable_registry_fails_with_a_clear_message(capsys, avro_dir) -> None:
    assert (
        _run(
            [
                "register-schemas",
                "--registry-url",
                "http://127.0.0.1:9",
                "--schemas-dir",
                str(avro_dir),
                "--wait",
                "0",
            ]
        )
        == 1
    )
    assert "did not answer" in capsys.readouterr().err
