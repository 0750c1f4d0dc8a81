"""A TCP relay for drills that need something between a client and an engine:

- `relay_to`: the broker reached by a host name (127.0.0.2) that is not among the SANs of
  its TLS certificate (torghut/stack/tls.py names only 127.0.0.1/localhost): drills of
  host-name verification;
- `slow_store`: MinIO answering chosen requests late. The commit-failure drill
  (tests/integration/test_ta_outages.py) holds the JobManager's completion of the
  multipart upload of `.../_metadata` (the last write of a checkpoint) so that checkpoints
  complete after the sink's transaction timeout.
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class Relay(socketserver.ThreadingTCPServer):
    """Bytes both ways between `host`:<port> and `target`. A request from the client whose
    first line starts with `method` and contains `path_part` waits `delay_s` (0: none)
    before it is passed on, and is counted in `held`."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        target: tuple[str, int],
        host: str = "127.0.0.1",
        method: bytes = b"",
        path_part: bytes = b"",
    ) -> None:
        self.target, self.method, self.path_part = target, method, path_part
        self.delay_s = 0.0
        self.held = 0
        super().__init__((host, 0), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def holds(self, chunk: bytes) -> bool:
        """Whether `chunk` (from the client) begins a request to hold back now. An HTTP/1.1
        client sends a request only after the previous response, so a request's head
        begins a read."""
        first = chunk.split(b"\r\n", 1)[0]
        return self.delay_s > 0 and first.startswith(self.method) and self.path_part in first


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server: Relay = self.server  # type: ignore[assignment]
        upstream = socket.create_connection(server.target, timeout=120)

        def back(src: socket.socket, dst: socket.socket) -> None:
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                dst.close()

        t = threading.Thread(target=back, args=(upstream, self.request), daemon=True)
        t.start()
        try:
            while data := self.request.recv(65536):
                if server.holds(data):
                    server.held += 1
                    time.sleep(server.delay_s)
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            upstream.close()
        t.join(30)


@contextmanager
def _serving(relay: Relay) -> Iterator[Relay]:
    threading.Thread(target=relay.serve_forever, daemon=True).start()
    try:
        yield relay
    finally:
        relay.shutdown()
        relay.server_close()


@contextmanager
def relay_to(bootstrap: str) -> Iterator[str]:
    """Serve a relay to `bootstrap` (host:port); yields the relay's own `127.0.0.2:<port>`."""
    host, port = bootstrap.rsplit(":", 1)
    with _serving(Relay((host, int(port)), host="127.0.0.2")) as relay:
        yield f"127.0.0.2:{relay.server_address[1]}"


@contextmanager
def slow_store(endpoint: str, method: bytes, path_part: bytes) -> Iterator[Relay]:
    """Serve a relay in front of `endpoint` (http://host:port) that holds back the requests
    matching `method` and `path_part` by its `delay_s` (set it to start holding)."""
    host, port = endpoint.removeprefix("http://").rstrip("/").rsplit(":", 1)
    with _serving(Relay((host, int(port)), method=method, path_part=path_part)) as relay:
        yield relay
