"""The resolver checks every strategy spec's parameters against what the strategy declares."""

from __future__ import annotations

import pytest

from agent.errors import ConfigError
from agent.plugins.discovery import DiscoveredStrategy
from agent.plugins.resolve import check_params, resolve_strategies
from strategies.macd import MACD


def test_a_parameter_the_strategy_does_not_declare_is_refused_with_what_it_takes() -> None:
    with pytest.raises(ConfigError) as info:
        resolve_strategies(["ma-crossover", "macd:nonexist=3,fsat=2"])
    assert str(info.value) == (
        "agent.strategies entry 'macd:nonexist=3,fsat=2': strategy 'macd' has no parameter "
        "'fsat', 'nonexist' (it takes fast, scale, signal, slow)"
    )


def test_a_shipped_strategy_checks_the_values_too() -> None:
    with pytest.raises(ConfigError, match=r"^strategies entry 'macd:fast=40': .*fast < slow"):
        resolve_strategies(["macd:fast=40"], where="strategies")


def test_good_specs_resolve_with_their_parameters() -> None:
    macd, noise = resolve_strategies(["macd:fast=5,slow=20", "noise:seed=3"])
    assert (macd.name, dict(macd.params)) == ("macd:fast=5,slow=20", {"fast": 5, "slow": 20})
    assert (noise.name, dict(noise.params)) == ("noise:seed=3", {"seed": 3})


def test_check_params_names_where_the_parameters_come_from() -> None:
    item = DiscoveredStrategy.from_class(MACD)
    check_params(item, {"fast": 5}, spec="macd", where="strategy_params")
    with pytest.raises(ConfigError, match=r"^strategy_params entry 'macd': .*'window'"):
        check_params(item, {"window": 5}, spec="macd", where="strategy_params")
