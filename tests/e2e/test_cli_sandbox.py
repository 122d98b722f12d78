"""A plugin that takes over its interpreter first, then tries every way out, through the real CLI
paths: `strategies list` (at import), `strategies validate FILE` and a backtest (in signal()).

The plugin (tests/data/hostile_plugins/takeover/escapes.py) rebinds the audit hook to do
nothing and loads libc, so only the operating system can stop it; it reports what it managed
in the error it raises, which the CLI prints. Each command runs with a fake private key and a
canary in the agent's environment, a canary file beside the database, and a loopback listener
open. After each one: the report says every attempt was blocked, the secrets appear nowhere in
the output, nothing new appears on the host, the listener received nothing, and no process
carrying the plugin's marker is alive.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Run

TAKEOVER = Path(__file__).parents[1] / "data" / "hostile_plugins" / "takeover"
TEMPLATE = TAKEOVER / "escapes.py"
FORGERIES = ("deep", "deep-dict", "wrong-types", "oversized", "object-array", "flood")
CONFIG = """\
data:
  dir: data
strategies:
  plugin_dir: plugins
  memory_mb: 768
  wall_seconds: 30
  reference_bars: 1000
"""


@dataclass
class Listener:
    """A loopback TCP listener that records every connection it accepts."""

    port: int = 0
    received: list[bytes] = field(default_factory=list)
    _sock: socket.socket | None = None

    def start(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        assert self._sock is not None
        while self._sock.fileno() != -1:
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(1.0)
                try:
                    self.received.append(b"connection:" + conn.recv(1024))
                except OSError:
                    self.received.append(b"connection")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()


@dataclass(frozen=True)
class Scene:
    workdir: Path
    marker: str
    secrets: tuple[str, ...]
    env: dict[str, str]
    listener: Listener


def _host_files(*roots: Path) -> set[Path]:
    return {p for root in roots if root.exists() for p in root.rglob("*")}


def _marked_processes(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.fixture
def scene(agora: Run, workdir: Path) -> Iterator[Scene]:
    (workdir / "config.yaml").write_text(CONFIG)
    synth = agora("data", "synth", "--bars", "1500", "--seed", "3")
    assert synth.returncode == 0, synth.stderr
    database = workdir / "data" / "agora.db"
    assert database.is_file()
    secret = uuid.uuid4().hex
    canary = workdir / "data" / "canary.txt"
    canary.write_text(f"CANARY-{secret}")
    listener = Listener()
    listener.start()
    marker = f"agora-escape-{uuid.uuid4().hex[:12]}"
    plugins = workdir / "plugins"
    plugins.mkdir()
    source = TEMPLATE.read_text()
    for key, value in {
        "DB_PATH": str(database),
        "CANARY_PATH": str(canary),
        "HOST_DIRS": "|".join(str(p) for p in (workdir, plugins, workdir / "data")),
        "PORT": str(listener.port),
        "MARKER": marker,
    }.items():
        source = source.replace(f"@@{key}@@", value)
    for when in ("import", "signal"):
        (plugins / f"escapes_on_{when}.py").write_text(source.replace("@@WHEN@@", when))
    key = "0x" + secret * 2
    env = {"AGORA_PRIVATE_KEY": key, "AGORA_CANARY": f"canary-{secret}"}
    try:
        yield Scene(workdir, marker, (secret, key), env, listener)
    finally:  # clean up after a failure, or after the unsandboxed control
        listener.close()
        for pid in _marked_processes(marker):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        for path in _host_files(Path("/var/tmp"), Path("/dev")):
            if marker in path.name:
                with contextlib.suppress(OSError):
                    path.unlink()


def _report(output: str) -> dict[str, str]:
    flat = " ".join(output.split())
    found = re.search(r"REPORT (.*?) END", flat)
    assert found, f"no report in the output: {flat[-2000:]}"
    return dict(item.split("=", 1) for item in found.group(1).split(" "))


def _listed(output: str, file_stem: str) -> dict[str, Any]:
    """The `strategies list --json` entry of the plugin file `file_stem`.py."""
    entries = [e for e in json.loads(output) if f"{file_stem}.py" in e["origin"]]
    assert len(entries) == 1, output[-2000:]
    return entries[0]


def _assert_contained(scene: Scene, output: str) -> None:
    report = _report(output)
    assert report["takeover"] == "ok", report  # the Python-level guard was switched off
    for attempt in ("env", "db", "write", "nodes", "net"):
        assert report[attempt] == "-", (attempt, report)
    seen, foreign = (int(n) for n in report["procs"].split("/"))
    assert foreign == 0 and seen <= 3, report  # its bwrap init, itself (and a forked child)
    assert report["daemon"] == "started", report
    for secret in scene.secrets:
        assert secret not in output
    # every file, node or fifo the plugin tries to create carries its marker in the name
    planted = [p for p in _host_files(scene.workdir, Path("/var/tmp")) if scene.marker in p.name]
    assert planted == [], "the plugin wrote outside its tmpfs"
    deadline = time.monotonic() + 5
    while _marked_processes(scene.marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _marked_processes(scene.marker) == [], "a process outlived the sandbox"
    assert scene.listener.received == []


def test_list_loads_a_plugin_that_escapes_at_import_and_it_stays_contained(
    agora: Run, scene: Scene
) -> None:
    listed = agora("strategies", "list", "--json", extra_env=scene.env)
    assert listed.returncode == 0, listed.stderr
    entry = _listed(listed.stdout, "escapes_on_import")
    assert entry["status"] == "LOAD FAILED", entry
    _assert_contained(scene, entry["reason"] + listed.stderr)


def test_validate_runs_a_plugin_that_escapes_in_signal_and_it_stays_contained(
    agora: Run, scene: Scene
) -> None:
    checked = agora("strategies", "validate", "plugins/escapes_on_signal.py", extra_env=scene.env)
    assert checked.returncode == 1
    assert "escapes-on-signal: failed" in checked.stdout
    _assert_contained(scene, checked.stdout + checked.stderr)


def test_a_backtest_masks_the_escaping_plugin_and_completes(agora: Run, scene: Scene) -> None:
    done = agora("backtest", "--no-report", extra_env=scene.env)
    assert done.returncode == 0, done.stderr
    flat = " ".join(done.stdout.split())
    assert "warning: escapes-on-signal: no signal: raised RuntimeError: REPORT" in flat
    for name in ("ma-crossover", "buy-and-hold"):
        assert name in done.stdout
    _assert_contained(scene, done.stdout + done.stderr)


def test_the_same_plugin_unsandboxed_gets_out_so_the_boundary_is_bubblewrap(
    agora: Run, scene: Scene
) -> None:
    """Control: with `strategies.sandbox: none` the same attempts succeed (hence unsafe)."""
    config = scene.workdir / "config.yaml"
    config.write_text(config.read_text().replace("strategies:\n", "strategies:\n  sandbox: none\n"))
    listed = agora("strategies", "list", "--json", extra_env=scene.env)
    assert listed.returncode == 0, listed.stderr
    report = _report(_listed(listed.stdout, "escapes_on_import")["reason"])
    assert report["takeover"] == "ok"
    assert report["env"] == f"LEAK:AGORA_PRIVATE_KEY={scene.secrets[1]}"
    assert report["db"].startswith("LEAK:")
    assert report["write"].startswith("BREACH:") and report["net"].startswith("BREACH:")
    assert _marked_processes(scene.marker), "the daemon did not outlive the unsandboxed run"


def _render(template: Path, **values: str) -> str:
    source = template.read_text()
    for key, value in values.items():
        source = source.replace(f"@@{key.upper()}@@", value)
    return source


def test_forged_replies_are_masked_with_a_reason_and_the_backtest_completes(
    agora: Run, workdir: Path
) -> None:
    (workdir / "config.yaml").write_text(CONFIG)
    assert agora("data", "synth", "--bars", "1500", "--seed", "3").returncode == 0
    plugins = workdir / "plugins"
    plugins.mkdir()
    template = TAKEOVER / "forges_reply.py"
    for forgery in FORGERIES:
        for when in ("import", "signal"):
            name = f"forges_{forgery.replace('-', '_')}_on_{when}.py"
            (plugins / name).write_text(_render(template, forgery=forgery, when=when))

    listed = agora("strategies", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    entries = {e["name"]: e for e in json.loads(listed.stdout)}
    for forgery in FORGERIES:  # forged metadata: refused with a reason, never a crash
        entry = entries[f"forges_{forgery.replace('-', '_')}_on_import"]
        assert entry["status"] == "LOAD FAILED" and entry["reason"], entry
        assert entries[f"forges-{forgery}-on-signal"]["status"] == "OK"

    done = agora("backtest", "--no-report")
    assert done.returncode == 0, done.stderr
    flat = " ".join(done.stdout.split())
    expected = {
        "deep": "sent a reply header nested 100000 deep, more than the 8 allowed",
        "deep-dict": "sent a reply header nested 51 deep, more than the 8 allowed",
        "wrong-types": "sent a malformed result (no valid shape for its values)",
        "oversized": "sent a reply payload of 4611686018427387904 bytes, more than the",
        "object-array": "sent a malformed result (",
        "flood": "forges-flood-on-signal: no signal: sent ",  # more replies, or a 'ready'
    }
    for forgery, reason in expected.items():
        assert f"warning: forges-{forgery}-on-signal: no signal: " in flat, forgery
        assert reason in flat, (forgery, flat[-3000:])
    for name in ("ma-crossover", "rsi-reversion", "buy-and-hold"):
        assert name in done.stdout


def test_submit_validates_the_escaping_plugin_first_and_it_stays_contained(
    agora: Run, scene: Scene
) -> None:
    contributor = "0x" + "11" * 20
    submitted = agora(
        "strategies", "submit", "plugins/escapes_on_signal.py", "--contributor", contributor,
        extra_env=scene.env,
    )  # fmt: skip
    assert submitted.returncode != 0
    _assert_contained(scene, submitted.stdout + submitted.stderr)


def test_a_training_data_build_masks_the_escaping_plugin_and_it_stays_contained(
    agora: Run, scene: Scene
) -> None:
    env = {
        **scene.env,
        "AGORA__agent__strategies": '["ma-crossover", "escapes-on-signal"]',
        "AGORA__agent__timesteps": "64",
        "AGORA__agent__n_steps": "32",
        "AGORA__agent__eval_every_steps": "64",
    }
    refused = agora("train", "--json", extra_env=env)  # masked throughout: refused by default
    assert refused.returncode == 2 and "no signal from escapes-on-signal" in refused.stderr
    _assert_contained(scene, refused.stdout + refused.stderr)
    trained = agora("train", "--json", "--allow-masked-strategies", extra_env=env)
    assert trained.returncode == 0, trained.stderr
    assert json.loads(trained.stdout)["strategies"] == ["ma-crossover", "escapes-on-signal"]
    _assert_contained(scene, trained.stdout + trained.stderr)


def test_a_service_tick_masks_the_escaping_plugin_and_it_stays_contained(
    agora: Run, scene: Scene
) -> None:
    env = {
        **scene.env,
        "AGORA__agent__strategies": '["ma-crossover", "escapes-on-signal"]',
        "AGORA__service__start_bar": "1200",
        "AGORA__service__bootstrap_model": "false",
        "AGORA__service__port": "0",
    }
    ticked = agora("run", "--once", extra_env=env)
    assert ticked.returncode == 0, ticked.stderr
    assert '"event":"decision"' in ticked.stderr.replace(" ", "")
    _assert_contained(scene, ticked.stdout + ticked.stderr)
