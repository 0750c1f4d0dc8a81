"""An HTTP relay in front of MinIO that holds back chosen requests: a checkpoint store that
answers slowly. The commit-failure drill (tests/integration/test_ta_outages.py) holds the
JobManager's completion of the multipart upload of `.../_metadata` (the last write of a
checkpoint) so that checkpoints
complete after the sink's transaction timeout."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class SlowStore(socketserver.ThreadingTCPServer):
    """Bytes both ways between 127.0.0.1:<port> and `target`; a request whose first line
    starts with `method` and contains `path_part` waits `delay_s` (0: none) before it is
    passed on, and is counted in `held`."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, target: tuple[str, int], method: bytes, path_part: bytes) -> None:
        self.target, self.method, self.path_part = target, method, path_part
        self.delay_s = 0.0
        self.held = 0
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def holds(self, chunk: bytes) -> bool:
        """Whether `chunk` (from the client) begins a request to hold back now. An HTTP/1.1
        client sends a request only after the previous response, so a request's head
        begins a read."""
        first = chunk.split(b"\r\n", 1)[0]
        return self.delay_s > 0 and first.startswith(self.method) and self.path_part in first


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server: SlowStore = self.server  # type: ignore[assignment]
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
def slow_store(endpoint: str, method: bytes, path_part: bytes) -> Iterator[SlowStore]:
    """Serve a `SlowStore` in front of `endpoint` (http://host:port)."""
    host, port = endpoint.removeprefix("http://").rstrip("/").rsplit(":", 1)
    store = SlowStore((host, int(port)), method, path_part)
    threading.Thread(target=store.serve_forever, daemon=True).start()
    try:
        yield store
    finally:
        store.shutdown()
        store.server_close()
