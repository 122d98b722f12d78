"""The anvil node Agora runs: find the binary, start and stop it, attach to one left running.

Everything that starts, stops or signals an anvil process lives here. `AnvilBackend` starts a
node on a free loopback port (loading and, on a clean stop, writing its state file);
`AttachedAnvil` reconnects to a node an earlier service run started and never stopped (killed
with SIGKILL), and stops it as that run would have.
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
from agent.errors import ChainError

ANVIL_PACKAGE_BIN = Path("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")
REPO_ROOT = Path(__file__).resolve().parents[2]


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

    With a state file, anvil loads it on start and writes it on a clean stop, so the chain
    keeps its contracts and balances across restarts.
    """

    name = "anvil"

    def __init__(
        self,
        *,
        binary: Path | None = None,
        state_path: Path | None = None,
        startup_timeout_s: float = 30.0,
    ) -> None:
        self.binary = find_anvil(binary)
        self.state_path = state_path
        self.persistent = state_path is not None
        self.port = free_loopback_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = self._start(startup_timeout_s)
        w3 = Web3(Web3.HTTPProvider(self.url, request_kwargs={"timeout": 60}))
        self._accounts = [Web3.to_checksum_address(a) for a in w3.eth.accounts]
        super().__init__(w3, self._accounts[0])

    @property
    def accounts(self) -> list[str]:
        return list(self._accounts)

    def _start(self, timeout_s: float) -> subprocess.Popen[bytes]:
        command = [str(self.binary), "--host", "127.0.0.1", "--port", str(self.port), "--silent"]
        if self.state_path is not None:
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
            command += ["--state", str(self.state_path)]
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        deadline = time.monotonic() + timeout_s
        probe = Web3(
            Web3.HTTPProvider(f"http://127.0.0.1:{self.port}", request_kwargs={"timeout": 2})
        )
        while time.monotonic() < deadline:
            if process.poll() is not None:
                err = process.stderr.read().decode(errors="replace") if process.stderr else ""
                raise ChainError(
                    f"anvil exited with code {process.returncode}: {err.strip()[-500:]}"
                )
            with contextlib.suppress(OSError, Web3Exception, ValueError):
                probe.eth.chain_id  # noqa: B018
                return process
            time.sleep(0.05)
        process.kill()
        raise ChainError(f"anvil did not answer on 127.0.0.1:{self.port} within {timeout_s:.0f} s")

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stop the node gracefully (anvil writes its state file on SIGTERM)."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def close(self) -> None:
        self.stop()
        if self.process.stderr:
            self.process.stderr.close()


class AttachedAnvil(ChainBackend):
    """An anvil node this service started in an earlier run that ended without stopping it.

    A service killed with SIGKILL leaves its anvil running (in its own session) with the
    chain's newest state in memory, newer than the state file; attaching to it keeps that
    state. `close` stops it as the service would have (SIGTERM, which writes the state file).
    """

    name = "anvil"
    persistent = True

    def __init__(self, url: str, pid: int) -> None:
        w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 60}))
        self._accounts = [Web3.to_checksum_address(a) for a in w3.eth.accounts]
        super().__init__(w3, self._accounts[0])
        self.url = url
        self.pid = pid

    @property
    def accounts(self) -> list[str]:
        return list(self._accounts)

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and process_alive(self.pid):
                time.sleep(0.05)
            if process_alive(self.pid):
                os.kill(self.pid, signal.SIGKILL)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):
        if stat.read_text().split(")")[-1].split()[0] == "Z":
            return False  # a zombie: exited, waiting to be reaped
    return True


def is_our_anvil(pid: int, port: int) -> bool:
    """Return whether `pid` is an anvil listening on `port` (read from its command line)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(argv) and argv[0].endswith(b"anvil") and str(port).encode() in argv
