"""deploy_all: idempotent across calls and restarts, and loud when the chain no longer matches."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from agent.chain.backends import AnvilBackend, ChainBackend, EmbeddedBackend
from agent.chain.contracts import load_artifact
from agent.chain.deploy import (
    CONTRACTS,
    DEFAULT_INITIAL_PRICE,
    Deployment,
    chain_key,
    deploy_all,
    immutable_ranges,
    mask_immutables,
    seed_amounts,
)
from agent.config import DexSettings, Settings
from agent.dex.pool import MarketCoupledPool, PoolConfig
from agent.errors import ChainError
from agent.store import MIGRATIONS, DeploymentRecord, Store

if TYPE_CHECKING:
    from tests.integration.chain.conftest import ChainEnv

SETTINGS = Settings()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "agora.db") as opened:
        yield opened


@pytest.fixture(params=["embedded", "anvil"])
def backend(request: pytest.FixtureRequest) -> Iterator[ChainBackend]:
    """A brand-new chain per test (anvil without a state file: not persistent).

    Tests that only need a deployment to work on use `chain` + `deployed_store` instead: the
    session deployment, restored after the test, and a copy of the database recording it.
    """
    fresh = EmbeddedBackend() if request.param == "embedded" else AnvilBackend()
    with fresh:
        yield fresh


def _tamper(store: Store, key: str, name: str, **changes: str) -> None:
    record = dataclasses.replace(store.read_deployments(key)[name], **changes)
    store.write_deployments(key, [record])


def test_deployment_fields_follow_the_contract_list() -> None:
    names = [f.name for f in dataclasses.fields(Deployment)]
    assert names == ["chain_id", "backend", "chain_key", *CONTRACTS, "deployed"]
    assert MIGRATIONS[1].__name__ == "_m002_deployments"  # schema version 2


def test_deploy_all_twice_reuses_every_contract(backend: ChainBackend, store: Store) -> None:
    first = deploy_all(backend, store, SETTINGS)
    block = backend.w3.eth.block_number
    second = deploy_all(backend, store, SETTINGS)
    assert first.deployed == tuple(CONTRACTS)
    assert second.deployed == ()
    assert second == first
    assert backend.w3.eth.block_number == block  # not a single transaction
    records = store.read_deployments(first.chain_key)
    assert {name: r.address for name, r in records.items()} == first.addresses()


def test_a_fresh_non_persistent_chain_is_recognised_as_fresh(store: Store) -> None:
    with EmbeddedBackend() as old_chain:
        old = deploy_all(old_chain, store, SETTINGS)
    with EmbeddedBackend() as new_chain:
        assert chain_key(new_chain) != old.chain_key
        new = deploy_all(new_chain, store, SETTINGS)
    assert new.deployed == tuple(CONTRACTS)
    assert store.read_deployments(old.chain_key)  # the old records are left alone


def test_deploy_all_sets_up_roles_and_seeds_the_pool_like_the_simulation(
    chain: ChainEnv,
) -> None:
    deployment, w3 = chain.deployment, chain.w3
    role = chain.reward_token.functions.MINTER_ROLE().call()
    assert chain.reward_token.functions.hasRole(role, deployment.reward_distributor).call()
    assert not chain.reward_token.functions.hasRole(role, chain.operator).call()
    simulated = MarketCoupledPool(PoolConfig(liquidity_quote=SETTINGS.dex.liquidity_quote))
    state = simulated.reset(DEFAULT_INITIAL_PRICE)
    assert chain.reserves() == (state.base, state.quote)
    assert chain.reserves() == seed_amounts(SETTINGS.dex.liquidity_quote, DEFAULT_INITIAL_PRICE)
    assert chain.pool.functions.totalSupply().call() == state.total_supply
    for token in (chain.base, chain.quote):  # approved once, for every later trade
        assert token.functions.allowance(chain.operator, deployment.pool).call() == 2**256 - 1
    assert w3.eth.get_code(w3.to_checksum_address(deployment.reward_distributor))


def test_a_recorded_address_with_other_code_is_a_clear_error(
    chain: ChainEnv, deployed_store: Store
) -> None:
    deployment = chain.deployment
    _tamper(deployed_store, deployment.chain_key, "decision_log", address=deployment.pool)
    with pytest.raises(ChainError) as caught:
        deploy_all(chain.backend, deployed_store, SETTINGS)
    message = str(caught.value)
    assert f"the DecisionLog (decision_log) recorded at {deployment.pool} on " in message
    assert f"{deployment.chain_key} has different code (expected keccak 0x" in message
    assert "the chain was reset or replaced (or its state lost); `agora chain recover`" in message


def test_a_recorded_address_without_code_is_a_clear_error(
    chain: ChainEnv, deployed_store: Store
) -> None:
    nobody = chain.backend.accounts[5]
    _tamper(deployed_store, chain.deployment.chain_key, "pool", address=nobody)
    with pytest.raises(ChainError, match=rf"ConstantProductPool \(pool\) recorded at {nobody}"):
        deploy_all(chain.backend, deployed_store, SETTINGS)


def test_same_contract_with_other_immutables_is_refused(
    chain: ChainEnv, deployed_store: Store
) -> None:
    """A recorded code hash covers the immutables: a pool for other tokens is not ours."""
    other_pool = chain.deploy("ConstantProductPool", chain.quote.address, chain.base.address, 30)
    _tamper(deployed_store, chain.deployment.chain_key, "pool", address=other_pool.address)
    with pytest.raises(ChainError, match="has different immutable values"):
        deploy_all(chain.backend, deployed_store, SETTINGS)


def test_redeploy_replaces_every_contract_and_record(
    chain: ChainEnv, deployed_store: Store
) -> None:
    first = chain.deployment
    _tamper(deployed_store, first.chain_key, "decision_log", address=first.pool)
    second = deploy_all(chain.backend, deployed_store, SETTINGS, redeploy=True)
    assert second.deployed == tuple(CONTRACTS)
    assert set(second.addresses().values()).isdisjoint(first.addresses().values())
    records = deployed_store.read_deployments(first.chain_key)
    assert {name: r.address for name, r in records.items()} == second.addresses()
    assert deploy_all(chain.backend, deployed_store, SETTINGS).deployed == ()


def test_a_missing_record_redeploys_it_and_its_dependents(
    chain: ChainEnv, deployed_store: Store
) -> None:
    first = chain.deployment
    records = deployed_store.read_deployments(first.chain_key)
    kept = [record for name, record in records.items() if name != "market_base"]
    deployed_store.write_deployments(first.chain_key, kept, replace_all=True)
    second = deploy_all(chain.backend, deployed_store, SETTINGS)
    assert second.deployed == ("market_base", "pool")
    assert second.market_quote == first.market_quote and second.pool != first.pool
    assert second.contract(chain.w3, "pool").functions.totalSupply().call() > 0


def test_a_pool_fee_that_differs_from_the_config_is_refused(
    chain: ChainEnv, deployed_store: Store
) -> None:
    other_fee = SETTINGS.model_copy(update={"dex": DexSettings(fee_bps=5)})
    with pytest.raises(ChainError, match=r"charges 30 bps but dex\.fee_bps is 5"):
        deploy_all(chain.backend, deployed_store, other_fee)


def test_a_failed_deployment_resumes_with_what_was_recorded(
    backend: ChainBackend, store: Store
) -> None:
    # config validation refuses such a fee; bypass it to make the pool's constructor revert
    too_high = SETTINGS.model_copy(update={"dex": DexSettings.model_construct(fee_bps=2_000)})
    with pytest.raises(ChainError, match=r"ConstantProductPool \(pool\).*Pool: FEE_TOO_HIGH"):
        deploy_all(backend, store, too_high)
    key = chain_key(backend)
    assert sorted(store.read_deployments(key)) == ["market_base", "market_quote"]
    resumed = deploy_all(backend, store, SETTINGS)
    assert resumed.deployed == tuple(CONTRACTS)[2:]


def test_anvil_state_file_keeps_the_deployment_across_restarts(
    tmp_path: Path, store: Store
) -> None:
    state = tmp_path / "anvil-state.json"
    with AnvilBackend(state_path=state) as node:
        first = deploy_all(node, store, SETTINGS)
        log = first.contract(node.w3, "decision_log")
        node.transact(log.functions.record(b"\x01" * 32))
    assert state.is_file()
    with AnvilBackend(state_path=state) as restarted:
        assert chain_key(restarted) == first.chain_key == "anvil:31337"
        second = deploy_all(restarted, store, SETTINGS)
        assert second == first and second.deployed == ()
        assert second.contract(restarted.w3, "decision_log").functions.count().call() == 1


def test_a_reset_persistent_chain_is_a_clear_error(tmp_path: Path, store: Store) -> None:
    with AnvilBackend(state_path=tmp_path / "a.json") as node:
        first = deploy_all(node, store, SETTINGS)
    with AnvilBackend(state_path=tmp_path / "b.json") as replaced:  # same chain id, no contracts
        with pytest.raises(ChainError) as caught:
            deploy_all(replaced, store, SETTINGS)
        assert (
            f"the MarketToken (market_quote) recorded at {first.market_quote} on anvil:31337 "
            "has no code; the chain was reset or replaced"
        ) in str(caught.value)
        assert deploy_all(replaced, store, SETTINGS, redeploy=True).deployed == tuple(CONTRACTS)


def test_masking_immutables_recovers_the_artifact_code(chain: ChainEnv) -> None:
    for name, artifact_name in CONTRACTS.items():
        address = chain.w3.to_checksum_address(chain.deployment.addresses()[name])
        code = bytes(chain.w3.eth.get_code(address))
        expected = bytes.fromhex(load_artifact(artifact_name).deployed_bytecode[2:])
        ranges = immutable_ranges(artifact_name)
        assert mask_immutables(code, ranges) == expected
        assert (code == expected) == (not ranges)


def test_store_round_trips_deployment_records(store: Store) -> None:
    record = DeploymentRecord(
        "pool", "0x" + "11" * 20, "0x" + "22" * 32, "2026-01-01T00:00:00+00:00"
    )
    store.write_deployments("rpc:1", [record])
    assert store.read_deployments("rpc:1") == {"pool": record}
    assert store.deployment_chain_keys() == ["rpc:1"]
    assert store.delete_deployments("rpc:1") == 1
    assert store.read_deployments("rpc:1") == {}
