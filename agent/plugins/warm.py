"""Warm starts: one sandboxed zygote per plugin, and a fresh confined process forked per call.

A `Zygote` is started through the one launcher (`child_command(..., zygote=True)`), inside the
same bubblewrap boundary as a cold child, and waits with numpy and pandas imported; it never
loads plugin code (`agent.plugins._zygote` says why). For each call the parent makes three
pipes and sends the zygote their far ends over a Unix socket (SCM_RIGHTS); the zygote hands
them to a process tree it forked and confined in advance for the next call (new mount, PID and
IPC namespaces, a fresh tmpfs, no /proc), whose runner drops every capability and then
speaks the cold child's protocol on those pipes, so the parent reads its reply exactly as it
reads a cold child's. The parent still measures every deadline and ends
every call: it asks the zygote to kill the call's PID namespace, and waits until it is gone.

Zygotes live in a small registry in this process, keyed by the plugin's location, its code
hash, its limits and the sandbox mode; a zygote is closed when its plugin's code hash changes,
when it dies, and at exit. Anything wrong with a zygote is a `ZygoteError`, on which the caller
falls back to a cold start.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any

from agent.errors import PluginError
from agent.plugins import _child, _zygote
from agent.plugins.launcher import child_command

START_TIMEOUT_S = 30.0
"""Longest wait for a zygote to come up (its interpreter, numpy and pandas)."""
CONTROL_TIMEOUT_S = 10.0
"""Longest wait for a zygote to answer a control message (start a call, confirm an exit)."""
_MAX_CONTROL_BYTES = 4_096


class ZygoteError(PluginError):
    """A zygote could not start, or stopped answering; the call falls back to a cold start."""


@dataclass(frozen=True)
class WarmCall:
    """The parent's ends of one call's streams (request, reply, stderr), and the call's id."""

    call_id: int
    request_fd: int
    reply_fd: int
    stderr_fd: int


