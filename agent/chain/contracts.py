"""The compiled contracts shipped as package data: ABI, creation and runtime bytecode.

Running Agora needs neither Node nor a compiler: `contracts/build.mjs` writes these files and
`make test` fails when they differ from the Solidity sources.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from eth_utils import keccak

from agent.errors import ChainError

CONTRACT_NAMES = (
    "MarketToken",
    "ConstantProductPool",
    "DecisionLog",
    "StrategyRegistry",
    "RewardToken",
    "RewardDistributor",
)


@dataclass(frozen=True)
class Artifact:
    """One compiled contract."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str

    @property
    def runtime_code_hash(self) -> str:
        """keccak256 of the runtime bytecode, to recognise this contract at an address."""
        return "0x" + keccak(hexstr=self.deployed_bytecode).hex()


@cache
def load_artifact(name: str, *, folder: str = "") -> Artifact:
    """Load a compiled contract by name (`folder="test"` for the test fixtures)."""
    root = resources.files("agent.chain").joinpath("artifacts")
    path = root.joinpath(folder, f"{name}.json") if folder else root.joinpath(f"{name}.json")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ChainError(f"no compiled contract named {name!r} (run `make contracts`)") from e
    return Artifact(
        name=data["contractName"],
        abi=data["abi"],
        bytecode=data["bytecode"],
        deployed_bytecode=data["deployedBytecode"],
    )
