"""The data directory's chain node: who runs it, where it answers, and whether it is alive.

One chain per data directory. The process that runs the directory's node (the service, or a
command when no service runs) records it in `data/chain/node.json`: the node's URL and pid and
the pid of the process that owns it (starts it, and stops it cleanly). Every other process
attaches to that node instead of starting a second one on the same state. A record is believed
only after a liveness check (the pid is alive, is the node, and answers JSON-RPC); a record
whose process is gone is stale and ignored. A node that is alive but does not answer within
the deadline is reported, never replaced: two nodes writing one state file would lose data.

`NodeLock` (an exclusive `flock` with the holder's pid in it) is held by whoever owns the node
(or, for the embedded chain, has the chain file open) for as long as it does.

Every JSON-RPC connection Agora makes goes through `http_web3`: one deadline per call
(`chain.rpc_timeout_s`) and no hidden retries, so a hung node costs one deadline, not five.

ChainError
├── ChainLocked   another process owns the chain and does not serve it
└── ChainLost     the chain the store's records live on is missing, replaced or reset
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agent.errors import ChainError

NODE_FILE = "node.json"
RECOVER_HINT = "`agora chain recover` rebuilds it from the store (and says what that cannot prove)"
DEFAULT_RPC_TIMEOUT_S = 10.0


class ChainLocked(ChainError):
    """Another process owns the chain (holds its lock) and serves no node to attach to."""


class ChainLost(ChainError):
    """The chain the store's records live on is missing, replaced, reset or corrupt."""


def chain_dir(data_dir: Path | str) -> Path:
    """Return the directory of the data directory's chain files (`data/chain`)."""
    return Path(data_dir) / "chain"


def anvil_state_path(data_dir: Path | str) -> Path:
    """Return the anvil node's state file of a data directory (`data/anvil-state.json`)."""
    return Path(data_dir) / "anvil-state.json"


# --- processes ----------------------------------------------------------------------------------
def process_alive(pid: int) -> bool:
    """Return whether `pid` is a live process (a zombie is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return process_state(pid) not in ("Z", "X")


def process_state(pid: int) -> str | None:
    """Return the process's state letter from /proc (R, S, T for stopped, Z…), or None."""
    with contextlib.suppress(OSError, IndexError):
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    return None


def is_our_anvil(pid: int, port: int) -> bool:
    """Return whether `pid` is an anvil listening on `port` (read from its command line)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(argv) and argv[0].endswith(b"anvil") and str(port).encode() in argv


def command_name() -> str:
    """Return this process's command for humans: `agora run`, `agora audit`…"""
    argv = sys.argv or ["python"]
    program = Path(argv[0]).name or "python"
    if program in {"__main__.py", "-c", "-m"}:
        program = "agora"
    verb = next((a for a in argv[1:] if a.isidentifier()), "")
    return f"{program} {verb}".strip()


# --- JSON-RPC with a deadline -------------------------------------------------------------------
def http_web3(url: str, timeout_s: float = DEFAULT_RPC_TIMEOUT_S) -> Any:
    """Return a `Web3` over HTTP whose every call fails after `timeout_s` (no retries)."""
    from web3 import Web3

    provider = Web3.HTTPProvider(
        url, request_kwargs={"timeout": timeout_s}, exception_retry_configuration=None
    )
    return Web3(provider)


def answers(url: str, timeout_s: float) -> int | None:
    """Return the chain id the node at `url` answers with within `timeout_s`, or None."""
    from web3.exceptions import Web3Exception

    try:
        return int(http_web3(url, timeout_s).eth.chain_id)
    except (OSError, Web3Exception, ValueError):
        return None


# --- the record ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class NodeRecord:
    """The node serving a data directory's chain.

    Attributes:
        backend: `anvil` or `embedded` (the embedded chain served by the process holding it).
        url: where it answers JSON-RPC (loopback).
        pid: the process answering (the anvil node; for embedded, the owner itself).
        owner_pid: the process that owns the node: started it and stops it.
        owner: that process's command (`agora run`).
        state_path: the anvil state file it loads and writes (None: not persisted).
        started_ms: when it was recorded.
    """

    backend: str
    url: str
    pid: int
    owner_pid: int
    owner: str
    state_path: str | None
    started_ms: int

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1].split("/", 1)[0])

    def describe(self) -> str:
        """Return the node for humans: `anvil pid 12 at http://… (owned by agora run, pid 10)`."""
        return (
            f"the {self.backend} node at {self.url} (pid {self.pid}, started by {self.owner} "
            f"pid {self.owner_pid})"
        )


