"""Reward epochs on the embedded chain: attribution -> payout -> Merkle root -> claims.

One embedded chain with Agora deployed serves the module; each test runs between an
`evm_snapshot` and an `evm_revert`, with its own database. The policy is hand-written (fully
invested when the visible signals sum above 0), which is all the attribution needs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from web3.contract import Contract
from web3.logs import DISCARD

from agent.chain.backends import EmbeddedBackend
from agent.chain.deploy import Deployment, deploy_all
from agent.config import PlantedSettings, RewardsSettings, Settings, SyntheticSettings
from agent.env.features import FEATURE_NAMES, market_features
from agent.env.trading_env import EnvConfig, MarketData
from agent.errors import DataError, TransactionReverted, UsageError
from agent.market.synthetic import generate
from agent.rewards.epochs import claim_epoch, run_epoch, strategy_id
from agent.rewards.ledger import (
    EMPTY,
    METADATA,
    PUBLISHED,
    REGISTRY,
    TREASURY,
    EpochRecord,
    leaderboard,
    read_epoch,
)
from agent.store import Store

AGR = 10**18
EPOCH_BARS = 100
CONFIG = EnvConfig()
SIGNALS_AT = CONFIG.lookback_bars * len(FEATURE_NAMES)


class SumOfSignals:
    """Fully invested when the signals sum above 0.2, else flat.

    With every strategy at its null (its median) the sum stays below 0.2, so the agent without
    any strategy stays flat.
    """

    def __init__(self, n_strategies: int) -> None:
        self.columns = np.arange(n_strategies) + SIGNALS_AT

    def __call__(self, observation: np.ndarray) -> int:
        return len(CONFIG.exposure_levels) - 1 if observation[self.columns].sum() > 0.2 else 0


def always_flat(observation: np.ndarray) -> int:
    return 0


def market_data() -> MarketData:
    """400 bars (3 full epochs): an oracle, a noisy echo of it, noise, and a strategy that never
    has a signal."""
    planted = PlantedSettings(information_coefficient=0.3, half_life_bars=6.0)
    synthetic = generate(SyntheticSettings(bars=400, seed=4, planted=planted), "1h")
    bars = 400
    oracle = np.clip(synthetic.planted / 2, -1, 1)
    values = np.column_stack(
        [
            oracle,
            0.8 * oracle + np.random.default_rng(2).uniform(-0.3, 0.3, bars),
            np.random.default_rng(1).uniform(-1, 1, bars),
            np.zeros(bars),
        ]
    ).astype("float32")
    mask = np.ones(values.shape, dtype=bool)
    mask[:, 3] = False
    candles = synthetic.candles
    return MarketData(
        open_time=candles["open_time"].to_numpy(),
        close=candles["close"].to_numpy(),
        features=market_features(candles),
        signals=values,
        mask=mask,
        strategy_names=("oracle", "echo", "noise", "broken"),
    )


@dataclass
class Chain:
    backend: EmbeddedBackend
    deployment: Deployment

    def __post_init__(self) -> None:
        w3 = self.backend.w3
        self.operator, self.alice, self.bob, self.carol = self.backend.accounts[:4]
        self.token: Contract = self.deployment.contract(w3, "reward_token")
        self.distributor: Contract = self.deployment.contract(w3, "reward_distributor")
        self.registry: Contract = self.deployment.contract(w3, "strategy_registry")

    def balance(self, account: str) -> int:
        return int(self.token.functions.balanceOf(account).call())

    def assert_conserved(self) -> None:
        """Minted == claimed (held by accounts) + unclaimed (held by the distributor)."""
        minted = int(self.token.functions.totalSupply().call())
        unclaimed = self.balance(self.distributor.address)
        claimed = sum(self.balance(a) for a in self.backend.accounts)
        assert minted == claimed + unclaimed
        assert int(self.distributor.functions.outstanding().call()) == unclaimed


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    with EmbeddedBackend() as backend:
        path = tmp_path_factory.mktemp("rewards") / "deploy.db"
        with Store(path) as store:
            deployment = deploy_all(backend, store, Settings())
        yield Chain(backend, deployment)


@pytest.fixture
def chain(deployed: Chain) -> Iterator[Chain]:
    make_request = deployed.backend.w3.provider.make_request  # type: ignore[attr-defined]
    snapshot = make_request("evm_snapshot", [])["result"]
    try:
        yield deployed
    finally:
        make_request("evm_revert", [snapshot])


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "agora.db") as opened:
        yield opened


def settings(**rewards: Any) -> Settings:
    """The ledger's mechanics with every positive contribution paid in part: no significance
    bar and no grouping (`scoring_settings` keeps the shipped scoring rule)."""
    values = {
        "epoch_bars": EPOCH_BARS,
        "workers": 1,
        "emission_per_epoch": 1_000 * AGR + 7,
        "significance": 0.0,
        "group_r2": 1.0,
    }
    return Settings(rewards=RewardsSettings(**{**values, **rewards}))


def run(
    chain: Chain,
    store: Store,
    epoch: int = 1,
    *,
    policy: Any = None,
    metadata: dict[str, str | None] | None = None,
    config: Settings | None = None,
    **kwargs: Any,
) -> Any:
    data = market_data()
    return run_epoch(
        epoch,
        store=store,
        backend=chain.backend,
        deployment=chain.deployment,
        settings=config or settings(),
        policy=policy or SumOfSignals(data.n_strategies),
        data=data,
        metadata=metadata if metadata is not None else {"oracle": chain.alice, "echo": chain.bob},
        **kwargs,
    )


def leaf_amounts(record: EpochRecord) -> dict[int, int]:
    return {a.leaf_index: a.amount for a in record.allocations if a.leaf_index is not None}


def test_an_epoch_is_published_and_claiming_all_keeps_the_books(chain: Chain, store: Store) -> None:
    outcome = run(chain, store)
    record = outcome.record
    assert outcome.computed and outcome.published_tx and record.status == PUBLISHED
    assert (record.start_bar, record.end_bar) == (100, 200)
    assert record.chain_key == chain.deployment.chain_key
    root = chain.distributor.functions.epochRoot(1).call()
    assert "0x" + bytes(root).hex() == record.root
    assert chain.distributor.functions.epochTotal(1).call() == record.total
    assert sum(leaf_amounts(record).values()) == record.total
    assert record.total + record.carry_out == record.pool == record.emission
    assert record.attribution["source"] == "history"
    by_name = {a.strategy: a for a in record.allocations}
    assert by_name["oracle"].amount > by_name["echo"].amount > 0
    assert (by_name["oracle"].account, by_name["echo"].account) == (chain.alice, chain.bob)
    assert by_name["noise"].contribution < 0 and by_name["noise"].amount == 0
    assert by_name["broken"].contribution == 0.0 and by_name["broken"].amount == 0
    assert record.attribution["inactive"] == ["broken"]
    chain.assert_conserved()
    expected: dict[str, int] = {}
    for allocation in record.allocations:
        if allocation.leaf_index is not None:
            expected[allocation.account] = expected.get(allocation.account, 0) + allocation.amount
    for account in expected:  # one claim call per account, the books checked after each
        claims = claim_epoch(store, chain.backend, chain.deployment, 1, accounts=[account])
        assert {c.account for c in claims} == {account} and all(c.tx for c in claims)
        chain.assert_conserved()
    for account, amount in expected.items():
        assert chain.balance(account) == amount
    assert chain.balance(chain.distributor.address) == 0
    assert chain.distributor.functions.epochClaimed(1).call() == record.total
    stored = read_epoch(store, 1)
    assert stored is not None and all(a.claimed for a in stored.allocations if a.leaf)
    board = {row["strategy"]: row for row in leaderboard(store)}
    assert board["oracle"]["earned"] == board["oracle"]["claimed"] == by_name["oracle"].amount
    assert board["oracle"]["unclaimed"] == 0


def test_a_quarantined_strategy_is_not_part_of_the_game_and_not_paid(
    chain: Chain, store: Store
) -> None:
    """Even with its signal in the data, a strategy caught looking ahead earns nothing."""
    record = run(chain, store, quarantined=["oracle"]).record
    by_name = {a.strategy: a for a in record.allocations}
    assert by_name["oracle"].contribution == 0.0 and by_name["oracle"].amount == 0
    assert by_name["echo"].amount > 0
    assert record.attribution["quarantined"] == ["oracle"]
    assert "oracle" not in [p["name"] for p in record.attribution["players"]]
    chain.assert_conserved()


def test_double_claims_and_wrong_proofs_are_refused(chain: Chain, store: Store) -> None:
    record = run(chain, store, auto_claim=True).record
    assert all(a.claimed for a in record.allocations if a.leaf)
    paid = next(a for a in record.allocations if a.leaf_index is not None)
    proof = [bytes.fromhex(p[2:]) for p in paid.proof]
    claim = chain.distributor.functions.claim
    with pytest.raises(TransactionReverted) as again:
        chain.backend.transact(claim(1, paid.leaf_index, paid.account, paid.amount, proof))
    assert again.value.reason == "Distributor: ALREADY_CLAIMED"
    before = chain.backend.w3.eth.block_number
    results = claim_epoch(store, chain.backend, chain.deployment, 1)
    assert all(r.already_claimed and r.tx is None for r in results)
    assert chain.backend.w3.eth.block_number == before  # nothing sent


def test_a_wrong_proof_or_amount_is_refused(chain: Chain, store: Store) -> None:
    record = run(chain, store).record
    leaves = [a for a in record.allocations if a.leaf_index is not None]
    assert len(leaves) >= 2
    first, second = leaves[:2]
    claim = chain.distributor.functions.claim
    wrong_proof = [bytes.fromhex(p[2:]) for p in second.proof]
    right_proof = [bytes.fromhex(p[2:]) for p in first.proof]
    for call in (
        claim(1, first.leaf_index, first.account, first.amount, wrong_proof),
        claim(1, first.leaf_index, first.account, first.amount + 1, right_proof),
        claim(1, first.leaf_index, chain.carol, first.amount, right_proof),
    ):
        with pytest.raises(TransactionReverted) as refused:
            chain.backend.transact(call)
        assert refused.value.reason == "Distributor: INVALID_PROOF"
    chain.assert_conserved()


def test_a_claim_sent_by_a_third_party_pays_the_leaf_account(chain: Chain, store: Store) -> None:
    record = run(chain, store).record
    oracle = next(a for a in record.allocations if a.strategy == "oracle")
    assert (oracle.account, oracle.account_source) == (chain.alice, METADATA)
    (result,) = claim_epoch(
        store, chain.backend, chain.deployment, 1, accounts=[chain.alice], sender=chain.bob
    )
    assert result.account == chain.alice and result.tx is not None
    assert chain.balance(chain.alice) == oracle.amount
    assert chain.balance(chain.bob) == 0
    receipt = chain.backend.w3.eth.get_transaction_receipt(result.tx)
    (event,) = chain.distributor.events.Claimed().process_receipt(receipt, errors=DISCARD)
    assert (event["args"].account, event["args"].caller) == (chain.alice, chain.bob)
    chain.assert_conserved()


def test_rerunning_a_published_epoch_does_nothing(chain: Chain, store: Store) -> None:
    first = run(chain, store, auto_claim=True)
    block = chain.backend.w3.eth.block_number
    again = run(chain, store, auto_claim=True, policy=always_flat)  # would compute otherwise
    assert not again.computed and again.published_tx is None
    assert all(c.already_claimed for c in again.claims)
    assert again.record.root == first.record.root
    assert chain.backend.w3.eth.block_number == block


def test_the_registry_payout_address_wins_and_unknown_ones_pay_the_treasury(
    chain: Chain, store: Store
) -> None:
    code_hash = strategy_id("oracle code v1")
    chain.backend.transact(
        chain.registry.functions.register(strategy_id("oracle"), chain.bob, code_hash)
    )
    record = run(chain, store, metadata={"oracle": chain.alice, "noise": "not an address"}).record
    accounts = {a.strategy: (a.account, a.account_source) for a in record.allocations}
    assert accounts["oracle"] == (chain.bob, REGISTRY)
    assert accounts["noise"] == (chain.operator, TREASURY)


def test_carry_flows_into_the_next_epoch_and_nothing_is_lost(chain: Chain, store: Store) -> None:
    first = run(chain, store, 1).record
    second = run(chain, store, 2).record
    assert second.carry_in == first.carry_out
    emitted = first.emission + second.emission
    assert first.total + second.total + second.carry_out == emitted
    minted = int(chain.token.functions.totalSupply().call())
    assert minted == first.total + second.total
    with pytest.raises(UsageError, match="increasing order"):
        run(chain, store, 0)


def test_the_treasury_policy_pays_the_remainder_now(chain: Chain, store: Store) -> None:
    config = settings(remainder_policy="treasury", treasury_address=chain.carol)
    record = run(chain, store, config=config).record
    remainder = [a for a in record.allocations if a.strategy is None]
    assert record.carry_out == 0 and record.total == record.pool
    assert record.remainder > 0  # the evidence split leaves part of the pool unpaid
    if record.remainder:
        assert remainder[0].account == chain.carol and remainder[0].amount == record.remainder


def test_an_epoch_nobody_earned_is_carried_without_publishing(chain: Chain, store: Store) -> None:
    record = run(chain, store, policy=always_flat).record
    assert record.status == EMPTY and record.root is None and record.total == 0
    assert record.carry_out == record.pool
    assert chain.distributor.functions.epochRoot(1).call() == bytes(32)
    nxt = run(chain, store, 2).record
    released = record.pool // 10  # rewards.carry_release: a tenth of the reserve
    assert nxt.carry_in == record.pool and nxt.pool == released + nxt.emission
    assert nxt.total + nxt.carry_out == nxt.carry_in + nxt.emission


def test_a_profit_share_adds_to_the_pool(chain: Chain, store: Store) -> None:
    record = run(chain, store, config=settings(profit_share_bps=5_000)).record
    if record.v_all > 0:
        assert record.profit_share > 0
    assert record.pool == record.emission + record.profit_share
    assert record.total + record.carry_out == record.pool
    assert math.isfinite(record.v_all)


def test_a_stored_epoch_is_replayed_onto_a_fresh_chain(
    chain: Chain, store: Store, tmp_path: Path
) -> None:
    record = run(chain, store).record
    with EmbeddedBackend() as fresh, Store(tmp_path / "fresh-deploy.db") as scratch:
        deployment = deploy_all(fresh, scratch, Settings())
        results = claim_epoch(store, fresh, deployment, 1)
        again = Chain(fresh, deployment)
        assert again.distributor.functions.epochTotal(1).call() == record.total
        assert sum(r.amount for r in results) == record.total
        again.assert_conserved()
    stored = read_epoch(store, 1)
    assert stored is not None and stored.chain_key == deployment.chain_key


def test_an_incomplete_or_warm_up_epoch_is_refused(chain: Chain, store: Store) -> None:
    with pytest.raises(DataError, match="not complete"):
        run(chain, store, 3)
    with pytest.raises(DataError, match="warm-up"):
        run(chain, store, 0, config=settings(epoch_bars=40))


def test_many_strategies_are_sampled_with_standard_errors_on_record(
    chain: Chain, store: Store
) -> None:
    config = settings(shapley_exact_max_players=2, shapley_samples=40, shapley_seed=9)
    record = run(chain, store, config=config).record
    assert record.attribution["method"] == "monte_carlo"
    assert record.attribution["permutations"] == 40 and record.attribution["seed"] == 9
    stored = read_epoch(store, 1)
    assert stored == record
    active = [a for a in record.allocations if a.strategy != "broken" and a.strategy]
    assert all(a.std_error is not None and a.std_error >= 0 for a in active)
    assert any(a.std_error for a in active)
    total = sum(a.contribution or 0.0 for a in record.allocations)
    assert total == pytest.approx(record.v_all - record.v_empty, abs=1e-12)


# --- the shipped scoring rule: significance, copies ---------------------------------------------


class Weighted:
    """Fully invested when a weighted sum of signals exceeds 0.2, else flat."""

    def __init__(self, weights: dict[int, float]) -> None:
        self.columns = np.array(list(weights)) + SIGNALS_AT
        self.weights = np.array(list(weights.values()))

    def __call__(self, observation: np.ndarray) -> int:
        full = len(CONFIG.exposure_levels) - 1
        return full if observation[self.columns] @ self.weights > 0.2 else 0


def scoring_settings() -> Settings:
    """The shipped scoring rule (significance 2, grouping at R² 0.5) on one 300-bar epoch."""
    return Settings(rewards=RewardsSettings(epoch_bars=300, workers=1))


def with_columns(data: MarketData, columns: dict[str, np.ndarray]) -> MarketData:
    values = np.column_stack(list(columns.values())).astype("float32")
    mask = np.ones(values.shape, dtype=bool)
    return MarketData(data.open_time, data.close, data.features, values, mask, tuple(columns))


def copy_of(oracle: np.ndarray, kind: str) -> tuple[np.ndarray, float]:
    """Return a copy of the oracle and the weight that makes the agent use it as the original."""
    if kind == "exact":
        return oracle.copy(), 1.0
    if kind == "scaled-noisy":
        noise = np.random.default_rng(9).normal(0.0, 0.05, len(oracle))
        return 0.9 * oracle + noise, 1 / 0.9
    lagged = np.concatenate([[0.0], oracle[:-1]])
    return lagged, 1.0


@pytest.mark.parametrize("kind", ["exact", "scaled-noisy", "lagged"])
def test_a_copy_registered_later_earns_nothing_and_takes_nothing_from_the_original(
    chain: Chain, tmp_path: Path, kind: str
) -> None:
    """The attack: register a copy after the original, and let the agent use both.

    Alone, the agent reads 2 x the original (its only informative signal) plus noise. With the
    copy, it reads original + copy (scaled back) plus noise: the same agent for an exact or a
    scaled noisy copy. The copy is grouped with the original, earns at most 5 % of the original's
    pay, and the original's pay moves by at most 5 %.
    """
    base = market_data()
    oracle, noise = base.signals[:, 0].astype("float64"), base.signals[:, 2].astype("float64")
    copy, weight = copy_of(oracle, kind)
    alone_data = with_columns(base, {"oracle": oracle, "noise": noise})
    both_data = with_columns(base, {"oracle": oracle, "noise": noise, "copy": copy})
    paid = {}
    for label, data, policy in (
        ("alone", alone_data, Weighted({0: 2.0, 1: 0.5})),
        ("both", both_data, Weighted({0: 1.0, 1: 0.5, 2: weight})),
    ):
        make_request = chain.backend.w3.provider.make_request  # type: ignore[attr-defined]
        snapshot = make_request("evm_snapshot", [])["result"]
        try:
            with Store(tmp_path / f"{label}.db") as store:
                record = run_epoch(
                    0,
                    store=store,
                    backend=chain.backend,
                    deployment=chain.deployment,
                    settings=scoring_settings(),
                    policy=policy,
                    data=data,
                    metadata={"oracle": chain.alice, "noise": chain.bob, "copy": chain.carol},
                ).record
        finally:
            make_request("evm_revert", [snapshot])
        paid[label] = {a.strategy: a.amount for a in record.allocations}
        if label == "both":
            group = record.attribution["groups"]["copy"]
            assert group["group"] == "oracle" and group["r2"] > 0.8
            scores = {s["name"]: s for s in record.attribution["scores"]}
            assert scores["copy"]["group"] == "oracle"
    original = paid["alone"]["oracle"]
    assert original > 0.05 * scoring_settings().rewards.emission_per_epoch  # it really earns
    assert paid["both"]["copy"] <= 0.05 * paid["both"]["oracle"]
    if kind != "lagged":  # the same agent: the original's pay must not move
        assert abs(paid["both"]["oracle"] - original) <= 0.05 * original
    else:  # another agent (it reads yesterday's value too): the pair's pay is the original's
        assert paid["both"]["oracle"] >= 0.95 * (paid["both"]["oracle"] + paid["both"]["copy"])


def test_a_noise_strategy_is_not_paid_under_the_shipped_rule(chain: Chain, store: Store) -> None:
    """Noise the agent reacts to changes its result, but not distinguishably from zero."""
    base = market_data()
    noise = base.signals[:, 2].astype("float64")
    data = with_columns(base, {"noise": noise, "oracle": base.signals[:, 0]})
    record = run_epoch(
        0,
        store=store,
        backend=chain.backend,
        deployment=chain.deployment,
        settings=scoring_settings(),
        policy=Weighted({0: 0.5, 1: 2.0}),
        data=data,
        metadata={"noise": chain.bob, "oracle": chain.alice},
    ).record
    scores = {s["name"]: s for s in record.attribution["scores"]}
    by_name = {a.strategy: a for a in record.allocations}
    assert scores["noise"]["verdict"] != "significant" and by_name["noise"].amount == 0
    assert scores["oracle"]["verdict"] == "significant" and by_name["oracle"].amount > 0
    assert all(a.std_error and a.std_error > 0 for a in record.allocations)  # exact, yet uncertain
    assert record.total + record.carry_out == record.pool
