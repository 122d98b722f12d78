"""The one sandbox launcher: the bubblewrap command it builds, the refusal where bubblewrap
cannot run, the explicit unsandboxed mode, limits that follow a strategy from discovery to
every later run, and timings measured by the parent."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

from agent.config import Settings
from agent.errors import PluginError
from agent.plugins import launcher
from agent.plugins.discovery import StrategyStatus, discover, discover_file
from agent.plugins.sandbox import SandboxLimits
from agent.plugins.signals import compute_signals
from agent.plugins.validation import validate
from tests.integration.plugins.conftest import GOOD_PLUGIN, HOSTILE_DIR, strategies_settings

pytestmark = pytest.mark.usefixtures("healthy")

FORGES_ITS_CLOCK = '''
import time

import numpy as np
import pandas as pd

from agent.plugins import Strategy

_sleep = time.sleep


class ForgesItsClock(Strategy):
    """Slow, and stops its own clocks so that a self-reported time would say 0 s."""

    name = "forges-its-clock"

    def signal(self, candles: pd.DataFrame) -> np.ndarray:
        if len(candles) == 1_000:  # the full reference data set, not the look-ahead cuts
            _sleep(1.0)
        time.perf_counter = time.monotonic = time.time = lambda: 0.0
        return np.zeros(len(candles))
'''


def _plugin(tmp_path: Path, source: str = GOOD_PLUGIN, name: str = "good.py") -> Path:
    path = tmp_path / name
    path.write_text(source)
    return path


def test_the_bubblewrap_command_confines_the_child_and_binds_nothing_of_the_agents(
    tmp_path: Path,
) -> None:
    plugin = _plugin(tmp_path)
    command = launcher.child_command("bubblewrap", str(tmp_path / "host"), [str(plugin)])
    argv = list(command.argv)
    assert Path(argv[0]).name == "bwrap"
    for flag in (
        "--unshare-all",
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
    ):
        assert flag in argv
    assert "--share-net" not in argv
    assert argv[argv.index("--cap-drop") + 1] == "ALL"
    assert (
        argv[argv.index("--tmpfs") + 1] == launcher.CHILD_TMP
        and argv[argv.index("--chdir") + 1] == launcher.CHILD_TMP
    )
    assert argv[argv.index("--size") + 1] == str(launcher.DEFAULT_TMPFS_MB << 20)
    assert argv.index("--size") + 2 == argv.index("--tmpfs")
    binds = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--bind"]
    assert binds == [], "nothing is bound writable"
    read_only = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--ro-bind"]
    assert str(plugin) in read_only and str(tmp_path) not in read_only
    assert str(Path.cwd()) not in read_only and str(Path.home()) not in read_only
    environment = {argv[i + 1] for i, arg in enumerate(argv) if arg == "--setenv"}
    assert environment == {"PATH", "LANG", "HOME", "TMPDIR", *launcher.scrubbed_environment("x")}
    assert command.workdir == launcher.CHILD_TMP


def test_without_bwrap_third_party_plugins_are_refused_naming_the_setting(
    tmp_path: Path, candles: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(PluginError) as refused:
        launcher.bubblewrap()
    message = str(refused.value)
    assert "\n" not in message and "`bwrap` is not on PATH" in message
    assert "strategies.sandbox: none" in message and "unsafe" in message

    (item,) = discover_file(_plugin(tmp_path), SandboxLimits())
    assert item.status is StrategyStatus.LOAD_FAILED and item.error == message
    settings = strategies_settings(tmp_path)
    report = validate(tmp_path / "good.py", settings)
    assert not report.passed and report.checks[0].message == f"LOAD FAILED: {message}"


def test_where_namespaces_fail_the_refusal_names_the_cause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "bin" / "bwrap"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(fake.parent))
    launcher._bubblewrap_works.cache_clear()
    try:
        with pytest.raises(PluginError, match="No permissions to create new namespace") as e:
            launcher.bubblewrap()
        assert "strategies.sandbox: none" in str(e.value)
    finally:
        launcher._bubblewrap_works.cache_clear()


def test_sandbox_none_runs_plugins_without_bubblewrap(
    tmp_path: Path, candles: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    _plugin(tmp_path)
    settings = strategies_settings(tmp_path, sandbox="none")
    (item,) = [d for d in discover(settings, shipped=False, packages=False)]
    assert item.ok, item.error
    assert item.limits is not None and item.limits.sandbox == "none"
    matrix = compute_signals([item], candles, key=None)
    assert matrix.reasons == {} and matrix.mask[20:].all()
    assert Settings().strategies.sandbox == "bubblewrap"


def test_the_configured_limits_follow_a_strategy_to_every_later_run(
    candles: pd.DataFrame,
) -> None:
    """compute_signals is given no limits (as the backtest, training and service paths call
    it): the wall-clock limit the strategy was discovered with still applies."""
    settings = strategies_settings(HOSTILE_DIR, wall_seconds=1.0)
    (item,) = discover_file(HOSTILE_DIR / "infinite_loop.py", SandboxLimits.from_settings(settings))
    matrix = compute_signals([item], candles, key=None)
    assert matrix.reasons == {"infinite-loop": "timed out after 1 s"}


def test_validation_times_the_plugin_itself_and_ignores_its_clocks(tmp_path: Path) -> None:
    path = _plugin(tmp_path, FORGES_ITS_CLOCK, "forges_its_clock.py")
    settings = strategies_settings(
        tmp_path, reference_bars=1_000, wall_seconds=10.0, causality_cut_points=2
    )
    report = validate(path, settings)
    speed = next(c for c in report.checks if c.name == "speed")
    assert not speed.passed and speed.message.startswith("too slow"), speed.message
    assert report.seconds_per_10k_bars is not None and report.seconds_per_10k_bars >= 9.0


def test_the_child_imports_numpy_and_pandas_from_the_read_only_environment(
    tmp_path: Path, candles: pd.DataFrame
) -> None:
    probe = _plugin(
        tmp_path,
        GOOD_PLUGIN.replace(
            'return np.tanh(np.log1p(candles["volume"]).diff(self.p["window"]))',
            "import os, sys\n"
            "        assert np.__file__.startswith(sys.prefix) or 'site-packages' in np.__file__\n"
            "        assert not os.access(os.path.dirname(pd.__file__), os.W_OK)\n"
            '        return np.tanh(np.log1p(candles["volume"]).diff(self.p["window"]))',
        ),
        "probe.py",
    )
    (item,) = discover_file(probe, SandboxLimits())
    matrix = compute_signals([item], candles, key=None)
    assert matrix.reasons == {}, matrix.reasons
    assert sys.modules.get("agora_plugin_probe") is None


FILLS_ITS_TMPFS = """
import numpy as np
import pandas as pd

