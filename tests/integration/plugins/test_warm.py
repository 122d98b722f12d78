"""Warm calls: each is a fresh confined process forked from the plugin's zygote, and no call
sees what an earlier one saw (files, module state, processes), even after the plugin takes over
its interpreter; a dead zygote is replaced and an overrunning call is killed alone."""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agent.plugins import warm
from agent.plugins.sandbox import PluginLocation, SandboxLimits, SignalResult, run_plugin
from tests.e2e.test_cli_sandbox import TEMPLATE, Listener, Scene, _assert_contained
from tests.integration.plugins.conftest import GOOD_PLUGIN, MEMORY_MB

pytestmark = pytest.mark.usefixtures("healthy")

LIMITS = SandboxLimits(cpu_seconds=10.0, memory_mb=MEMORY_MB, wall_seconds=5.0, file_size_mb=4)

TAKE_OVER = """
import sys

import numpy as np
import pandas as pd

from agent.plugins import Strategy


def take_over():
    guard = sys.modules["agent.plugins._child"]
    guard.AuditGuard.__call__ = lambda self, event, args: None
    guard.audit_violation = lambda *args: None
"""

REMEMBERS = (
    TAKE_OVER
    + '''
import os

SEEN = []


class Remembers(Strategy):
    """Leaves a file, a module global and a process behind; reports what it finds of them."""

    name = "remembers"
    params = {"marker": "", "sleep_s": 0.0}

    def signal(self, candles: pd.DataFrame) -> np.ndarray:
        take_over()
        import time

        time.sleep(self.p["sleep_s"])
        found = float(os.path.exists("state.txt")) + 2.0 * len(SEEN) + 4.0 * len(os.listdir("."))
        with open("state.txt", "w") as handle:
            handle.write("seen")
        SEEN.append(len(candles))
        if os.fork() == 0:
            os.setsid()
            os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(60)",
                                      self.p["marker"]])
        return np.full(len(candles), found)
'''
)

PRIVILEGES = (
    TAKE_OVER
    + '''
import os


class Privileges(Strategy):
    """Reports what it holds, asked of the kernel, and what it can see."""

    name = "privileges"

    def signal(self, candles: pd.DataFrame) -> np.ndarray:
        take_over()
        from agent.plugins import _zygote

        state = (
            _zygote.privileges_left(), os.getcwd(), os.listdir("/proc"), os.listdir("."),
            os.getpid(),
        )
        if state != ([], "/agora-tmp", [], [], 2):
            raise RuntimeError(f"HOLDS {state}")
        return np.zeros(len(candles))
'''
)

KEYRING = (
    TAKE_OVER
    + """
import ctypes
import os

from agent.plugins._zygote import KEYRING_SYSCALLS

_, (ADD_KEY, REQUEST_KEY, _KEYCTL) = KEYRING_SYSCALLS[os.uname().machine]
USER_KEYRING = -4


class Keyring(Strategy):
    \"\"\"Tries to leave a key in the user keyring (shared by every call) and to find it.\"\"\"

    name = "keyring"

    def signal(self, candles: pd.DataFrame) -> np.ndarray:
        take_over()
        libc = ctypes.CDLL(None, use_errno=True)
        found = libc.syscall(REQUEST_KEY, b"user", b"agora-remember", None, 0)
        made = libc.syscall(ADD_KEY, b"user", b"agora-remember", b"seen", 4, USER_KEYRING)
        return np.full(len(candles), 0.5 * (found >= 0) + 0.25 * (made >= 0))
"""
)


def _run(path: Path, name: str, candles: pd.DataFrame, **params: object) -> SignalResult:
    location = PluginLocation("file", str(path), None)
    warmup = 12 if name == "volume-momentum" else 0
    (result,) = run_plugin(
        location, [candles], name=name, params=params, warmup_bars=warmup, limits=LIMITS
    )
    return result


def _zygotes() -> set[int]:
    return {zygote.proc.pid for zygote in warm.running()}


