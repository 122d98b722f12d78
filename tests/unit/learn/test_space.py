"""The search space file of `agora tune`: checked against the configuration before any trial."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import Settings
from agent.errors import ConfigError
from agent.learn.space import load_space, settings_with

REPO = Path(__file__).resolve().parents[3]


def _space(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


def test_the_shipped_space_loads_and_every_value_it_can_take_is_a_valid_setting() -> None:
    space = load_space(REPO / "tune" / "planted-edge.yaml", Settings())
    assert space.trials >= 8 and space.seeds_per_trial == 3 and space.objective == "min"
    keys = {p.key for p in space.parameters}
    assert {"agent.exposure_levels", "agent.turnover_penalty", "agent.learning_rate"} <= keys
    for parameter in space.parameters:
        for value in parameter.values:
            assert parameter.decode(parameter.encode(value)) == value
            changed = settings_with(Settings(), {parameter.key: value}, source="test")
            assert getattr(changed.agent, parameter.name) == pytest.approx(value)


def test_trials_from_the_command_line_replace_the_files(tmp_path: Path) -> None:
    path = _space(tmp_path, "trials: 30\nspace:\n  agent.gamma: {uniform: [0.9, 0.999]}\n")
    assert load_space(path, Settings()).trials == 30
    assert load_space(path, Settings(), trials=8).trials == 8


def test_choices_that_are_lists_travel_as_json_text_and_come_back_as_lists(
    tmp_path: Path,
) -> None:
    path = _space(tmp_path, "space:\n  agent.net_arch: {choice: [[16], [32, 32]]}\n")
    (parameter,) = load_space(path, Settings()).parameters
    assert parameter.encode([32, 32]) == "[32, 32]"
    assert parameter.decode("[32, 32]") == [32, 32]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("space:\n  agent.lookback_bars: {choice: [4, 0]}\n", "agent.lookback_bars = 0"),
        ("space:\n  agent.learning_rate: {loguniform: [0.0, 0.1]}\n", "low must be > 0"),
        ("space:\n  agent.gamma: {uniform: [0.99, 0.9]}\n", "low < high"),
        ("space:\n  agent.gamma: {normal: [0.9, 0.1]}\n", "space.agent.gamma: expected one of"),
        ("space:\n  agent.gama: {uniform: [0.9, 0.99]}\n", "unknown key 'agent.gama'"),
        ("space:\n  dex.fee_bps: {choice: [5, 30]}\n", "only agent.* keys"),
        ("space:\n  agent.split: {choice: [1]}\n", "cannot be searched"),
        ("space:\n  agent.seed: {int: [0, 9]}\n", "cannot be searched"),
        ("trails: 8\nspace:\n  agent.gamma: {uniform: [0.9, 0.99]}\n", "unknown key 'trails'"),
        ("trials: 0\nspace:\n  agent.gamma: {uniform: [0.9, 0.99]}\n", "trials = 0"),
        ("objective: max\nspace:\n  agent.gamma: {uniform: [0.9, 0.99]}\n", "mean or min"),
        ("metric: sortino\nspace:\n  agent.gamma: {uniform: [0.9, 0.99]}\n", "metric = 'sortino'"),
        ("name: x\n", "'space' must map"),
        ("space: [\n", "invalid YAML"),
    ],
)
def test_a_bad_space_is_refused_naming_the_file_and_the_key(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = _space(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_space(path, Settings())
    assert expected in str(caught.value)
    assert str(path) in str(caught.value)
