"""Serving the dashboard with uvicorn: `agora dashboard` (foreground) and `agora run` (a thread).

A dashboard bound to an address other than loopback without a token is refused: its pages
would be open to the network with nothing guarding the actions.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from typing import Any

from agent.config import Settings
from agent.errors import ConfigError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def is_loopback(host: str) -> bool:
    """Return whether `host` names only this machine (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None, *, option: str = "--host") -> None:
    """Refuse a non-loopback address without a token.

    Raises:
        ConfigError: `host` is not loopback and no token is set (exit code 2).
    """
    if not token and not is_loopback(host):
        raise ConfigError(
            f"{option} {host} is not a loopback address: refusing to serve the dashboard to "
            "the network without a token; set AGORA_DASHBOARD_TOKEN (or bind 127.0.0.1)"
        )


def warm_up() -> float:
    """Load what the pages compute with, before serving; return the seconds it took.

    The live page's buy-and-hold runs the rollout kernel, which a process loads once from its
    on-disk cache (about a second; `agent.env.kernel.ensure_compiled`), and the pages import
    their readers lazily (so `agora --help` stays instant): done here, at start-up, the first
    person to open a page does not wait for them. Idempotent (nothing is loaded twice).
    """
    import importlib

    started = time.perf_counter()
    for module in (
        "agent.service.equity",
        "agent.service.status",
        "agent.env.rollout",
        "agent.plugins.market_data",
        "agent.plugins.registry",
        "agent.rewards.ledger",
        "agent.learn.registry",
        "agent.backtest.report",
    ):
        importlib.import_module(module)
    from agent.env.kernel import ensure_compiled

    ensure_compiled()
    return time.perf_counter() - started


def _uvicorn_server(app: Any) -> Any:
    """Return a quiet uvicorn server (in a thread it leaves signals to the service)."""
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    return uvicorn.Server(config)


def _bind(host: str, port: int, what: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as e:
        sock.close()
        raise ConfigError(f"cannot serve {what} on {host}:{port}: {e.strerror}") from e
    sock.listen(128)
    return sock


class DashboardServer:
    """Serve the dashboard (and /health, /metrics of `runtime`) in a thread on `host:port`.

    The drop-in for `agent.service.http.HealthServer` that `agora run` uses when
    `service.dashboard` is on (port 0 picks a free one).

    Raises:
        ConfigError: the address cannot be bound, or it is not loopback and there is no token.
    """

    def __init__(
        self,
        settings: Settings,
        host: str,
        port: int,
        *,
        runtime: Any = None,
        token: str | None = None,
        option: str = "service.host",
    ) -> None:
        from agent.dashboard.app import create_app, token_from_env

        token = token if token is not None else token_from_env()
        check_bind(host, token, option=option)
        self._socket = _bind(host, port, "the dashboard (service.host, service.port)")
        warm_up()
        self.host = host
        self.port = int(self._socket.getsockname()[1])
        self.app = create_app(settings, runtime=runtime, token=token or "")
        self._server = _uvicorn_server(self.app)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            name="agora-dashboard",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started and self._thread.is_alive():
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.should_exit = True
        self._thread.join(timeout=5)
        self._socket.close()


def service_server(settings: Settings) -> Any:
    """Return the `http_server` factory `agora run` passes to the service when the dashboard
    is on: (runtime, host, port) -> DashboardServer."""

    def build(runtime: Any, host: str, port: int) -> DashboardServer:
        return DashboardServer(settings, host, port, runtime=runtime)

    return build


def serve(settings: Settings, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
    """Serve the dashboard in the foreground until interrupted (`agora dashboard`).

    Raises:
        ConfigError: a non-loopback `host` without AGORA_DASHBOARD_TOKEN, or the port is taken.
    """
    import uvicorn

    from agent.dashboard.app import create_app, token_from_env

    token = token_from_env()
    check_bind(host, token, option="--host")
    sock = _bind(host, port, "the dashboard")
    warm_up()
    app = create_app(settings, token=token or "")
    config = uvicorn.Config(app, log_level="info", lifespan="off")
    print(f"agora dashboard on http://{host}:{sock.getsockname()[1]}", flush=True)
    uvicorn.Server(config).run(sockets=[sock])
