"""Fixtures for the sandbox tests: small limits, the hostile corpus, and a health check of the
test process itself (the process that asked for the signals must be unharmed)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agent.config import StrategiesSettings, SyntheticSettings
from agent.market.synthetic import generate
from agent.plugins import warm
from agent.plugins.discovery import DiscoveredStrategy, discover, discover_file
from agent.plugins.sandbox import SandboxLimits
from agent.plugins.signals import compute_signals
from strategies import MACrossover

HOSTILE_DIR = Path(__file__).parents[2] / "data" / "hostile_plugins"
WALL_S = 3.0
MEMORY_MB = 768

GOOD_PLUGIN = '''
"""A well-behaved third-party plugin file, original: no shipped strategy reads volume."""

import numpy as np
import pandas as pd

from agent.plugins import Strategy


class VolumeMomentum(Strategy):
    name = "volume-momentum"
    version = "1.2.0"
    author = "Someone Else"
    payout_address = "0x00000000000000000000000000000000000000bb"
    description = "Squashed 12-bar change in log volume."
    params = {"window": 12}
    warmup_bars = 12

    def signal(self, candles: pd.DataFrame) -> pd.Series:
        return np.tanh(np.log1p(candles["volume"]).diff(self.p["window"]))
'''


def strategies_settings(plugin_dir: Path, **overrides: object) -> StrategiesSettings:
    """Settings with small sandbox limits, so hostile cases end quickly."""
    values: dict[str, object] = {
        "plugin_dir": plugin_dir,
        "cpu_seconds": 10.0,
        "memory_mb": MEMORY_MB,
        "wall_seconds": WALL_S,
        "file_size_mb": 4,
        "reference_bars": 1_500,
        "fixtures": ["planted-oracle"],
    }
    values.update(overrides)
    return StrategiesSettings.model_validate(values)


@pytest.fixture(scope="session")
def hostile_settings() -> StrategiesSettings:
    return strategies_settings(HOSTILE_DIR)


@pytest.fixture(scope="session")
def limits(hostile_settings: StrategiesSettings) -> SandboxLimits:
    return SandboxLimits.from_settings(hostile_settings)


@pytest.fixture(scope="session")
def corpus(hostile_settings: StrategiesSettings) -> dict[str, DiscoveredStrategy]:
    """Every strategy of the hostile corpus, discovered (in the sandbox) once per session."""
    found = discover(hostile_settings, shipped=False, packages=False)
    return {item.name: item for item in found}


@pytest.fixture(scope="session")
def good_plugin(tmp_path_factory: pytest.TempPathFactory) -> DiscoveredStrategy:
    """A benign third-party plugin file, discovered through the sandbox."""
    path = tmp_path_factory.mktemp("good_plugin") / "volume_momentum.py"
    path.write_text(GOOD_PLUGIN)
    (found,) = discover_file(path)
    assert found.ok, found.error
    return found


@pytest.fixture(scope="session")
def candles() -> pd.DataFrame:
    return generate(SyntheticSettings(seed=3, bars=300), "1h").candles


@dataclass(frozen=True)
class ProcessState:
    env: dict[str, str]
    cwd: str
    rss_mb: float
    children: frozenset[int]


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _children() -> frozenset[int]:
    """Pids of this process's live children (zombies included), read from /proc."""
    me, pids = os.getpid(), set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == me:
            pids.add(int(entry.name))
    return frozenset(pids)


def process_state() -> ProcessState:
    """The test process's state; its live zygotes (kept by design, one per plugin) aside."""
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    zygotes = {zygote.proc.pid for zygote in warm.running()}
    return ProcessState(env, os.getcwd(), _rss_mb(), _children() - zygotes)


def assert_still_healthy(before: ProcessState, candles: pd.DataFrame) -> None:
    """The asking process kept its environment, directory and memory, left no child process
    behind, and still computes a good signal right after (sandboxed good plugins run in the
    same call as the hostile one, see test_hostile_corpus.run)."""
    after = process_state()
    assert after.env == before.env
    assert after.cwd == before.cwd
    assert after.children <= before.children, "a sandbox child outlived its run"
    assert after.rss_mb - before.rss_mb < 150, "the asking process grew by more than 150 MB"
    matrix = compute_signals([MACrossover], candles, key=None)
    assert matrix.reasons == {}
    assert matrix.mask[100:].all()
    assert np.isfinite(matrix.values).all()


@pytest.fixture
def healthy(candles: pd.DataFrame) -> Iterator[None]:
    """Check, after the test, that the test process is unharmed (see `assert_still_healthy`)."""
    before = process_state()
    yield
    assert_still_healthy(before, candles)
