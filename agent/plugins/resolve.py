"""The one strategy resolver: strategy specs (`name` or `name:param=value,...`) to strategies.

Training, backtests, reward epochs and the service all name strategies the same way. A spec is
a strategy name with optional parameter overrides (values read as YAML, e.g. `noise:seed=3`);
the spec is also the signal's column name, so one strategy can appear with several parameter
sets. Names resolve among the shipped strategies, the test fixtures (`planted-oracle`, `noise`:
for tests and demos only, never listed to users) and then the discovered plugins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import yaml

from agent.errors import ConfigError, PluginError

if TYPE_CHECKING:
    from agent.config import Settings
    from agent.plugins.discovery import DiscoveredStrategy


def parse_strategy_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Split `name:param=value,...` into the name and its parameter overrides.

    Raises:
        ConfigError: the spec is malformed.
    """
    name, _, rest = spec.partition(":")
    params: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"agent.strategies entry {spec!r}: expected name:param=value[,param=value]"
            )
        params[key.strip()] = yaml.safe_load(value.strip())
    if not name.strip():
        raise ConfigError(f"agent.strategies entry {spec!r} has no strategy name")
    return name.strip(), params


def resolve_strategies(
    specs: Sequence[str] | None, settings: Settings | None = None
) -> list[DiscoveredStrategy]:
    """Turn strategy specs into runnable strategies for `compute_signals`, named by spec.

    Shipped strategies and test fixtures resolve without starting anything; other names are
    looked up among the discovered plugins (which loads them in the sandbox). `None` means
    every usable strategy Agora can see (shipped, installed and plugin-directory ones).

    Raises:
        ConfigError: a spec is malformed or names no usable strategy.
    """
    from agent.config import Settings
    from agent.plugins.discovery import DiscoveredStrategy, discover, discover_shipped, find
    from strategies.testing import NoiseStrategy, PlantedOracle

    settings = settings or Settings()
    if specs is None:
        return [item for item in discover(settings) if item.ok]
    known = {item.name: item for item in discover_shipped()}
    for fixture in (PlantedOracle, NoiseStrategy):
        known.setdefault(fixture.name, DiscoveredStrategy.from_class(fixture, origin="fixture"))
    parsed = [parse_strategy_spec(spec) for spec in specs]
    missing = [name for name, _ in parsed if name not in known]
    if missing:
        found = discover(settings, shipped=False)
        for name in missing:
            try:
                known[name] = find(found, name)
            except PluginError as e:
                raise ConfigError(f"agent.strategies: {e}") from e
    return [
        replace(known[name].with_params(**params), name=spec)
        for spec, (name, params) in zip(specs, parsed, strict=True)
    ]
