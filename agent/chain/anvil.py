"""The anvil node Agora runs: find the binary, start it, stop it without losing its state.

Everything that starts, stops or signals an anvil process lives here. `AnvilBackend` starts a
node on a free loopback port; with a state file, anvil loads it on start, writes it every
`chain.anvil_state_interval_s` seconds (`--state-interval`) and on a clean stop, so a node that
dies loses at most the last few seconds, which the service replays from its records. Which
process starts the data directory's node, and who attaches to it, is decided in
`agent.chain.backends.connect`.

Stopping never uses SIGKILL: it would lose what anvil has not written yet, or leave a state
file half-written. A node that does not stop in time (a paused one, SIGSTOP) keeps its SIGTERM
pending and writes its state and exits when it runs again.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from web3 import Web3
from web3.exceptions import Web3Exception

from agent.chain.backends import ChainBackend
from agent.chain.node import (
    DEFAULT_RPC_TIMEOUT_S,
    RECOVER_HINT,
    ChainLost,
    http_web3,
    is_our_anvil,
    process_alive,
    process_state,
)
from agent.errors import ChainError

ANVIL_PACKAGE_BIN = Path("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_STATE_INTERVAL_S = 2
__all__ = [
    "AnvilBackend",
    "find_anvil",
    "free_loopback_port",
    "is_our_anvil",
    "process_alive",
    "stop_process",
]


def free_loopback_port() -> int:
    """Return a TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_anvil(explicit: Path | None = None) -> Path:
    """Locate the anvil binary: the configured path, the npm package in contracts/, or PATH."""
    candidates = [explicit] if explicit else []
    candidates.append(REPO_ROOT / "contracts" / ANVIL_PACKAGE_BIN)
    found = shutil.which("anvil")
    if found:
        candidates.append(Path(found))
    for candidate in candidates:
        if candidate and candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise ChainError(
        "anvil not found: run `make contracts-install` (npm ci in contracts/) or set "
        "chain.anvil_path"
    )


class AnvilBackend(ChainBackend):
    """A local anvil node that Agora starts on a free loopback port and stops on close.

    Args:
        binary: the anvil binary (default: `find_anvil`).
        state_path: the state file anvil loads at start and writes periodically and at a clean
            stop (None: the chain lives in memory only).
        startup_timeout_s: how long the node may take to answer.
        state_interval_s: how often anvil writes its state file.
        rpc_timeout_s: the deadline of every JSON-RPC call.
    """

    name = "anvil"

    def __init__(
        self,
        *,
        binary: Path | None = None,
        state_path: Path | None = None,
        startup_timeout_s: float = 30.0,
        state_interval_s: int = DEFAULT_STATE_INTERVAL_S,
        rpc_timeout_s: float = DEFAULT_RPC_TIMEOUT_S,
    ) -> None:
        self.binary = find_anvil(binary)
        self.state_path = state_path
        self.state_interval_s = state_interval_s
        self.persistent = state_path is not None
        self.created_state = state_path is not None and not state_path.exists()
        """Whether the node starts from no state file (so any file at close is its own)."""
        self.restored = state_path is not None and not self.created_state
        self.port = free_loopback_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = self._start(startup_timeout_s)
        self.node_marker = f"{self.process.pid}"
        w3 = http_web3(f"http://127.0.0.1:{self.port}", rpc_timeout_s)
        try:
            self._accounts = [Web3.to_checksum_address(a) for a in w3.eth.accounts]
        except (OSError, Web3Exception, ValueError) as e:
            self.stop()
            raise ChainError(f"the anvil node at {self.url} did not list its accounts: {e}") from e
        super().__init__(w3, self._accounts[0])

    @property
    def accounts(self) -> list[str]:
        return list(self._accounts)

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    def _start(self, timeout_s: float) -> subprocess.Popen[bytes]:
        command = [str(self.binary), "--host", "127.0.0.1", "--port", str(self.port), "--silent"]
        if self.state_path is not None:
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
            command += ["--state", str(self.state_path)]
            command += ["--state-interval", str(self.state_interval_s)]
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        deadline = time.monotonic() + timeout_s
        probe = http_web3(f"http://127.0.0.1:{self.port}", 2.0)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                err = process.stderr.read().decode(errors="replace") if process.stderr else ""
                if self.state_path is not None and "--state" in err:
                    raise ChainLost(
                        f"anvil cannot load its state file {self.state_path} (corrupt?): "
                        f"{err.strip().splitlines()[0][-300:]}; {RECOVER_HINT}"
                    )
                raise ChainError(
                    f"anvil exited with code {process.returncode}: {err.strip()[-500:]}"
                )
            with contextlib.suppress(OSError, Web3Exception, ValueError):
                probe.eth.chain_id  # noqa: B018
                return process
            time.sleep(0.05)
        process.kill()  # it never answered: nothing of it is worth keeping
        process.wait()
        raise ChainError(f"anvil did not answer on 127.0.0.1:{self.port} within {timeout_s:.0f} s")

    def node_dead(self) -> bool:
        return self.process.poll() is not None

    def stop(self, timeout_s: float = 15.0) -> bool:
        """Stop the node with SIGTERM (anvil writes its state file); return whether it exited."""
        if self.process.poll() is not None:
            return True
        stopped = stop_process(self.pid, timeout_s)
        if stopped:
            self.process.wait()
        return stopped

    def close(self, timeout_s: float = 15.0) -> None:
        stopped = self.stop(timeout_s)
        if self.process.stderr:
            self.process.stderr.close()
        self.node_left_running = not stopped
        if stopped and self.discard_new_state and self.created_state and self.state_path:
            self.state_path.unlink(missing_ok=True)  # an empty chain it wrote, not the lost one
        self.run_cleanups(node_stopped=stopped)


def stop_process(pid: int, timeout_s: float) -> bool:
    """Send SIGTERM to a node and wait up to `timeout_s` for it to exit; return whether it did.

    A paused node (SIGSTOP) is not waited for: its SIGTERM stays pending, and it writes its
    state and exits once it is resumed. Nothing here sends SIGKILL.
    """
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if process_state(pid) == "T":
        return False
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not process_alive(pid):  # exited (a child of ours stays a zombie until reaped)
            return True
        time.sleep(0.02)
    return not process_alive(pid)
