"""A TCP relay from 127.0.0.2 to the broker: the broker's own TLS certificate, reached by a
host name (127.0.0.2) that is not among its SANs (torghut/stack/tls.py names only
127.0.0.1/localhost). Drills of host-name verification use it."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Relay(socketserver.ThreadingTCPServer):
    """Bytes both ways between 127.0.0.2:<port> and `target`."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        super().__init__(("127.0.0.2", 0), _RelayHandler)


class _RelayHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        upstream = socket.create_connection(self.server.target, timeout=30)

        def pump(src: socket.socket, dst: socket.socket) -> None:
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                dst.close()

        t = threading.Thread(target=pump, args=(upstream, self.request), daemon=True)
        t.start()
        pump(self.request, upstream)
        t.join(30)


@contextmanager
def relay_to(bootstrap: str) -> Iterator[str]:
    """Serve a relay to `bootstrap` (host:port); yields the relay's own `127.0.0.2:<port>`."""
    host, port = bootstrap.rsplit(":", 1)
    relay = Relay((host, int(port)))
    threading.Thread(target=relay.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.2:{relay.server_address[1]}"
    finally:
        relay.shutdown()
        relay.server_close()
