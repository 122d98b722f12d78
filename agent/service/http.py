"""The health and metrics endpoint: stdlib `http.server` on a loopback port, in a thread.

    GET /health   JSON: status, last tick, last bar, lag in bars, chain (reachable, key, last
                  bar replicated), live model id, outbox size, decisions, uptime. HTTP 200
                  while the service decides bars ('ok', or 'degraded' while the chain is
                  down), 503 once it is stopping or failed.
    GET /metrics  the Prometheus text format (0.0.4): ticks, decisions, trades, skipped bars,
                  feed errors, strategy failures by strategy, chain errors, epochs paid,
                  outbox size, pending bars, chain reachable, portfolio value, exposure, lag,
                  last bar and tick times, decision latency (summary).

Both answer from memory (the runtime's metrics and state), never waiting for a running job.
"""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from agent.errors import ConfigError
from agent.serving import ServedInThread

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def health_response(runtime: Any) -> tuple[int, bytes, str]:
    """Return (status code, body, content type) of /health: 503 once stopping or failed.

    The one rendering of /health: this server and the dashboard (`agent.dashboard`) serve it.
    """
    health = runtime.health()
    code = 503 if health["status"] in ("stopping", "failed") else 200
    return code, json.dumps(health, sort_keys=True).encode(), "application/json"


def metrics_response(runtime: Any) -> tuple[int, bytes, str]:
    """Return (status code, body, content type) of /metrics: the Prometheus text format."""
    return 200, runtime.metrics.render().encode(), PROMETHEUS_CONTENT_TYPE


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    runtime: Any


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # requests are not events worth a log line

    def do_GET(self) -> None:
        runtime = self.server.runtime
        path = self.path.split("?", 1)[0]
        if path == "/health":
            self._send(*health_response(runtime))
        elif path == "/metrics":
            self._send(*metrics_response(runtime))
        elif path == "/":
            self._send(200, b"agora service: /health, /metrics\n", "text/plain; charset=utf-8")
        else:
            self._send(404, b'{"error": "not found"}', "application/json")

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        try:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass


class HealthServer(ServedInThread):
    """Serve /health and /metrics for a runtime on `host:port` (port 0 picks a free one).

    Raises:
        ConfigError: the address cannot be bound (in use, or not a local address).
    """

    def __init__(self, runtime: Any, host: str, port: int) -> None:
        try:
            server = _Server((host, port), _Handler)
        except OSError as e:
            raise ConfigError(
                f"cannot serve health and metrics on {host}:{port} (service.host, "
                f"service.port): {e.strerror}"
            ) from e
        server.runtime = runtime
        super().__init__(server, host, "agora-http")
