"""A real Ray cluster for the scale-out tests: `ray start --head` on loopback, as a user starts it.

The head runs in its own process group with its own temp directory and ports, so stopping it
kills exactly its processes (never another Ray on the machine, which `ray stop` would).
Commands join it with `compute.address: auto`: `RAY_ADDRESS` in their environment names this
head, which is how Ray's `auto` finds a cluster when several could be running.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

RAY = Path(sys.executable).with_name("ray")


_PORTS = (
    "ray-client-server-port",
    "dashboard-agent-listen-port",
    "dashboard-agent-grpc-port",
    "metrics-export-port",
    "runtime-env-agent-port",
    "node-manager-port",
    "object-manager-port",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RayCluster:
    """A running head node (see the module docstring)."""

    address: str
    process: subprocess.Popen[bytes]
    temp_dir: Path
    env: dict[str, str] = field(default_factory=dict)

    def processes(self, title: str) -> list[int]:
        """PIDs of this cluster's processes (the head's descendants: its services and every
        worker) whose title (command line) starts with `title`."""
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                parent = int(stat.rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry.name))
        found, todo = [], list(children.get(self.process.pid, []))
        while todo:
            pid = todo.pop()
            todo.extend(children.get(pid, []))
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if cmdline.startswith(title):
                found.append(pid)
        return found

    def stop(self) -> None:
        """Kill every process of the cluster and remove its temp directory."""
        workers = self.processes("")
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                continue
        for pid in workers:  # orphaned by the head, reparented: kill them by PID
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def start_cluster(num_cpus: int = 2, timeout_s: float = 60.0) -> RayCluster:
    """Start a head node on 127.0.0.1 and wait until it accepts drivers."""
    port = free_port()
    temp_dir = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    address = f"127.0.0.1:{port}"
    # token authentication, as Ray 2.5x enables it, with this cluster's own token
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **auth}
    process = subprocess.Popen(
        [
            str(RAY), "start", "--head", "--block",
            "--node-ip-address", "127.0.0.1",
            "--port", str(port),
            "--num-cpus", str(num_cpus),
            "--include-dashboard", "false",
            "--temp-dir", str(temp_dir),
            "--disable-usage-stats",
            # every fixed default port taken from the free ones, so two clusters (or a local
            # Ray started by a command) on one machine never collide
            *(arg for name in _PORTS for arg in (f"--{name}", str(free_port()))),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    cluster = RayCluster(address, process, temp_dir, env={"RAY_ADDRESS": address, **auth})
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            err = process.stderr.read().decode() if process.stderr else ""
            raise RuntimeError(f"ray start exited with {process.returncode}: {err[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.2)
    else:
        cluster.stop()
        raise RuntimeError(f"ray start did not listen on {address} within {timeout_s:.0f}s")
    return cluster
