"""Fixtures for the DEX integration tests: a real chain (embedded and anvil) and fresh pools.

Every test that takes `backend` runs once per chain. Anvil is never skipped: if its binary is
missing the tests fail, because parity on anvil is part of the contract of this package.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from web3 import Web3
from web3.contract import Contract

from agent.chain.backends import AnvilBackend, ChainBackend, EmbeddedBackend
from agent.chain.contracts import load_artifact
from agent.errors import ChainError

BACKENDS = ("embedded", "anvil")
MAX_UINT256 = 2**256 - 1
_BATCH_SIZE = 500


def open_backend(name: str) -> ChainBackend:
    """Start a chain backend by name; fail (never skip) when anvil cannot start."""
    if name == "embedded":
        return EmbeddedBackend()
    try:
        return AnvilBackend()
    except ChainError as error:
        pytest.fail(f"the anvil backend must run in these tests, but it cannot start: {error}")


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[ChainBackend]:
    """A fresh chain per test module and backend (the tests deploy their own contracts)."""
    chain = open_backend(request.param)
    try:
        yield chain
    finally:
        chain.close()


@dataclass(frozen=True)
class DeployedPool:
    """Two MarketTokens and a ConstantProductPool over them, deployed by the operator."""

    pool: Contract
    base: Contract
    quote: Contract
    fee_bps: int
    base_is_token0: bool

    @property
    def address(self) -> str:
        return str(self.pool.address)


PoolFactory = Callable[..., DeployedPool]


def deploy_pool(
    backend: ChainBackend,
    *,
    fee_bps: int = 30,
    base_is_token0: bool = True,
    reserve_base: int = 0,
    reserve_quote: int = 0,
    base_decimals: int = 18,
    quote_decimals: int = 6,
) -> DeployedPool:
    """Deploy base/quote MarketTokens and a pool; seed it from the operator if reserves given."""
    token = load_artifact("MarketToken")
    pool_artifact = load_artifact("ConstantProductPool")
    w3 = backend.w3
    base_address = Web3.to_checksum_address(
        backend.deploy(token.abi, token.bytecode, "Base", "BASE", base_decimals)
    )
    quote_address = Web3.to_checksum_address(
        backend.deploy(token.abi, token.bytecode, "USD", "USD", quote_decimals)
    )
    token0, token1 = (
        (base_address, quote_address) if base_is_token0 else (quote_address, base_address)
    )
    pool_address = Web3.to_checksum_address(
        backend.deploy(pool_artifact.abi, pool_artifact.bytecode, token0, token1, fee_bps)
    )
    deployed = DeployedPool(
        pool=w3.eth.contract(address=pool_address, abi=pool_artifact.abi),
        base=w3.eth.contract(address=base_address, abi=token.abi),
        quote=w3.eth.contract(address=quote_address, abi=token.abi),
        fee_bps=fee_bps,
        base_is_token0=base_is_token0,
    )
    if reserve_base or reserve_quote:
        operator = backend.operator
        fund(backend, deployed, operator, base=reserve_base, quote=reserve_quote)
        for contract in (deployed.base, deployed.quote):
            backend.transact(contract.functions.approve(pool_address, MAX_UINT256))
        amounts = (reserve_base, reserve_quote) if base_is_token0 else (reserve_quote, reserve_base)
        backend.transact(deployed.pool.functions.addLiquidity(*amounts, operator))
    return deployed


def fund(
    backend: ChainBackend, deployed: DeployedPool, account: str, *, base: int = 0, quote: int = 0
) -> None:
    """Mint tokens to `account` (the operator owns both MarketTokens)."""
    if base:
        backend.transact(deployed.base.functions.mint(account, base))
    if quote:
        backend.transact(deployed.quote.functions.mint(account, quote))


@pytest.fixture
def pool_factory(backend: ChainBackend) -> PoolFactory:
    """`pool_factory(fee_bps=..., base_is_token0=..., reserve_base=..., reserve_quote=...)`."""

    def make(**kwargs: Any) -> DeployedPool:
        return deploy_pool(backend, **kwargs)

    return make


def view_many(backend: ChainBackend, calls: Sequence[Any]) -> list[Any]:
    """Run many view calls; batched into few JSON-RPC requests where the provider allows it."""
    if backend.name != "anvil":
        return [call.call() for call in calls]
    results: list[Any] = []
    for start in range(0, len(calls), _BATCH_SIZE):
        with backend.w3.batch_requests() as batch:
            for call in calls[start : start + _BATCH_SIZE]:
                batch.add(call)
            results.extend(batch.execute())
    return results
