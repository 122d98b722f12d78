"""Deploy Agora's contracts once per chain and find them again on the next start.

`deploy_all` records every address in the store under a *chain key* (`anvil:31337`). On the
next call it reuses the recorded contracts after checking that the runtime code at each
address is still the code Agora compiled, so a chain that was reset or replaced is reported
instead of silently trading against nothing. Chains that do not survive a restart (an in-memory
embedded EVM, anvil without a state file) get a key unique to the backend object, so a fresh
chain is always recognised as fresh and deployed anew.
"""

from __future__ import annotations

import json
import math
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any

from eth_utils import keccak
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import Web3Exception

from agent.chain.backends import ChainBackend
from agent.chain.contracts import load_artifact
from agent.chain.node import RECOVER_HINT, ChainLost
from agent.config import Settings
from agent.dex.amm import BASE_DECIMALS, QUOTE_DECIMALS, to_units
from agent.errors import ChainError
from agent.store import DeploymentRecord, Store

DEFAULT_INITIAL_PRICE = 100.0
"""Quote per base the pool is seeded at, unless the caller says otherwise."""

CONTRACTS: dict[str, str] = {
    "market_quote": "MarketToken",
    "market_base": "MarketToken",
    "pool": "ConstantProductPool",
    "decision_log": "DecisionLog",
    "strategy_registry": "StrategyRegistry",
    "reward_token": "RewardToken",
    "reward_distributor": "RewardDistributor",
}
"""Contract name in a deployment -> compiled artifact, in deployment (dependency) order."""

DEPENDENCIES: dict[str, tuple[str, ...]] = {
    "pool": ("market_base", "market_quote"),
    "reward_distributor": ("reward_token",),
}
"""Contracts whose constructor takes other contracts: redeployed when one of those is."""

QUOTE_TOKEN = ("Agora USD", "aUSD", QUOTE_DECIMALS)
BASE_TOKEN = ("Agora Base", "aBASE", BASE_DECIMALS)
MAX_UINT256 = 2**256 - 1
REDEPLOY_HINT = f"the chain was reset or replaced (or its state lost); {RECOVER_HINT}"

_instance_markers: weakref.WeakKeyDictionary[ChainBackend, str] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Deployment:
    """Where Agora's contracts live on one chain (checksum addresses).

    Attributes:
        chain_id: the chain's EIP-155 id.
        backend: the backend name (`embedded`, `anvil`, `rpc`).
        chain_key: the key the addresses are recorded under in the store.
        market_quote: the quote token (Agora USD, 6 decimals).
        market_base: the base token (Agora Base, 18 decimals); the pool's token0.
        pool: the constant-product pool (base, quote).
        decision_log: the DecisionLog.
        strategy_registry: the StrategyRegistry.
        reward_token: the RewardToken (AGR).
        reward_distributor: the RewardDistributor (holds MINTER_ROLE on the reward token).
        deployed: the contracts this call deployed (empty when everything was reused).
    """

    chain_id: int
    backend: str
    chain_key: str
    market_quote: str
    market_base: str
    pool: str
    decision_log: str
    strategy_registry: str
    reward_token: str
    reward_distributor: str
    deployed: tuple[str, ...] = field(default=(), compare=False)

    def addresses(self) -> dict[str, str]:
        """Return contract name -> address, in deployment order."""
        return {name: getattr(self, name) for name in CONTRACTS}

    def contract(self, w3: Web3, name: str) -> Contract:
        """Return a web3 contract object for one of the deployed contracts, by name."""
        if name not in CONTRACTS:
            raise ChainError(f"no contract {name!r} in a deployment (known: {list(CONTRACTS)})")
        return w3.eth.contract(address=getattr(self, name), abi=load_artifact(CONTRACTS[name]).abi)


def chain_key(backend: ChainBackend) -> str:
    """Return the key that identifies the backend's chain in the store.

    A persistent chain is `<backend>:<chain id>`; the embedded chain file, whose chain id every
    copy shares, also carries its genesis hash (`embedded:<id>:<genesis>`), the same in every
    process that opens the file and different for a chain rebuilt by `agora chain recover`. A
    chain that is lost when its node stops carries its genesis hash and a marker unique to the
    node (its pid, so every process attached to it agrees) or to this backend object, so records
    made on an earlier, vanished chain never match it.
    """
    key = f"{backend.name}:{_chain_id(backend)}"
    if backend.persistent:
        if backend.name != "embedded":
            return key
        return f"{key}:{_genesis_prefix(backend, key)}"
    marker = _instance_markers.get(backend)
    if marker is None:
        unique = backend.node_marker or uuid.uuid4().hex[:12]
        marker = f"{_genesis_prefix(backend, key)}-{unique}"
        _instance_markers[backend] = marker
    return f"{key}:{marker}"


