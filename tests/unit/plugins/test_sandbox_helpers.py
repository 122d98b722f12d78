"""Sandbox helpers that need no child process: environment, limits, metadata, trusted runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from agent.config import StrategiesSettings
from agent.errors import PluginError
from agent.plugins.interface import HIDDEN_ATTR, Strategy
from agent.plugins.sandbox import (
    PluginLocation,
    SandboxLimits,
    info_from_json,
    run_trusted,
    scrubbed_environment,
)

CANDLES = pd.DataFrame(
    {
        "open_time": np.arange(5, dtype="int64") * 3_600_000,
        "open": [1.0, 2.0, 3.0, 4.0, 5.0],
        "high": [1.5, 2.5, 3.5, 4.5, 5.5],
        "low": [0.5, 1.5, 2.5, 3.5, 4.5],
        "close": [2.0, 3.0, 4.0, 5.0, 6.0],
        "volume": [1.0] * 5,
    }
)


def test_the_child_environment_holds_only_constants_and_private_dirs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AGORA_PRIVATE_KEY", "0xdead")
    monkeypatch.setenv("EXCHANGE_SECRET", "s3cret")
    monkeypatch.setenv("AGORA__chain__rpc_url", "http://x")
    monkeypatch.setenv("LANG", "en_US.UTF-8")
    env = scrubbed_environment("/tmp/agora-plugin-x")
    assert set(env) == {
        "PATH",
        "LANG",
        "HOME",
        "TMPDIR",
        "OPENBLAS_NUM_THREADS",
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
    }
    assert env["HOME"] == env["TMPDIR"] == "/tmp/agora-plugin-x"
    assert env["LANG"] == "C.UTF-8", "nothing is inherited from the agent's environment"
    assert "0xdead" not in env.values() and "s3cret" not in env.values()


def test_limits_come_from_the_strategies_settings() -> None:
    settings = StrategiesSettings(cpu_seconds=3, memory_mb=512, wall_seconds=2, file_size_mb=1)
    assert SandboxLimits.from_settings(settings) == SandboxLimits(3, 512, 2, 1, "bubblewrap")
    unsafe = StrategiesSettings(sandbox="none")
    assert SandboxLimits.from_settings(unsafe).sandbox == "none"
    assert str(PluginLocation("file", "/p/a.py", "A")) == "file:/p/a.py:A"
    assert str(PluginLocation("module", "pkg.mod")) == "module:pkg.mod"


GOOD_INFO = {
    "name": "remote",
    "version": "1.0.0",
    "author": "Ada",
    "payout_address": "0x" + "ab" * 20,
    "description": "d",
    "warmup_bars": 3,
    "params": {"window": 3},
    "interface_version": 1,
    "hidden_inputs": [],
}


def test_metadata_from_a_child_is_rebuilt_and_checked() -> None:
    info = info_from_json(GOOD_INFO)
    assert (info.name, info.warmup_bars, dict(info.params)) == ("remote", 3, {"window": 3})
    assert info.hidden_inputs == ()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"warmup_bars": "3"}, "field 'warmup_bars' is not a int"),
        ({"warmup_bars": True}, "field 'warmup_bars' is not a int"),
        ({"name": "Bad Name!"}, "name 'Bad Name!' must be 2-48 characters"),
        ({"interface_version": 99}, "targets interface version 99"),
        ({"hidden_inputs": [1]}, "hidden_inputs are not names"),
        ({"payout_address": "0x12"}, "payout_address '0x12' is not an address"),
    ],
)
def test_malformed_metadata_from_a_child_is_refused(
    change: dict[str, object], message: str
) -> None:
    with pytest.raises(PluginError, match=message.replace("(", r"\(")):
        info_from_json({**GOOD_INFO, **change})


class Hidden(Strategy):
    name = "hidden-reader"
    hidden_inputs = ("planted",)

    def signal(self, candles: pd.DataFrame) -> np.ndarray:
        return np.asarray(candles.attrs[HIDDEN_ATTR]["planted"]) / 10


class Blind(Strategy):
    name = "blind"

    def signal(self, candles: pd.DataFrame) -> np.ndarray:
        seen = HIDDEN_ATTR in candles.attrs
        candles["close"] = 0.0  # mutating its input must not reach the caller
        return np.full(len(candles), 1.0 if seen else -1.0)


class Crashes(Strategy):
    name = "crashes"

    def signal(self, candles: pd.DataFrame) -> np.ndarray:
        return np.zeros(len(candles)) / candles["missing"]


def test_trusted_runs_pass_hidden_series_only_to_declaring_strategies() -> None:
    frame = CANDLES.copy()
    frame.attrs = {HIDDEN_ATTR: {"planted": np.arange(5.0)}}
    (hidden,) = run_trusted(Hidden, [frame])
    (blind,) = run_trusted(Blind, [frame])
    assert hidden.values is not None and list(hidden.values) == [0.0, 0.1, 0.2, 0.3, 0.4]
    assert blind.values is not None and (blind.values == -1.0).all()
    assert (frame["close"] == CANDLES["close"]).all()
    (lacking,) = run_trusted(Hidden, [CANDLES])
    assert lacking.reason == "needs the hidden series planted, which this data lacks"


def test_trusted_failures_are_results_not_exceptions() -> None:
    (crash,) = run_trusted(Crashes, [CANDLES])
    assert not crash.ok and crash.values is None
    assert crash.reason is not None and crash.reason.startswith("raised KeyError: 'missing'")
    results = run_trusted(Blind, [CANDLES, CANDLES], params={"window": 3})
    assert len(results) == 2 and results[0] == results[1]
    assert str(results[0].reason).startswith(
        "could not be created: PluginError: strategy 'blind': unknown parameter(s) window; "
        "it takes none ("
    )
