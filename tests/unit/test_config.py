from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from agent.config import Settings, effective_config, iter_key_paths, load_settings
from agent.errors import ConfigError
from agent.learn.space import load_space

ROOT = Path(__file__).parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_shipped_config_equals_the_built_in_defaults() -> None:
    loaded = load_settings(ROOT / "config.yaml", environ={}).model_dump(mode="json")
    defaults = Settings().model_dump(mode="json")
    for section, key in (("data", "dir"), ("strategies", "plugin_dir")):
        assert Path(loaded[section][key]).is_absolute()
        loaded[section][key] = defaults[section][key]
    assert loaded == defaults


def test_the_shipped_agent_settings_are_what_agora_tune_chose() -> None:
    """The learning defaults are the choice of the recorded study of tune/planted-edge.yaml
    (docs/scale-out.md), and that study searched the space file as shipped."""
    recorded = yaml.safe_load((ROOT / "tune" / "planted-edge.chosen.yaml").read_text())
    space = load_space(ROOT / "tune" / "planted-edge.yaml", Settings())
    assert recorded["space_hash"] == space.space_hash, "the space changed: run the study again"
    assert set(recorded["chosen"]) == {parameter.key for parameter in space.parameters}
    shipped = load_settings(ROOT / "config.yaml", environ={}).agent.model_dump(mode="json")
    built_in = Settings().agent.model_dump(mode="json")
    for key, value in recorded["chosen"].items():
        name = key.removeprefix("agent.")
        assert shipped[name] == value and built_in[name] == value, key


def test_every_config_key_is_documented_in_the_reference() -> None:
    reference = (ROOT / "docs" / "config.md").read_text()
    documented = set(re.findall(r"`([a-z_][a-z0-9_.]*)`", reference))
    missing = [path for path in iter_key_paths() if path not in documented]
    assert not missing, f"keys missing from docs/config.md: {missing}"


def test_every_documented_key_exists() -> None:
    reference = (ROOT / "docs" / "config.md").read_text()
    rows = re.findall(r"^\| `([a-z_][a-z0-9_.]*)` \|", reference, flags=re.M)
    assert rows
    unknown = sorted(set(rows) - set(iter_key_paths()))
    assert not unknown, f"docs/config.md documents keys that do not exist: {unknown}"


def test_misspelled_key_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "market:\n  synthetic:\n    sead: 3\n")
    with pytest.raises(ConfigError, match=r"unknown key 'market\.synthetic\.sead'") as info:
        load_settings(path, environ={})
    assert info.value.exit_code == 2


def test_the_replaced_originality_key_names_its_replacement(tmp_path: Path) -> None:
    path = write(tmp_path, "strategies:\n  originality_max_correlation: 0.9\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert str(info.value) == (
        f"{path}: unknown key 'strategies.originality_max_correlation' (it was replaced by "
        "strategies.originality_max_r2, the share of a new signal's variance the registered "
        "signals and their lags may explain (default 0.8); see docs/config.md)"
    )
    assert info.value.exit_code == 2
    settings = load_settings(
        write(tmp_path, "strategies:\n  originality_max_r2: 0.9\n  originality_lags: 5\n"),
        environ={},
    )
    assert (settings.strategies.originality_max_r2, settings.strategies.originality_lags) == (
        0.9,
        5,
    )
    with pytest.raises(ConfigError, match=r"strategies\.originality_lags = 25: .*less than or"):
        load_settings(write(tmp_path, "strategies:\n  originality_lags: 25\n"), environ={})


def test_wrong_type_names_path_value_and_expectation(tmp_path: Path) -> None:
    path = write(tmp_path, "rewards:\n  epoch_bars: lots\n")
    with pytest.raises(ConfigError, match=r"rewards\.epoch_bars = 'lots': .*integer"):
        load_settings(path, environ={})


def test_out_of_range_value_names_the_bound(tmp_path: Path) -> None:
    path = write(tmp_path, "service:\n  port: 70000\n")
    with pytest.raises(ConfigError, match=r"service\.port = 70000: .*less than or equal to 65535"):
        load_settings(path, environ={})


def test_bad_choice_lists_the_allowed_values(tmp_path: Path) -> None:
    path = write(tmp_path, "chain:\n  backend: ganache\n")
    with pytest.raises(
        ConfigError, match=r"chain\.backend = 'ganache': .*'embedded', 'anvil' or 'rpc'"
    ):
        load_settings(path, environ={})


def test_bad_timeframe_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "market:\n  timeframe: 1x\n")
    with pytest.raises(ConfigError, match=r"market\.timeframe = '1x'"):
        load_settings(path, environ={})


