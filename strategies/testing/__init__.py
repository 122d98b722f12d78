"""Test-only strategies: never shipped, never offered to users, never registered for rewards.

`PlantedOracle` reads the synthetic market's hidden planted series, so it has an edge by
construction and lets tests check that the agent and the attribution find a known signal;
`NoiseStrategy` has none and lets them check that noise earns nothing.
"""

from strategies.testing.noise import NoiseStrategy
from strategies.testing.planted_oracle import PlantedOracle

__all__ = ["NoiseStrategy", "PlantedOracle"]
