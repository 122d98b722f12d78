"""The sandbox side of a warm start: a zygote that forks one fresh, confined process per call.

`agent.plugins.warm` starts this module inside bubblewrap, through the same launcher as a cold
child, but as `nobody` keeping two capabilities in its own user namespace (`CAP_SYS_ADMIN`,
`CAP_SETPCAP`). It imports numpy, pandas and the child's side of the protocol, and then waits.
It never loads plugin code: a process that has run plugin code is the plugin's, and every call
is forked from this one, so it must stay the agent's (see docs/plugin-security.md).

Its stdin is a Unix socket to the parent. Each message is a small JSON object; a call carries
three file descriptors (SCM_RIGHTS): the call's request stream, reply stream and stderr.

- parent to zygote: `{"op": "call", "id": n, "tmpfs_bytes": b}` with the three descriptors;
  `{"op": "kill", "id": n}`.
- zygote to parent: `{"op": "ready"}` once; `{"op": "started", "id": n}` or
  `{"op": "failed", "id": n, "reason": ...}`; `{"op": "exit", "id": n, "status": s}` once the
  call and everything it started are gone (`s` as a shell reports it: 128 + signal).

Each call is a fresh process tree that no earlier call touched. The zygote forks it in advance
(a *spare*, so that a call only hands it its streams): the *call process* closes every other
descriptor, enters new mount, PID and IPC namespaces, makes its mounts private, mounts a fresh
tmpfs at /tmp (its working directory) and an empty read-only tmpfs over /proc, and forks the
namespace's init. The init (trusted code, killed if the call process dies) forks the *runner*,
then only reaps; when it exits, the kernel kills every process left in the namespace. The
runner waits on a private socket for the call's three descriptors, points fds 0, 1 and 2 at
them and closes every other, drops every capability (bounding set, ambient, effective,
permitted), sets no-new-privileges and a seccomp filter against the keyrings, checks all of it
with the kernel, and refuses to go on unless it holds nothing; only then does it run
`agent.plugins._child.main`, which reads the request, sets the rlimits, installs the audit hook
and loads the plugin. Once a call is handed over, the zygote prepares the next spare.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import os
import select
import signal
import socket
import sys
from dataclasses import dataclass
from typing import Any

from agent.plugins import _child

CALL_TMP = "/agora-tmp"
"""Each call's fresh tmpfs: `agent.plugins.launcher.CHILD_TMP` (kept apart: this module runs in
the sandbox and imports nothing it does not need)."""

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
_MS_REC, _MS_PRIVATE = 0x4000, 0x40000
_PR_SET_PDEATHSIG, _PR_CAPBSET_READ, _PR_CAPBSET_DROP = 1, 23, 24
_PR_SET_NO_NEW_PRIVS, _PR_GET_NO_NEW_PRIVS, _PR_CAP_AMBIENT = 38, 39, 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_PR_SET_SECCOMP, _PR_GET_SECCOMP, _SECCOMP_MODE_FILTER = 22, 21, 2
_CAPABILITY_VERSION_3 = 0x20080522
_LAST_CAP = 63
NOBODY = 65534
SETUP_FAILED = 125
"""Exit status of a call whose confinement could not be set up (no plugin code ran)."""
_MAX_MESSAGE = 4_096


KEYRING_SYSCALLS = {
    "x86_64": (0xC000003E, (248, 249, 250)),
    "aarch64": (0xC00000B7, (217, 218, 219)),
}
"""Per machine: the audit architecture and the numbers of add_key, request_key and keyctl.