def _genesis_prefix(backend: ChainBackend, key: str) -> str:
    genesis = _read(lambda: backend.w3.eth.get_block(0)["hash"], "read block 0", key)
    return bytes(genesis).hex()[:12]


def seed_amounts(liquidity_quote: float, price: float) -> tuple[int, int]:
    """Return (base units, quote units) for a pool `liquidity_quote` deep at `price`.

    The same arithmetic as `agent.dex.pool.MarketCoupledPool.reset`, so the contract and the
    off-chain simulation start from identical reserves.
    """
    if not (math.isfinite(price) and price > 0):
        raise ChainError(f"initial pool price {price!r}: expected a finite price > 0")
    reserve_quote = to_units(liquidity_quote, QUOTE_DECIMALS)
    price_num, price_den = price.as_integer_ratio()
    reserve_base = (reserve_quote * price_den * 10**BASE_DECIMALS) // (
        price_num * 10**QUOTE_DECIMALS
    )
    if reserve_base <= 0:
        raise ChainError(f"initial price {price} is too high for a pool {liquidity_quote} deep")
    return reserve_base, reserve_quote


def deploy_all(
    backend: ChainBackend,
    store: Store,
    settings: Settings,
    *,
    initial_price: float = DEFAULT_INITIAL_PRICE,
    redeploy: bool = False,
) -> Deployment:
    """Deploy (or find again) every Agora contract on the backend's chain and set them up.

    Contracts recorded for this chain are reused once their runtime code checks out; missing
    ones (and those depending on a newly deployed one) are deployed and recorded. Setup is
    idempotent: the distributor gets MINTER_ROLE on the reward token, the pool allowance of the
    operator is set once, and an empty pool is seeded with `settings.dex.liquidity_quote` of
    quote and the matching base at `initial_price`, minted to the operator.

    Args:
        backend: the chain; the operator account deploys and owns everything.
        store: where the addresses are recorded.
        settings: the configuration (`dex.fee_bps`, `dex.liquidity_quote`).
        initial_price: quote per base the pool is seeded at, if it is empty.
        redeploy: forget this chain's records and deploy everything anew.

    Raises:
        ChainError: a recorded contract is missing or has different code, the recorded pool's
            fee differs from `dex.fee_bps`, or a deployment transaction failed.
    """
    seed = seed_amounts(settings.dex.liquidity_quote, initial_price)
    key = chain_key(backend)
    if redeploy:
        store.delete_deployments(key)
    records = store.read_deployments(key)
    addresses: dict[str, str] = {}
    deployed: list[str] = []
    for name in CONTRACTS:
        record = records.get(name)
        stale_dependency = any(dep in deployed for dep in DEPENDENCIES.get(name, ()))
        if record is not None and not stale_dependency:
            check_code(backend, key, name, record.address, record.code_hash)
            addresses[name] = record.address
            continue
        address = _deploy_one(backend, key, name, addresses, settings)
        # Recorded at once: after a crash, the next call reuses it and deploys only the rest.
        now = datetime.now(UTC).isoformat(timespec="seconds")
        store.write_deployments(
            key, [DeploymentRecord(name, address, _code_hash(backend, address, key), now)]
        )
        addresses[name] = address
        deployed.append(name)
    deployment = Deployment(
        _chain_id(backend), backend.name, key, **addresses, deployed=tuple(deployed)
    )
    _check_pool_fee(backend, deployment, settings.dex.fee_bps)
    _set_up(backend, deployment, seed)
    return deployment


def check_code(
    backend: ChainBackend, key: str, name: str, address: str, recorded_hash: str | None = None
) -> None:
    """Check that `address` holds the compiled runtime code of contract `name`.

    The bytes the constructor filled with `immutable` values are masked before comparing with
    the artifact; if `recorded_hash` is given, the full code (immutables included) must hash to
    it too, so a contract of the right kind but with other constructor arguments is refused.

    Raises:
        ChainLost: naming the contract, address and chain, when the code is missing or differs
            (the chain was reset, replaced or lost its state: `agora chain recover`).
    """
    artifact_name = CONTRACTS[name]
    label = f"the {artifact_name} ({name}) recorded at {address} on {key}"
    code = _runtime_code(backend, address, key)
    if not code:
        raise ChainLost(f"{label} has no code; {REDEPLOY_HINT}")
    expected = bytes.fromhex(load_artifact(artifact_name).deployed_bytecode.removeprefix("0x"))
    found = mask_immutables(code, immutable_ranges(artifact_name))
    if found != expected:
        raise ChainLost(
            f"{label} has different code (expected keccak 0x{keccak(expected).hex()}, "
            f"found 0x{keccak(found).hex()}); {REDEPLOY_HINT}"
        )
    actual_hash = "0x" + keccak(code).hex()
    if recorded_hash is not None and actual_hash != recorded_hash:
        raise ChainLost(
            f"{label} has different immutable values (expected keccak {recorded_hash}, "
            f"found {actual_hash}); {REDEPLOY_HINT}"
        )