def _marked(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_warm_calls_give_the_same_signals_as_cold_calls(
    tmp_path: Path, candles: pd.DataFrame
) -> None:
    path = tmp_path / "good.py"
    path.write_text(GOOD_PLUGIN)
    location = PluginLocation("file", str(path), None)
    before = _zygotes()
    warm_results = [
        run_plugin(location, [candles], name="volume-momentum", warmup_bars=12, limits=LIMITS)[0]
        for _ in range(3)
    ]
    started = _zygotes() - before
    assert len(started) == 1, "one zygote serves every call of the plugin"
    cold = SandboxLimits(**{**LIMITS.__dict__, "warm_start": False})
    (cold_result,) = run_plugin(
        location, [candles], name="volume-momentum", warmup_bars=12, limits=cold
    )
    assert cold_result.ok, cold_result.reason
    for result in warm_results:
        assert result.ok, result.reason
        assert result.values is not None and cold_result.values is not None
        np.testing.assert_array_equal(result.values, cold_result.values)


def test_a_call_its_zygote_loses_runs_again_cold_and_the_plugin_is_not_blamed(
    tmp_path: Path, candles: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A zygote that cannot say how a call ended (its socket failed, it exited) is the
    sandbox's problem, not the plugin's: the call runs again cold and its signal is kept."""
    from agent.plugins import sandbox

    path = tmp_path / "good.py"
    path.write_text(GOOD_PLUGIN)
    lost: list[int] = []
    status = warm.Zygote.exit_status

    def forgetful(self: warm.Zygote, call_id: int, timeout_s: float) -> int | None:
        if not lost:
            lost.append(call_id)
            return None  # as when the zygote's socket fails mid-call
        return status(self, call_id, timeout_s)

    receive = sandbox._Child.receive

    def ends_early(self: sandbox._Child) -> tuple[dict[str, object], bytes]:
        if self.zygote is not None and not lost:
            raise sandbox._Failed(self._exit_reason())  # the call's pipes closed: EOF
        return receive(self)

    monkeypatch.setattr(warm.Zygote, "exit_status", forgetful)
    monkeypatch.setattr(sandbox._Child, "receive", ends_early)
    result = _run(path, "volume-momentum", candles)
    assert lost, "the warm call was tried first"
    assert result.ok, result.reason


def test_no_call_sees_the_files_module_state_or_processes_of_an_earlier_call(
    tmp_path: Path, candles: pd.DataFrame
) -> None:
    path = tmp_path / "remembers.py"
    path.write_text(REMEMBERS)
    marker = f"agora-warm-{uuid.uuid4().hex[:12]}"
    before = _zygotes()
    for _ in range(3):
        result = _run(path, "remembers", candles, marker=marker)
        assert result.ok, result.reason
        assert result.values is not None
        assert set(result.values.tolist()) == {0.0}, "a call saw a file or state left earlier"
        assert _marked(marker) == [], "a process started by the call outlived it"
    assert len(_zygotes() - before) == 1


def test_a_warm_call_holds_no_privilege_sees_no_process_and_starts_in_its_own_tmpfs(
    tmp_path: Path, candles: pd.DataFrame
) -> None:
    path = tmp_path / "privileges.py"
    path.write_text(PRIVILEGES)
    for _ in range(2):
        result = _run(path, "privileges", candles)
        assert result.ok, result.reason


def test_no_call_can_leave_a_key_in_the_keyrings_all_calls_share(
    tmp_path: Path, candles: pd.DataFrame
) -> None:
    path = tmp_path / "keyring.py"
    path.write_text(KEYRING)
    for _ in range(2):
        result = _run(path, "keyring", candles)
        assert result.ok, result.reason
        assert result.values is not None and set(result.values.tolist()) == {0.0}


def test_a_plugin_that_escapes_its_interpreter_in_a_warm_call_is_contained(
    tmp_path: Path, candles: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = uuid.uuid4().hex
    key = "0x" + secret * 2
    monkeypatch.setenv("AGORA_PRIVATE_KEY", key)
    monkeypatch.setenv("AGORA_CANARY", f"canary-{secret}")
    data = tmp_path / "data"
    plugins = tmp_path / "plugins"
    data.mkdir()
    plugins.mkdir()
    database = data / "agora.db"
    database.write_bytes(b"SQLite format 3\0" + secret.encode())
    canary = data / "canary.txt"
    canary.write_text(f"CANARY-{secret}")
    listener = Listener()
    listener.start()
    marker = f"agora-escape-{uuid.uuid4().hex[:12]}"
    source = TEMPLATE.read_text()
    for name, value in {
        "DB_PATH": str(database),
        "CANARY_PATH": str(canary),
        "HOST_DIRS": "|".join(str(p) for p in (tmp_path, plugins, data)),
        "PORT": str(listener.port),
        "MARKER": marker,
        "WHEN": "signal",
    }.items():
        source = source.replace(f"@@{name}@@", value)
    path = plugins / "escapes_on_signal.py"
    path.write_text(source)
    scene = Scene(tmp_path, marker, (secret, key), {}, listener)
    try:
        before = _zygotes()
        for _ in range(2):  # the second call is forked from a zygote that already served one
            result = _run(path, "escapes-on-signal", candles)
            assert not result.ok and result.reason is not None
            _assert_contained(scene, result.reason)
        assert len(_zygotes() - before) == 1
    finally:
        listener.close()
        for pid in _marked(marker):
            os.kill(pid, signal.SIGKILL)


def test_a_killed_zygote_is_replaced_transparently(tmp_path: Path, candles: pd.DataFrame) -> None:
    path = tmp_path / "good.py"
    path.write_text(GOOD_PLUGIN)
    before = _zygotes()
    first = _run(path, "volume-momentum", candles)
    (zygote,) = _zygotes() - before
    os.killpg(zygote, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while zygote in _zygotes() and time.monotonic() < deadline:  # until its death is seen
        time.sleep(0.01)
    second = _run(path, "volume-momentum", candles)
    assert first.ok and second.ok, (first.reason, second.reason)
    assert first.values is not None and second.values is not None
    np.testing.assert_array_equal(first.values, second.values)
    replaced = _zygotes() - before
    assert len(replaced) == 1 and zygote not in replaced


def test_a_call_over_the_wall_clock_limit_is_killed_and_the_next_call_works(
    tmp_path: Path, candles: pd.DataFrame
) -> None:
    path = tmp_path / "remembers.py"
    path.write_text(REMEMBERS)
    marker = f"agora-warm-{uuid.uuid4().hex[:12]}"
    before = _zygotes()
    slow = _run(path, "remembers", candles, marker=marker, sleep_s=60.0)
    assert not slow.ok and slow.reason == f"timed out after {LIMITS.wall_seconds:g} s"
    assert _marked(marker) == []
    quick = _run(path, "remembers", candles, marker=marker)
    assert quick.ok, quick.reason
    assert quick.values is not None and set(quick.values.tolist()) == {0.0}
    assert len(_zygotes() - before) == 1, "the zygote outlived its call's overrun"