from agent.plugins import Strategy


class FillsItsTmpfs(Strategy):
    name = "fills-its-tmpfs"

    def signal(self, candles: pd.DataFrame) -> np.ndarray:
        written, block = 0, b"x" * (1 << 20)
        for i in range(64):
            try:
                with open(f"fill-{i}", "wb") as handle:
                    for _ in range(8):
                        handle.write(block)
                        handle.flush()
                        written += 1
            except OSError:
                continue
        values = np.zeros(len(candles))
        values[0] = written / 100.0
        return values
"""


def test_the_private_tmpfs_holds_at_most_four_times_the_file_size_limit(
    tmp_path: Path, candles: pd.DataFrame
) -> None:
    path = _plugin(tmp_path, FILLS_ITS_TMPFS, "fills.py")
    limits = SandboxLimits(memory_mb=768, file_size_mb=2)
    (item,) = discover_file(path, limits)
    matrix = compute_signals([item], candles, key=None, limits=limits)
    values, mask = matrix.column("fills-its-tmpfs")
    assert mask.all(), matrix.reasons
    assert 1 <= round(values[0] * 100) <= 8  # MB written: 2 MB files, an 8 MB tmpfs


def test_the_private_tmpfs_lies_where_no_host_path_can_be() -> None:
    """A checkout, venv or runtime under the host's /tmp must stay visible in the sandbox: the
    private tmpfs of a cold child and of a warm call is mounted away from /tmp."""
    from agent.plugins import _zygote, launcher

    assert launcher.CHILD_TMP == _zygote.CALL_TMP != "/tmp"
    assert not any(
        path == launcher.CHILD_TMP or path.startswith(launcher.CHILD_TMP + "/")
        for path in (sys.base_prefix, sys.prefix, str(Path(launcher.agent_root())))
    )