def mask_immutables(code: bytes, ranges: tuple[tuple[int, int], ...]) -> bytes:
    """Return `code` with every (start, length) range zeroed, as solc leaves it in the artifact."""
    masked = bytearray(code)
    for start, length in ranges:
        if start + length <= len(masked):
            masked[start : start + length] = bytes(length)
    return bytes(masked)


@cache
def immutable_ranges(artifact_name: str) -> tuple[tuple[int, int], ...]:
    """Return the (start, length) byte ranges of `immutable` values in a contract's runtime code."""
    load_artifact(artifact_name)  # a clear error if the artifact does not exist
    path = resources.files("agent.chain").joinpath("artifacts", f"{artifact_name}.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    if "immutableReferences" not in data:
        raise ChainError(f"{artifact_name}.json lacks immutableReferences: run `make contracts`")
    return tuple((int(r["start"]), int(r["length"])) for r in data["immutableReferences"])


# --- internals ------------------------------------------------------------------------------


def _deploy_one(
    backend: ChainBackend, key: str, name: str, addresses: dict[str, str], settings: Settings
) -> str:
    operator = backend.operator
    args: tuple[Any, ...]
    if name == "market_quote":
        args = QUOTE_TOKEN
    elif name == "market_base":
        args = BASE_TOKEN
    elif name == "pool":
        args = (addresses["market_base"], addresses["market_quote"], settings.dex.fee_bps)
    elif name == "reward_distributor":
        args = (operator, addresses["reward_token"])
    else:
        args = (operator,)
    artifact = load_artifact(CONTRACTS[name])
    try:
        return backend.deploy(artifact.abi, artifact.bytecode, *args)
    except ChainError as e:
        raise ChainError(f"deploying the {artifact.name} ({name}) on {key} failed: {e}") from e


def _check_pool_fee(backend: ChainBackend, deployment: Deployment, fee_bps: int) -> None:
    pool = deployment.contract(backend.w3, "pool")
    actual = int(_read(pool.functions.feeBps().call, "read the pool fee", deployment.chain_key))
    if actual != fee_bps:
        raise ChainError(
            f"the pool at {deployment.pool} on {deployment.chain_key} charges {actual} bps but "
            f"dex.fee_bps is {fee_bps}: restore the setting (the records were made at that fee)"
        )


def _set_up(backend: ChainBackend, deployment: Deployment, seed: tuple[int, int]) -> None:
    """Grant the distributor MINTER_ROLE; approve and seed the pool (each step only if needed)."""
    w3, operator, key = backend.w3, backend.operator, deployment.chain_key
    reward_token = deployment.contract(w3, "reward_token")
    minter_role = _read(reward_token.functions.MINTER_ROLE().call, "read MINTER_ROLE", key)
    has_role = reward_token.functions.hasRole(minter_role, deployment.reward_distributor)
    if not _read(has_role.call, "read the distributor's role", key):
        grant = reward_token.functions.grantRole(minter_role, deployment.reward_distributor)
        _send(backend, grant, key)

    pool = deployment.contract(w3, "pool")
    if _read(pool.functions.totalSupply().call, "read the pool supply", key) > 0:
        return
    for name, amount in zip(("market_base", "market_quote"), seed, strict=True):
        token = deployment.contract(w3, name)
        balance = _read(token.functions.balanceOf(operator).call, "read a balance", key)
        if balance < amount:
            _send(backend, token.functions.mint(operator, amount - balance), key)
        allowance = token.functions.allowance(operator, deployment.pool)
        if _read(allowance.call, "read an allowance", key) < amount:
            _send(backend, token.functions.approve(deployment.pool, MAX_UINT256), key)
    _send(backend, pool.functions.addLiquidity(seed[0], seed[1], operator), key)


def _send(backend: ChainBackend, call: Any, key: str) -> None:
    try:
        backend.transact(call)
    except ChainError as e:
        raise ChainError(f"setting up the contracts on {key} failed: {e}") from e


def _read(fn: Callable[[], Any], what: str, key: str) -> Any:
    try:
        return fn()
    except (OSError, Web3Exception, ValueError) as e:
        raise ChainError(f"cannot {what} on {key}: {e}") from e


def _chain_id(backend: ChainBackend) -> int:
    return int(_read(lambda: backend.w3.eth.chain_id, "read the chain id", backend.name))


def _runtime_code(backend: ChainBackend, address: str, key: str) -> bytes:
    checksum = Web3.to_checksum_address(address)
    return bytes(
        _read(lambda: backend.w3.eth.get_code(checksum), f"read the code at {address}", key)
    )


def _code_hash(backend: ChainBackend, address: str, key: str) -> str:
    return "0x" + keccak(_runtime_code(backend, address, key)).hex()
