"""Fixtures for the contract tests: both chain backends, with Agora deployed once per session.

Every test gets the contracts as `deploy_all` left them: the session deployment is snapshotted
before the test (`evm_snapshot`) and restored after it (`evm_revert`), which gives each test
clean contracts at a fraction of the cost of deploying them again. anvil comes from the npm
package in contracts/ (`make test` installs it); a missing binary is an error, not a skip.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from web3 import Web3
from web3.contract import Contract

from agent.chain.backends import AnvilBackend, ChainBackend, EmbeddedBackend
from agent.chain.contracts import load_artifact
from agent.chain.deploy import Deployment, deploy_all
from agent.config import Settings
from agent.errors import TransactionReverted
from agent.store import Store

BACKENDS = ["embedded", "anvil"]
MAX_UINT256 = 2**256 - 1
GAS_LIMIT = 8_000_000
"""Gas sent with transactions expected to succeed: skipping estimation makes py-evm ~6x faster."""


@dataclass
class ChainEnv:
    """A backend with Agora's contracts deployed and set up, plus named test accounts."""

    backend: ChainBackend
    deployment: Deployment
    store_path: Path
    """The (closed) database `deploy_all` recorded the session deployment in."""

    def __post_init__(self) -> None:
        self._expecting_revert = False
        w3 = self.backend.w3
        self.w3: Web3 = w3
        self.operator, self.alice, self.bob, self.carol = self.backend.accounts[:4]
        contract = self.deployment.contract
        self.base: Contract = contract(w3, "market_base")
        self.quote: Contract = contract(w3, "market_quote")
        self.pool: Contract = contract(w3, "pool")
        self.log: Contract = contract(w3, "decision_log")
        self.registry: Contract = contract(w3, "strategy_registry")
        self.reward_token: Contract = contract(w3, "reward_token")
        self.distributor: Contract = contract(w3, "reward_distributor")

    @property
    def name(self) -> str:
        return self.backend.name

    def transact(self, call: Any, sender: str | None = None) -> Any:
        """Send a transaction and return its receipt (raises TransactionReverted).

        Inside `reverts()` the gas is estimated, as Agora itself does, so the node reports the
        revert reason before anything is mined; elsewhere a fixed limit saves the estimate.
        """
        gas = None if self._expecting_revert else GAS_LIMIT
        return self.backend.transact(call, sender=sender, gas=gas)

    def deploy(self, name: str, *args: Any, folder: str = "") -> Contract:
        """Deploy a compiled contract (`folder="test"` for the fixtures) and bind it."""
        artifact = load_artifact(name, folder=folder)
        address = self.backend.deploy(artifact.abi, artifact.bytecode, *args)
        return self.w3.eth.contract(address=Web3.to_checksum_address(address), abi=artifact.abi)

    def fund(self, account: str, *, base: int = 0, quote: int = 0) -> None:
        """Mint market tokens to `account` and let the pool pull them (unlimited allowance)."""
        for token, amount in ((self.base, base), (self.quote, quote)):
            if amount:
                self.transact(token.functions.mint(account, amount))
                self.transact(token.functions.approve(self.pool.address, MAX_UINT256), account)

    def reserves(self) -> tuple[int, int]:
        """(base reserve, quote reserve) of the pool: token0 is the base token."""
        reserve0, reserve1, _ = self.pool.functions.getReserves().call()
        return int(reserve0), int(reserve1)

    def balances_of_pool(self) -> tuple[int, int]:
        return (
            int(self.base.functions.balanceOf(self.pool.address).call()),
            int(self.quote.functions.balanceOf(self.pool.address).call()),
        )

    def deadline(self, offset_s: int = 3_600) -> int:
        """A deadline `offset_s` after the latest block (negative: already expired)."""
        return int(self.w3.eth.get_block("latest")["timestamp"]) + offset_s

    @contextlib.contextmanager
    def reverts(self, reason: str) -> Iterator[None]:
        """Expect the block to raise TransactionReverted with exactly `reason`."""
        self._expecting_revert = True
        try:
            with pytest.raises(TransactionReverted) as caught:
                yield
        finally:
            self._expecting_revert = False
        assert caught.value.reason == reason, f"{self.name}: reverted with {caught.value.reason!r}"

    def snapshot(self) -> Any:
        return self.w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]

    def revert_to(self, snapshot_id: Any) -> None:
        self.w3.provider.make_request("evm_revert", [snapshot_id])  # type: ignore[arg-type]


def _deployed(backend: ChainBackend, data_dir: Path) -> ChainEnv:
    path = data_dir / f"{backend.name}.db"
    with Store(path) as store:
        deployment = deploy_all(backend, store, Settings())
    return ChainEnv(backend, deployment, path)


@pytest.fixture(scope="session")
def embedded_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChainEnv]:
    """The embedded chain with Agora deployed, shared by the session (use `chain`)."""
    with EmbeddedBackend() as backend:
        yield _deployed(backend, tmp_path_factory.mktemp("embedded"))


@pytest.fixture(scope="session")
def anvil_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChainEnv]:
    """One anvil node with Agora deployed, shared by the session (use `chain`)."""
    with AnvilBackend() as backend:
        yield _deployed(backend, tmp_path_factory.mktemp("anvil"))


def _clean(env: ChainEnv) -> Iterator[ChainEnv]:
    snapshot_id = env.snapshot()
    try:
        yield env
    finally:
        env.revert_to(snapshot_id)


@pytest.fixture(params=BACKENDS)
def chain(request: pytest.FixtureRequest) -> Iterator[ChainEnv]:
    """Agora's contracts as freshly deployed, on each backend in turn."""
    yield from _clean(request.getfixturevalue(f"{request.param}_env"))


@pytest.fixture
def deployed_store(chain: ChainEnv, tmp_path: Path) -> Iterator[Store]:
    """A copy of the database that records `chain`'s deployment, for this test to change."""
    copy = tmp_path / "agora.db"
    shutil.copyfile(chain.store_path, copy)
    with Store(copy) as store:
        yield store


@pytest.fixture
def embedded_chain(embedded_env: ChainEnv) -> Iterator[ChainEnv]:
    """Agora's contracts as freshly deployed, on the embedded backend only (for long tests)."""
    yield from _clean(embedded_env)
