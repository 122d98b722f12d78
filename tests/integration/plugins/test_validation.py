"""Validation on the reference data set: good plugins pass, each kind of fault fails its check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agent.config import StrategiesSettings
from agent.plugins.discovery import DiscoveredStrategy
from agent.plugins.interface import Strategy
from agent.plugins.validation import reference_candles, reference_signals, validate
from strategies import SHIPPED
from strategies.testing import NoiseStrategy, PlantedOracle
from tests.integration.plugins.conftest import GOOD_PLUGIN, strategies_settings

CHECKS = ["load", "shape and range", "determinism", "causality", "speed", "originality"]


def test_a_good_third_party_file_passes_every_check_in_the_sandbox(
    good_plugin: DiscoveredStrategy, hostile_settings: StrategiesSettings
) -> None:
    report = validate(good_plugin, hostile_settings, registered=SHIPPED)
    assert [c.name for c in report.checks] == CHECKS
    assert report.passed, report.failures
    assert report.code_hash == good_plugin.code_hash
    assert report.signal is not None and len(report.signal) == hostile_settings.reference_bars
    assert report.seconds_per_10k_bars is not None and report.seconds_per_10k_bars < 2.0
    assert report.check("causality").message == (
        "unchanged up to each of 20 cut points with later candles removed or altered, and at "
        "460 random bars of fresh data recomputed from the candles up to each"
    )
    originality = report.check("originality").message
    assert originality.startswith("highest R² 0.0"), originality  # volume: no shipped one reads it
    assert originality.endswith(" alone) (limit 0.8)"), originality


def test_validate_accepts_a_path_or_a_name(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "volume_momentum.py").write_text(GOOD_PLUGIN)
    settings = strategies_settings(plugins)
    by_path = validate(plugins / "volume_momentum.py", settings)
    by_name = validate("volume-momentum", settings)
    assert by_path.passed and by_name.passed
    assert by_path.code_hash == by_name.code_hash
    assert np.array_equal(by_path.signal, by_name.signal, equal_nan=True)  # type: ignore[arg-type]
    missing = validate("no-such-strategy", settings)
    assert not missing.passed
    assert missing.checks[0].message.startswith("no strategy named 'no-such-strategy'")


def test_a_plugin_that_does_not_load_fails_the_load_check(tmp_path: Path) -> None:
    path = tmp_path / "broken.py"
    path.write_text("import agora_missing_module\n")
    report = validate(path, strategies_settings(tmp_path))
    assert [(c.name, c.passed) for c in report.checks] == [("load", False)]
    assert "No module named 'agora_missing_module'" in report.checks[0].message


@pytest.mark.parametrize("strategy", SHIPPED)
def test_shipped_strategies_pass_validation_though_they_explain_each_other(
    strategy: type[Strategy], hostile_settings: StrategiesSettings
) -> None:
    shipped = [DiscoveredStrategy.from_class(cls) for cls in SHIPPED]
    (item,) = [d for d in shipped if d.name == strategy.name]
    report = validate(item, hostile_settings, registered=[*shipped, NoiseStrategy])
    assert report.passed, [f"{c.name}: {c.message}" for c in report.failures]
    # measured, not refused: they were registered before any submission
    message = report.check("originality").message
    r2 = float(message.removeprefix("highest R² ").split(",")[0])
    assert 0.7 < r2 < 1.0, message
    if r2 >= 0.8:
        assert message.endswith(
            "shipped with Agora, registered before any submission, so not refused"
        )
    # the same signal submitted under a new name is refused when the others explain >= 0.8
    others = [d for d in shipped if d.name != strategy.name]
    newcomer = validate(strategy, hostile_settings, registered=[*others, NoiseStrategy])
    assert newcomer.check("originality").passed == (r2 < 0.8), newcomer.check("originality")


@pytest.mark.parametrize("strategy", [NoiseStrategy, PlantedOracle])
def test_fixtures_pass_validation_against_the_shipped_strategies(
    strategy: type[Strategy], hostile_settings: StrategiesSettings
) -> None:
    registered = reference_signals([*SHIPPED, NoiseStrategy], hostile_settings)
    report = validate(strategy, hostile_settings, registered=registered)
    assert report.passed, [f"{c.name}: {c.message}" for c in report.failures]
    assert report.check("originality").message.startswith(("highest R² 0.0", "highest R² 0.1"))


class Unseeded(Strategy):
    name = "unseeded"

    def signal(self, candles: pd.DataFrame) -> np.ndarray:
        return np.random.default_rng().uniform(-1, 1, len(candles))


class Sluggish(Strategy):
    name = "sluggish"

    def signal(self, candles: pd.DataFrame) -> np.ndarray:
        total = 0.0
        for value in candles["close"].to_numpy()[: len(candles)]:  # a slow Python loop
            for _ in range(200):
                total += value * 1e-12
        return np.zeros(len(candles)) + min(total, 0.0)


def test_a_nondeterministic_strategy_fails_determinism(
    hostile_settings: StrategiesSettings,
) -> None:
    report = validate(Unseeded, hostile_settings)
    assert "determinism" in [c.name for c in report.failures]
    assert report.check("determinism").message.startswith("two runs on the same candles differ at ")


def test_a_slow_strategy_fails_the_speed_budget(tmp_path: Path) -> None:
    settings = strategies_settings(tmp_path, speed_budget_s_per_10k_bars=0.01, reference_bars=400)
    report = validate(Sluggish, settings)
    assert [c.name for c in report.failures] == ["speed"]
    assert report.check("speed").message.startswith("too slow: ")
    assert report.check("speed").message.endswith("s per 10,000 bars (budget 0.01 s)")


def test_the_reference_data_set_is_seeded_and_carries_the_planted_series(
    hostile_settings: StrategiesSettings,
) -> None:
    first, again = reference_candles(hostile_settings), reference_candles(hostile_settings)
    pd.testing.assert_frame_equal(first, again)
    assert len(first) == hostile_settings.reference_bars
    assert set(first.attrs["agora_hidden"]) == {"planted"}
    other = reference_candles(hostile_settings.model_copy(update={"reference_seed": 1}))
    assert not np.allclose(first["close"], other["close"])