Every call shares the zygote's user namespace, and with it the kernel's per-user keyrings,
which outlive a process: the one channel between calls that namespaces do not close. A
seccomp filter refuses these three calls (and any other architecture's or ABI's calls)."""


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_ushort),
        ("jt", ctypes.c_ubyte),
        ("jf", ctypes.c_ubyte),
        ("k", ctypes.c_uint32),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def _keyring_filter(machine: str) -> list[tuple[int, int, int, int]]:
    """Return the seccomp program (BPF) that refuses the keyring calls with EPERM."""
    arch, (add_key, request_key, keyctl) = KEYRING_SYSCALLS[machine]
    load, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06
    allow, eperm = 0x7FFF0000, 0x00050000 | 1
    return [
        (load, 0, 0, 4),  # seccomp_data.arch
        (jeq, 1, 0, arch),
        (ret, 0, 0, eperm),  # another architecture (i386 through int 0x80): refused
        (load, 0, 0, 0),  # seccomp_data.nr
        (jge, 4, 0, 0x40000000),  # the x32 ABI: refused
        (jeq, 3, 0, add_key),
        (jeq, 2, 0, request_key),
        (jeq, 1, 0, keyctl),
        (ret, 0, 0, allow),
        (ret, 0, 0, eperm),
    ]


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(
    source: bytes, target: bytes, fstype: bytes | None, flags: int, data: bytes | None
) -> None:
    _check(_libc.mount(source, target, fstype, flags, data), f"mount {target.decode()}")


def confine_call(tmpfs_bytes: int) -> None:
    """Enter new mount, PID and IPC namespaces with a fresh tmpfs and no /proc (call process)."""
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC), "unshare")
    _mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None)
    flags = _MS_NOSUID | _MS_NODEV
    _mount(b"tmpfs", CALL_TMP.encode(), b"tmpfs", flags, f"size={tmpfs_bytes},mode=0755".encode())
    _mount(b"tmpfs", b"/proc", b"tmpfs", flags | _MS_NOEXEC | _MS_RDONLY, b"size=4096,mode=0555")
    os.chdir(CALL_TMP)


def drop_privileges() -> None:
    """Drop every capability for good and forbid gaining any (the runner, before plugin code);
    then shut the keyrings (see `KEYRING_SYSCALLS`)."""
    os.setresgid(NOBODY, NOBODY, NOBODY)
    os.setresuid(NOBODY, NOBODY, NOBODY)
    _check(_libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    for cap in range(_LAST_CAP + 1):
        if _libc.prctl(_PR_CAPBSET_READ, cap, 0, 0, 0) == 1:
            _check(_libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0), f"drop capability {cap}")
    _check(_libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "ambient")
    header = _CapHeader(_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.capset(ctypes.byref(header), data), "capset")
    program = (_SockFilter * 10)(*[_SockFilter(*op) for op in _keyring_filter(os.uname().machine)])
    prog = _SockFprog(len(program), program)
    _check(_libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0), "seccomp")


def privileges_left() -> list[str]:
    """Return what this process still holds, asked of the kernel; empty means nothing."""
    left = []
    header = _CapHeader(_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if _libc.capget(ctypes.byref(header), data) != 0:
        left.append("capget failed")
    for i, word in enumerate(data):
        if word.effective or word.permitted or word.inheritable:
            left.append(f"capabilities in word {i}")
    bounding = [c for c in range(_LAST_CAP + 1) if _libc.prctl(_PR_CAPBSET_READ, c, 0, 0, 0) == 1]
    if bounding:
        left.append(f"bounding set {bounding}")
    if _libc.prctl(_PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1:
        left.append("no_new_privs unset")
    if _libc.prctl(_PR_GET_SECCOMP, 0, 0, 0, 0) != _SECCOMP_MODE_FILTER:
        left.append("no seccomp filter")
    if os.getresuid() != (NOBODY,) * 3 or os.getresgid() != (NOBODY,) * 3:
        left.append(f"uid {os.getresuid()} gid {os.getresgid()}")
    return left


def _die_with_parent() -> None:
    _check(_libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "pdeathsig")


def _exit_code(status: int) -> int:
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def _runner(handoff: socket.socket) -> None:
    """Wait for the call's streams, drop privileges, check them, then serve the call's request
    (never returns)."""
    code = 1
    try:
        _, fds, _, _ = socket.recv_fds(handoff, 16, 3)
        if len(fds) != 3:
            os._exit(SETUP_FAILED)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        drop_privileges()
        left = privileges_left()
        if left:
            os.write(2, f"agora zygote: refusing to run plugin code: {left}\n".encode())
            os._exit(SETUP_FAILED)
        code = _child.main()
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.write(2, f"{_child.describe_exception(e)}\n".encode())
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _init(runner: int) -> None:
    """As the namespace's PID 1: reap everything, exit with the runner's status (never returns)."""
    code = SETUP_FAILED
    try:
        while True:
            pid, status = os.wait()
            if pid == runner:
                code = _exit_code(status)
                break
    finally:
        os._exit(code)


def _call_process(handoff: socket.socket, tmpfs_bytes: int, report: int) -> None:
    """Confine the call, start its init and runner; exit with the runner's status."""
    code = SETUP_FAILED
    try:
        _die_with_parent()
        keep = sorted((handoff.fileno(), report))
        os.closerange(3, keep[0])
        os.closerange(keep[0] + 1, keep[1])
        os.closerange(keep[1] + 1, os.sysconf("SC_OPEN_MAX"))
        confine_call(tmpfs_bytes)
        init = os.fork()
        if init == 0:
            os.close(report)
            _die_with_parent()
            runner = os.fork()
            if runner == 0:
                _runner(handoff)
            handoff.close()
            _init(runner)
        handoff.close()
        os.write(report, init.to_bytes(4, "little"))
        os.close(report)
        _, status = os.waitpid(init, 0)
        code = _exit_code(status)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.write(2, f"agora zygote: could not confine the call: {e}\n".encode())
    finally:
        os._exit(code)