def test_non_stationary_garch_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "market:\n  synthetic:\n    garch_alpha: 0.2\n    garch_beta: 0.85\n")
    with pytest.raises(ConfigError, match="garch_alpha \\+ garch_beta must be < 1"):
        load_settings(path, environ={})


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "market:\n  symbol: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML at line"):
        load_settings(path, environ={})


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "absent.yaml", environ={})


def test_environment_overrides_nested_keys_with_yaml_values(tmp_path: Path) -> None:
    path = write(tmp_path, "market:\n  symbol: A/B\n")
    settings = load_settings(
        path,
        environ={
            "AGORA__market__synthetic__seed": "11",
            "AGORA__market__exchange__sandbox": "true",
            "AGORA__service__host": "127.0.0.2",
            "UNRELATED": "x",
        },
    )
    assert settings.market.synthetic.seed == 11
    assert settings.market.exchange.sandbox is True
    assert settings.service.host == "127.0.0.2"
    assert settings.market.symbol == "A/B"


def test_environment_override_is_validated_too(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'market\.colour'"):
        load_settings(write(tmp_path, ""), environ={"AGORA__market__colour": "red"})


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValidationError):
        settings.market.symbol = "X"  # type: ignore[misc]


def test_relative_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    path = write(tmp_path, "data:\n  dir: state\n")
    assert load_settings(path, environ={}).data.database_path == tmp_path / "state" / "agora.db"


def test_secrets_are_masked_but_env_var_names_are_not(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "market:\n  exchange:\n    api_key_env: MY_KEY\n    options:\n      secret: hunter2\n"
        "      apiKey: abc\n      defaultType: spot\n",
    )
    shown = effective_config(load_settings(path, environ={}))
    exchange = shown["market"]["exchange"]
    assert exchange["api_key_env"] == "MY_KEY"
    assert exchange["options"] == {"secret": "***", "apiKey": "***", "defaultType": "spot"}


def test_config_hash_changes_with_any_value() -> None:
    a = Settings()
    b = load_settings(None, environ={"AGORA__agent__seed": "1"})
    assert a.config_hash() != b.config_hash()


def test_a_bad_environment_override_is_blamed_on_the_variable_not_the_file(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "market:\n  symbol: A/B\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={"AGORA__market__synthetic__bars": "abc"})
    assert str(info.value).startswith(
        "environment variable AGORA__market__synthetic__bars: market.synthetic.bars = 'abc': "
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={"AGORA__market__synthetic": "{bars: 1}"})
    assert str(info.value).startswith("environment variable AGORA__market__synthetic: ")
    with pytest.raises(ConfigError, match=r"^environment variable AGORA__market__colour: unknown"):
        load_settings(path, environ={"AGORA__market__colour": "red"})
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: market\.synthetic\.bars"):
        load_settings(write(tmp_path, "market:\n  synthetic:\n    bars: 1\n"), environ={})


def test_a_number_out_of_range_names_the_allowed_range_on_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, "service:\n  poll_s: 0\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert str(info.value) == (
        f"{path}: service.poll_s = 0: Input should be greater than 0 (allowed: > 0.0 and <= 3600.0)"
    )
    with pytest.raises(ConfigError, match=r"\(allowed: 2 to 10000000\)$"):
        load_settings(None, environ={"AGORA__market__synthetic__bars": "10000001"})


def test_strategy_specs_are_checked_when_the_settings_load(tmp_path: Path) -> None:
    for spec, expected in (
        ("macd:fast", "expected name:param=value"),
        (":fast=3", "has no strategy name"),
        ("macd:fast=[", "fast=[ is not a value"),
    ):
        path = write(tmp_path, f"agent:\n  strategies: [{json.dumps(spec)}]\n")
        with pytest.raises(ConfigError, match=re.escape(expected)) as info:
            load_settings(path, environ={})
        assert f"agent.strategies = ['{spec}']: entry '{spec}'" in str(info.value)
        assert "\n" not in str(info.value)


def test_training_seeds_stay_within_what_numpy_accepts() -> None:
    with pytest.raises(ConfigError, match=r"agent\.seed = 4294967296: .*4294967295"):
        load_settings(None, environ={"AGORA__agent__seed": str(2**32)})
    with pytest.raises(ConfigError, match=r"seed \+ seeds - 1 = 4294967296, exceeds 2\*\*32 - 1"):
        load_settings(
            None, environ={"AGORA__agent__seed": str(2**32 - 1), "AGORA__agent__seeds": "2"}
        )
