"""Serve an in-process chain over JSON-RPC on loopback, so other processes can attach to it.

The embedded chain lives in the process that holds its file (the service). Other processes of
the same data directory (`agora audit verify`, `agora rewards`, `agora strategies …`) reach it
through this small threaded HTTP server instead of opening the file: they see the same chain,
and only its holder ever writes the file.

Requests go through eth-tester's own request and result formatting (the middleware web3 applies
in-process), then are written as standard JSON-RPC: quantities as hex, bytes as 0x-hex. A
revert is answered as nodes answer it (code 3, "execution reverted: <reason>"), so the
client's web3 raises `ContractLogicError` with the reason, as it does against anvil.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from agent.errors import ChainError
from agent.serving import ServedInThread

MAX_REQUEST_BYTES = 16 * 1024 * 1024


def to_json_rpc(value: Any) -> Any:
    """Return a provider result as JSON-RPC data: ints as hex quantities, bytes as 0x-hex."""
    if isinstance(value, bool) or value is None or isinstance(value, str | float):
        return value
    if isinstance(value, int):
        return hex(value)
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, Mapping):
        return {str(k): to_json_rpc(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json_rpc(v) for v in value]
    return str(value)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_fn: Any


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_REQUEST_BYTES:
            self._send(413, {"error": "request too large"})
            return
        try:
            body = json.loads(self.rfile.read(length) or b"null")
        except ValueError:
            self._send(200, _error(None, -32700, "parse error"))
            return
        if isinstance(body, list):
            self._send(200, [self._answer(item) for item in body])
        else:
            self._send(200, self._answer(body))

    def _answer(self, request: Any) -> dict[str, Any]:
        if not isinstance(request, dict) or not isinstance(request.get("method"), str):
            return _error(None, -32600, "invalid request")
        ident = request.get("id")
        try:
            response = self.server.request_fn(request["method"], request.get("params") or [])
        except Exception as e:
            message = str(e.args[0] if e.args else e)
            if "revert" in type(e).__name__.lower() or type(e).__name__ == "TransactionFailed":
                if not message.startswith("execution reverted"):
                    message = f"execution reverted: {message}"
                return _error(ident, 3, message)
            return _error(ident, -32603, f"{type(e).__name__}: {message}")
        answer: dict[str, Any] = {"jsonrpc": "2.0", "id": ident}
        if "error" in response:
            answer["error"] = to_json_rpc(response["error"])
        else:
            answer["result"] = to_json_rpc(response.get("result"))
        return answer

    def _send(self, code: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass


def _error(ident: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": ident, "error": {"code": code, "message": message}}


class ChainServer(ServedInThread):
    """Serve `provider` (an in-process web3 provider) on `host`, a free port, in a thread.

    Raises:
        ChainError: no port could be bound.
    """

    def __init__(self, provider: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        from web3 import Web3

        bare = Web3(provider, middleware=[])  # only the provider's own formatting
        try:
            server = _Server((host, port), _Handler)
        except OSError as e:
            raise ChainError(f"cannot serve the chain on {host}:{port}: {e.strerror}") from e
        server.request_fn = provider.request_func(bare, bare.middleware_onion)
        super().__init__(server, host, "agora-chain-rpc")
