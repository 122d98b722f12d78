"""A stdlib HTTP server answering on its own thread until closed: what the service's health
endpoint and the embedded chain's JSON-RPC endpoint share (each binds its own server, with its
own error for an address it cannot bind)."""

from __future__ import annotations

import threading
from http.server import HTTPServer


class ServedInThread:
    """Serve `server` (already bound to `host`) on a daemon thread named `name`.

    Attributes:
        host: the address it was bound to.
        port: the port it got (the one asked for, or a free one for port 0).
    """

    def __init__(self, server: HTTPServer, host: str, name: str) -> None:
        self._server = server
        self.host = host
        self.port = int(server.server_address[1])
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.1,), name=name, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