def record_path(data_dir: Path | str) -> Path:
    """Return the node record of a data directory (`data/chain/node.json`)."""
    return chain_dir(data_dir) / NODE_FILE


def read_record(data_dir: Path | str) -> NodeRecord | None:
    """Return the recorded node, or None (no record, or an unreadable one)."""
    try:
        data = json.loads(record_path(data_dir).read_text())
        return NodeRecord(**{k: data[k] for k in NodeRecord.__dataclass_fields__})
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_record(data_dir: Path | str, record: NodeRecord) -> None:
    """Record the node (atomically: a reader sees the old record or the new one)."""
    path = record_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(json.dumps(asdict(record), sort_keys=True) + "\n")
    os.replace(temporary, path)


def clear_record(data_dir: Path | str, *, url: str) -> None:
    """Remove the record if it still names the node at `url` (a newer one is left alone)."""
    record = read_record(data_dir)
    if record is not None and record.url == url:
        with contextlib.suppress(FileNotFoundError):
            record_path(data_dir).unlink()


def live_record(data_dir: Path | str, backend: str, *, timeout_s: float) -> NodeRecord | None:
    """Return the recorded node of `backend` if it is alive and answers; None if stale.

    Raises:
        ChainError: the node's process is alive but does not answer within `timeout_s` (a hung
            node is reported, never replaced by a second node on the same state).
    """
    record = read_record(data_dir)
    if record is None or record.backend != backend or not process_alive(record.pid):
        return None
    if backend == "anvil" and not is_our_anvil(record.pid, record.port):
        return None  # the pid was reused by another program
    if answers(record.url, timeout_s) is None:
        if not process_alive(record.pid):
            return None
        stopped = " (the process is stopped)" if process_state(record.pid) == "T" else ""
        raise ChainError(
            f"{record.describe()} does not answer within {timeout_s:g} s{stopped}: the chain "
            "waits for it (no second node is started on the same state)"
        )
    return record


# --- the lock -----------------------------------------------------------------------------------
class NodeLock:
    """An exclusive `flock` on `path`, with the holder's pid and command in the file.

    Args:
        path: the lock file (created if missing).
        timeout_s: how long to wait for another holder (0: fail at once).
        what: the thing locked, for the error message.

    Raises:
        ChainLocked: another process holds it after `timeout_s`.
    """

    def __init__(self, path: Path, *, timeout_s: float = 3.0, what: str = "the chain") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = self.holder()
                    os.close(self._fd)
                    self._fd = -1
                    raise ChainLocked(f"{what} is in use by {holder}") from None
                time.sleep(0.05)
        os.ftruncate(self._fd, 0)
        note = {"pid": os.getpid(), "command": command_name()}
        os.pwrite(self._fd, (json.dumps(note) + "\n").encode(), 0)

    def holder(self) -> str:
        """Return who holds the lock, as the holder wrote it (`pid 12 (agora run)`)."""
        note = holder_note(self.path) if self._fd < 0 else _read_note(self._fd)
        if "pid" not in note:
            return "another process"
        return f"pid {note['pid']} ({note.get('command') or '?'})"

    @property
    def held(self) -> bool:
        return self._fd >= 0

    def release(self) -> None:
        """Release the lock (idempotent)."""
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1


def _read_note(fd: int) -> dict[str, Any]:
    try:
        return dict(json.loads(os.pread(fd, 4096, 0).decode() or "{}"))
    except (OSError, ValueError):
        return {}


def holder_note(path: Path) -> dict[str, Any]:
    """Return what the holder of the lock file `path` wrote in it (empty when free or unknown)."""
    try:
        return dict(json.loads(Path(path).read_text() or "{}"))
    except (OSError, ValueError):
        return {}