@dataclass
class _Spare:
    """A call process confined in advance, its runner waiting for the call's streams."""

    handoff: socket.socket
    pid: int
    init: int
    tmpfs_bytes: int


class Zygote:
    """The zygote's loop: fork calls on request, kill them on request, report their exits."""

    def __init__(self, control: socket.socket) -> None:
        self.control = control
        self.calls: dict[int, tuple[int, int]] = {}
        """Call id -> (call process pid, namespace init pid)."""
        self.spare: _Spare | None = None

    def send(self, message: dict[str, Any]) -> None:
        self.control.sendall(json.dumps(message).encode())

    def prepare(self, tmpfs_bytes: int) -> _Spare | None:
        """Fork and confine the next call process now, so that a call only hands it streams."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        read_end, write_end = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            for fd in (read_end, write_end):
                os.close(fd)
            ours.close()
            theirs.close()
            return None
        if pid == 0:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            _call_process(theirs, tmpfs_bytes, write_end)
        theirs.close()
        os.close(write_end)
        with os.fdopen(read_end, "rb") as report:
            blob = report.read(4)
        if len(blob) != 4:
            ours.close()  # the call process failed; it is reaped as an unknown child
            return None
        return _Spare(ours, pid, int.from_bytes(blob, "little"), tmpfs_bytes)

    def start(self, call_id: int, fds: list[int], tmpfs_bytes: int) -> None:
        spare, self.spare = self.spare, None
        if spare is not None and spare.tmpfs_bytes != tmpfs_bytes:
            spare.handoff.close()  # its runner reads end-of-file and exits: nothing ran
            spare = None
        if spare is None:
            spare = self.prepare(tmpfs_bytes)
        if spare is None:
            self.send({"op": "failed", "id": call_id, "reason": "the call could not be confined"})
            return
        try:
            socket.send_fds(spare.handoff, [b"call"], fds)
        except OSError as e:
            self.calls[call_id] = (spare.pid, spare.init)
            self.kill(call_id)
            self.send({"op": "failed", "id": call_id, "reason": f"handing over the call: {e}"})
            return
        finally:
            spare.handoff.close()
        self.calls[call_id] = (spare.pid, spare.init)
        self.send({"op": "started", "id": call_id})
        self.spare = self.prepare(tmpfs_bytes)

    def kill(self, call_id: int) -> None:
        """Kill the call's namespace through its init; the call process, which waits for the
        init, exits only once the namespace is empty (so its exit means: nothing is left)."""
        pid, init = self.calls.get(call_id, (0, 0))
        target = init or pid
        if target:
            with contextlib.suppress(ProcessLookupError):
                os.kill(target, signal.SIGKILL)

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            for call_id, (call_pid, _) in list(self.calls.items()):
                if call_pid == pid:
                    del self.calls[call_id]
                    self.send({"op": "exit", "id": call_id, "status": _exit_code(status)})

    def serve(self) -> None:
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_write, False)
        signal.set_wakeup_fd(wake_write)
        signal.signal(signal.SIGCHLD, lambda number, frame: None)
        self.send({"op": "ready"})
        while True:
            readable, _, _ = select.select([self.control.fileno(), wake_read], [], [])
            if wake_read in readable:
                os.read(wake_read, 4_096)
            self.reap()
            if self.control.fileno() not in readable:
                continue
            blob, fds, _, _ = socket.recv_fds(self.control, _MAX_MESSAGE, 3)
            if not blob:
                return
            message = json.loads(blob)
            if message["op"] == "call" and len(fds) == 3:
                self.start(int(message["id"]), fds, int(message["tmpfs_bytes"]))
            elif message["op"] == "kill":
                self.kill(int(message["id"]))
            for fd in fds:
                os.close(fd)


def main() -> int:
    """Serve the parent on the socket that is this process's stdin, until it closes."""
    control = socket.socket(fileno=os.dup(0))
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    sys.dont_write_bytecode = True
    _die_with_parent()
    gc.freeze()  # the collector in a call then never touches (and copies) the zygote's objects
    Zygote(control).serve()
    return 0
