"""Strategy plugins: the contributor's interface, discovery, validation and isolation."""

from agent.plugins.interface import INTERFACE_VERSION, Strategy, StrategyInfo

__all__ = ["INTERFACE_VERSION", "Strategy", "StrategyInfo"]
