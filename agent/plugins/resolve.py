"""The one strategy resolver: strategy specs (`name` or `name:param=value,...`) to strategies.

Training, backtests, reward epochs and the service all name strategies the same way. A spec is
a strategy name with optional parameter overrides (values read as YAML, e.g. `noise:seed=3`);
the spec is also the signal's column name, so one strategy can appear with several parameter
sets. Names resolve among the shipped strategies, the test fixtures (`planted-oracle`, `noise`:
for tests and demos only, never listed to users) and then the discovered plugins. The spec's
form is checked when the settings load (`agent.config.parse_strategy_spec`); its name and
parameters when it resolves here (`check_params`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from agent.config import parse_strategy_spec
from agent.errors import ConfigError, PluginError

if TYPE_CHECKING:
    from agent.config import Settings
    from agent.plugins.discovery import DiscoveredStrategy


def check_params(
    item: DiscoveredStrategy, params: Mapping[str, Any], *, spec: str, where: str
) -> None:
    """Refuse parameters a strategy does not declare, and (shipped code) values it refuses.

    Names are checked against the strategy's declared `params`. Trusted (shipped) strategies
    are also built with the values, which runs their own checks; a third-party strategy's
    values are checked when it runs, in the sandbox.

    Raises:
        ConfigError: naming the spec, the parameter and what the strategy takes.
    """
    if item.info is None:
        return
    unknown = sorted(set(params) - set(item.info.params))
    if unknown:
        takes = ", ".join(sorted(item.info.params)) or "no parameters"
        raise ConfigError(
            f"{where} entry {spec!r}: strategy {item.info.name!r} has no parameter "
            f"{', '.join(repr(name) for name in unknown)} (it takes {takes})"
        )
    if item.trusted and item.strategy_class is not None and params:
        try:
            item.strategy_class(**{**item.params, **params})
        except Exception as e:  # shipped code's own checks: PluginError, or a bad type
            reason = " ".join(str(e).split()) or type(e).__name__
            raise ConfigError(f"{where} entry {spec!r}: {reason}") from e


def resolve_strategies(
    specs: Sequence[str] | None,
    settings: Settings | None = None,
    *,
    where: str = "agent.strategies",
) -> list[DiscoveredStrategy]:
    """Turn strategy specs into runnable strategies for `compute_signals`, named by spec.

    Shipped strategies and test fixtures resolve without starting anything; other names are
    looked up among the discovered plugins (which loads them in the sandbox). `None` means
    every usable strategy Agora can see (shipped, installed and plugin-directory ones).
    Parameter names are checked against each strategy's declared `params` (`check_params`).

    Args:
        specs: strategy specs (`name` or `name:param=value,...`).
        settings: the configuration (plugin directory, sandbox).
        where: the setting the specs come from, for messages.

    Raises:
        ConfigError: a spec is malformed, names no usable strategy or a parameter it refuses.
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
    parsed = [parse_strategy_spec(spec, where=where) for spec in specs]
    missing = [name for name, _ in parsed if name not in known]
    if missing:
        found = discover(settings, shipped=False)
        for name in missing:
            try:
                known[name] = find(found, name)
            except PluginError as e:
                raise ConfigError(f"{where}: {e}") from e
    for spec, (name, params) in zip(specs, parsed, strict=True):
        check_params(known[name], params, spec=spec, where=where)
    return [
        replace(known[name].with_params(**params), name=spec)
        for spec, (name, params) in zip(specs, parsed, strict=True)
    ]