class Zygote:
    """One sandboxed zygote: start calls from it, wait for their exit, kill them."""

    def __init__(self, mode: str, read_only: list[str], tmpfs_mb: int) -> None:
        self.host_dir = tempfile.mkdtemp(prefix="agora-zygote-")
        self.lock = threading.Lock()
        """Held by the one call in flight (a busy zygote sends other calls to a cold start)."""
        self._next_id = 0
        self._exits: dict[int, int] = {}
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            command = child_command(mode, self.host_dir, read_only, tmpfs_mb, zygote=True)
            self.proc = subprocess.Popen(
                command.argv,
                stdin=theirs.fileno(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=command.cwd,
                env=command.env,
                close_fds=True,
                start_new_session=True,
            )
        except (OSError, PluginError) as e:
            ours.close()
            shutil.rmtree(self.host_dir, ignore_errors=True)
            raise ZygoteError(f"the zygote could not start: {e}") from e
        finally:
            theirs.close()
        self.sock = ours
        try:
            self._expect(lambda m: m.get("op") == "ready", START_TIMEOUT_S)
        except ZygoteError:
            self.close()
            raise

    def alive(self) -> bool:
        """Whether the zygote's sandbox is still running."""
        return self.proc.poll() is None

    def _receive(self, timeout_s: float) -> dict[str, Any]:
        ready, _, _ = select.select([self.sock], [], [], max(0.0, timeout_s))
        if not ready:
            raise ZygoteError(f"the zygote did not answer within {timeout_s:g} s")
        try:
            blob = self.sock.recv(_MAX_CONTROL_BYTES)
        except OSError as e:
            raise ZygoteError(f"the zygote's socket failed: {e}") from e
        if not blob:
            raise ZygoteError("the zygote exited")
        try:
            return _child.parse_header(blob)
        except ValueError as e:
            raise ZygoteError(f"the zygote sent {e}") from e

    def _expect(self, wanted: Any, timeout_s: float) -> dict[str, Any]:
        """Read control messages until one satisfies `wanted`, recording exits on the way."""
        deadline = time.monotonic() + timeout_s
        while True:
            message = self._receive(deadline - time.monotonic())
            if message.get("op") == "exit":
                self._exits[int(message["id"])] = int(message["status"])
            if wanted(message):
                return message

    def start_call(self, tmpfs_bytes: int) -> WarmCall:
        """Fork a fresh confined call process from the zygote; return the parent's ends."""
        self._next_id += 1
        call_id = self._next_id
        request_r, request_w = os.pipe()
        reply_r, reply_w = os.pipe()
        stderr_r, stderr_w = os.pipe()
        header = {"op": "call", "id": call_id, "tmpfs_bytes": tmpfs_bytes}
        try:
            socket.send_fds(
                self.sock, [json.dumps(header).encode()], [request_r, reply_w, stderr_w]
            )
            reply = self._expect(
                lambda m: m.get("id") == call_id and m.get("op") in ("started", "failed"),
                CONTROL_TIMEOUT_S,
            )
        except (OSError, ZygoteError) as e:
            for fd in (request_w, reply_r, stderr_r):
                os.close(fd)
            raise ZygoteError(f"the zygote could not start a call: {e}") from e
        finally:
            for fd in (request_r, reply_w, stderr_w):
                os.close(fd)
        if reply["op"] != "started":
            for fd in (request_w, reply_r, stderr_r):
                os.close(fd)
            self.end_call(call_id)
            raise ZygoteError(f"the zygote could not start a call: {reply.get('reason')}")
        return WarmCall(call_id, request_w, reply_r, stderr_r)

    def exit_status(self, call_id: int, timeout_s: float) -> int | None:
        """Return the call's exit status once it and its namespace are gone, or None."""
        deadline = time.monotonic() + timeout_s
        while call_id not in self._exits:
            try:
                self._expect(lambda m: m.get("id") == call_id, deadline - time.monotonic())
            except ZygoteError:
                return None
        return self._exits[call_id]

    def end_call(self, call_id: int) -> None:
        """Kill the call's PID namespace and wait until nothing of it is left.

        Raises:
            ZygoteError: the zygote did not confirm (the caller then closes the zygote, which
                kills every call with it).
        """
        if call_id not in self._exits:
            try:
                self.sock.send(json.dumps({"op": "kill", "id": call_id}).encode())
            except OSError as e:
                raise ZygoteError(f"the zygote's socket failed: {e}") from e
            if self.exit_status(call_id, CONTROL_TIMEOUT_S) is None:
                raise ZygoteError("the zygote did not confirm that a call ended")
        self._exits.pop(call_id, None)

    def close(self) -> None:
        """Kill the zygote's sandbox (every call in it too) and remove its directory."""
        with contextlib.suppress(OSError):
            self.sock.close()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        shutil.rmtree(self.host_dir, ignore_errors=True)


_Key = tuple[str, str | None, Any]
_registry: dict[_Key, Zygote] = {}
_registry_lock = threading.Lock()
_registry_pid = os.getpid()


def supported() -> bool:
    """Whether warm calls can be confined on this machine (its keyring filter is known)."""
    return os.uname().machine in _zygote.KEYRING_SYSCALLS


def acquire(
    location: str, code_sha256: str | None, limits: Any, read_only: list[str], tmpfs_mb: int
) -> Zygote | None:
    """Return this plugin's zygote, started if needed and locked for one call, or None.

    None means: use a cold start (the zygote is busy with another call, or cannot start).
    A zygote of the same location with another code hash is closed first.
    """
    global _registry_pid
    key: _Key = (location, code_sha256, limits)
    with _registry_lock:
        if _registry_pid != os.getpid():  # a forked copy of the agent: the zygotes are not ours
            _registry.clear()
            _registry_pid = os.getpid()
        for other in [k for k in _registry if k[0] == location and k != key]:
            if other[1] != code_sha256:
                _registry.pop(other).close()
        zygote = _registry.get(key)
        if zygote is not None and not zygote.alive():
            _registry.pop(key).close()
            zygote = None
        if zygote is None:
            try:
                zygote = Zygote(limits.sandbox, read_only, tmpfs_mb)
            except ZygoteError:
                return None
            _registry[key] = zygote
    if not zygote.lock.acquire(blocking=False):
        return None
    return zygote


def discard(zygote: Zygote) -> None:
    """Close a zygote that failed and forget it (the next call starts a new one)."""
    with _registry_lock:
        for key in [k for k, z in _registry.items() if z is zygote]:
            del _registry[key]
    zygote.close()


def close_all() -> None:
    """Close every zygote this process started (registered with atexit)."""
    with _registry_lock:
        if _registry_pid != os.getpid():
            _registry.clear()
            return
        zygotes = list(_registry.values())
        _registry.clear()
    for zygote in zygotes:
        zygote.close()


def running() -> list[Zygote]:
    """Return the zygotes alive in this process (for tests and diagnostics)."""
    with _registry_lock:
        return [z for z in _registry.values() if z.alive()]


atexit.register(close_all)
