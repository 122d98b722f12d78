"""Scenario files: shipped ones validate, unknown keys and bad values are refused by key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.backtest.scenario import (
    Scenario,
    default_scenario,
    load_scenario,
    parse_scenario,
    with_overrides,
)
from agent.config import DexSettings, Settings
from agent.errors import ConfigError

SHIPPED = sorted((Path(__file__).resolve().parents[3] / "backtests").glob("*.yaml"))


def test_a_few_meaningful_scenarios_are_shipped() -> None:
    names = {p.stem for p in SHIPPED}
    assert {"ma-crossover-synthetic", "strategies-vs-baselines", "walkforward-ppo"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_scenario_validates(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.name == path.stem
    assert scenario.description, "a shipped scenario says what it shows"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"polcy": {}}, "unknown key 'polcy'"),
        ({"data": {"sorce": "store"}}, "unknown key 'data.sorce'"),
        ({"policy": {"mapping": {"knd": "x"}}}, "unknown key 'policy.mapping.knd'"),
        ({"costs": {"fee_bps": 5000}}, "costs.fee_bps = 5000"),
        ({"data": {"source": "ftp"}}, "data.source = 'ftp'"),
        ({"data": {"source": "csv"}}, "data.path is required"),
        ({"policy": {"model": "live", "strategy": "macd"}}, "not both"),
        ({"baselines": ["hodl"]}, "baselines.0 = 'hodl'"),
        ({"walkforward": {"train_bars": 10}}, "walkforward.train_bars = 10"),
        ({"data": {"source": "synthetic", "synthetic": {"bars": 1}}}, "data.synthetic.bars"),
        ({"policy": {"mapping": {"enter_above": -0.5, "exit_below": 0.5}}}, "exit_below"),
        ({"strategies": ["macd"], "policy": {"strategy": "rsi-reversion"}}, "not in strategies"),
    ],
)
def test_bad_scenarios_are_refused_naming_the_key(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_scenario(raw, "x.yaml")
    assert message in str(caught.value)
    assert str(caught.value).startswith("x.yaml: ")


def test_load_reports_missing_files_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_scenario(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML at line"):
        load_scenario(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_scenario(listing)


def test_csv_paths_are_relative_to_the_scenario_file(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text("data:\n  source: csv\n  path: prices.csv\n")
    scenario = load_scenario(tmp_path / "s.yaml")
    assert scenario.data.path == tmp_path / "prices.csv"


def test_command_line_overrides_replace_the_files_values() -> None:
    base = Scenario.model_validate({"policy": {"strategy": "macd"}, "costs": {"fee_bps": 5}})
    changed = with_overrides(
        base, model="live", seed=4, start="2024-02-01", fee_bps=10, execution="onchain"
    )
    assert changed.policy.model == "live" and changed.policy.strategy is None
    assert changed.seed == 4 and changed.data.start == "2024-02-01"
    assert changed.costs.fee_bps == 10 and changed.execution == "onchain"
    assert with_overrides(base) == base
    with pytest.raises(ConfigError, match=r"costs\.fee_bps"):
        with_overrides(base, fee_bps=-1)


def test_costs_left_out_come_from_the_dex_settings() -> None:
    scenario = Scenario.model_validate({"costs": {"fee_bps": 5}})
    costs = scenario.costs.resolve(DexSettings(gas_price_gwei=7.0))
    assert costs["fee_bps"] == 5 and costs["gas_price_gwei"] == 7.0
    assert costs["liquidity_quote"] == DexSettings().liquidity_quote


def test_the_default_scenario_is_the_configured_market_against_everything() -> None:
    scenario = default_scenario(Settings())
    assert scenario.data.source == "store" and scenario.compare_strategies
    assert scenario.baselines == ("buy-and-hold", "flat", "random")
