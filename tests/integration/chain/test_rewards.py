"""RewardToken and RewardDistributor on both backends, with trees from agent.rewards.merkle."""

from __future__ import annotations

import itertools
import random
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from web3.logs import DISCARD

from agent.rewards.merkle import MerkleTree, leaf_hash

if TYPE_CHECKING:
    from tests.integration.chain.conftest import ChainEnv

AGR = 10**18
EPOCH = 7
_fresh_epochs = itertools.count(1_000)
"""Hypothesis examples share one chain, so each example publishes its own epoch."""


def _publish(chain: ChainEnv, tree: MerkleTree, total: int, epoch: int = EPOCH) -> None:
    chain.transact(chain.distributor.functions.publishEpoch(epoch, tree.root, total))


def _claim(chain: ChainEnv, tree: MerkleTree, index: int, sender: str, epoch: int = EPOCH) -> dict:
    _, account, amount = tree.leaves[[leaf[0] for leaf in tree.leaves].index(index)]
    call = chain.distributor.functions.claim(epoch, index, account, amount, tree.proof(index))
    return chain.transact(call, sender)


def _assert_minted_equals_claimed_plus_unclaimed(chain: ChainEnv, accounts: set[str]) -> None:
    minted = chain.reward_token.functions.totalSupply().call()
    claimed = sum(chain.reward_token.functions.balanceOf(a).call() for a in accounts)
    unclaimed = chain.reward_token.functions.balanceOf(chain.distributor.address).call()
    assert minted == claimed + unclaimed
    assert chain.distributor.functions.outstanding().call() == unclaimed


def test_reward_token_mint_without_minter_role_reverts(chain: ChainEnv) -> None:
    """Not even the admin (the operator) holds MINTER_ROLE; only the distributor does."""
    for sender in (chain.operator, chain.alice):
        with chain.reverts("RewardToken: CALLER_NOT_MINTER"):
            chain.transact(chain.reward_token.functions.mint(sender, AGR), sender)
    role = chain.reward_token.functions.MINTER_ROLE().call()
    assert chain.reward_token.functions.hasRole(role, chain.distributor.address).call()


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8])
def test_third_party_claims_pay_the_leaf_account_and_keep_the_books(
    chain: ChainEnv, size: int
) -> None:
    accounts = chain.backend.accounts[1 : 1 + size]
    leaves = [(i, accounts[i], (i + 1) * AGR + i) for i in range(size)]
    tree = MerkleTree(leaves)
    total = sum(amount for _, _, amount in leaves)
    _publish(chain, tree, total)
    assert chain.reward_token.functions.totalSupply().call() == total
    for index, account, amount in leaves:
        receipt = _claim(chain, tree, index, chain.operator)  # the operator claims for them
        (event,) = chain.distributor.events.Claimed().process_receipt(receipt, errors=DISCARD)
        args = event["args"]
        assert (args.epoch, args.index, args.account, args.amount, args.caller) == (
            EPOCH,
            index,
            account,
            amount,
            chain.operator,
        )
        assert chain.reward_token.functions.balanceOf(account).call() == amount
        assert chain.distributor.functions.isClaimed(EPOCH, index).call()
        _assert_minted_equals_claimed_plus_unclaimed(chain, set(accounts))
    assert chain.distributor.functions.epochClaimed(EPOCH).call() == total
    assert chain.reward_token.functions.balanceOf(chain.operator).call() == 0


def test_a_second_claim_of_the_same_leaf_reverts(chain: ChainEnv) -> None:
    tree = MerkleTree([(0, chain.alice, AGR), (1, chain.bob, 2 * AGR)])
    _publish(chain, tree, 3 * AGR)
    _claim(chain, tree, 0, chain.alice)
    with chain.reverts("Distributor: ALREADY_CLAIMED"):
        _claim(chain, tree, 0, chain.bob)


def test_a_claim_with_a_wrong_proof_or_amount_reverts(chain: ChainEnv) -> None:
    tree = MerkleTree([(0, chain.alice, AGR), (1, chain.bob, 2 * AGR), (2, chain.carol, AGR)])
    _publish(chain, tree, 4 * AGR)
    claim = chain.distributor.functions.claim
    with chain.reverts("Distributor: INVALID_PROOF"):
        chain.transact(claim(EPOCH, 0, chain.alice, AGR, tree.proof(1)))
    with chain.reverts("Distributor: INVALID_PROOF"):
        chain.transact(claim(EPOCH, 0, chain.alice, 2 * AGR, tree.proof(0)))
    with chain.reverts("Distributor: INVALID_PROOF"):
        chain.transact(claim(EPOCH, 0, chain.bob, AGR, tree.proof(0)))
    with chain.reverts("Distributor: UNKNOWN_EPOCH"):
        chain.transact(claim(EPOCH + 1, 0, chain.alice, AGR, tree.proof(0)))


def test_claims_beyond_the_published_epoch_total_revert(chain: ChainEnv) -> None:
    """A tree whose leaves sum to more than the published total pays out at most the total."""
    tree = MerkleTree([(0, chain.alice, 3 * AGR), (1, chain.bob, 2 * AGR)])
    _publish(chain, tree, 4 * AGR)
    _claim(chain, tree, 0, chain.alice)
    with chain.reverts("Distributor: EXCEEDS_EPOCH_TOTAL"):
        _claim(chain, tree, 1, chain.bob)
    _assert_minted_equals_claimed_plus_unclaimed(chain, {chain.alice, chain.bob})


def test_publish_is_for_operators_and_once_per_epoch(chain: ChainEnv) -> None:
    tree = MerkleTree([(0, chain.alice, AGR)])
    with chain.reverts("Distributor: CALLER_NOT_OPERATOR"):
        chain.transact(chain.distributor.functions.publishEpoch(EPOCH, tree.root, AGR), chain.bob)
    receipt = chain.transact(chain.distributor.functions.publishEpoch(EPOCH, tree.root, AGR))
    (event,) = chain.distributor.events.EpochPublished().process_receipt(receipt, errors=DISCARD)
    assert (event["args"].merkleRoot, event["args"].total, event["args"].minted) == (
        tree.root,
        AGR,
        AGR,
    )
    with chain.reverts("Distributor: EPOCH_ALREADY_PUBLISHED"):
        _publish(chain, tree, AGR)


def test_unclaimed_rewards_are_not_minted_twice(chain: ChainEnv) -> None:
    """A second epoch mints only its own total; earlier unclaimed rewards stay reserved."""
    first = MerkleTree([(0, chain.alice, 5 * AGR)])
    second = MerkleTree([(0, chain.bob, 2 * AGR)])
    _publish(chain, first, 5 * AGR, epoch=1)
    _publish(chain, second, 2 * AGR, epoch=2)
    assert chain.reward_token.functions.totalSupply().call() == 7 * AGR
    _claim(chain, second, 0, chain.carol, epoch=2)
    _claim(chain, first, 0, chain.carol, epoch=1)
    _assert_minted_equals_claimed_plus_unclaimed(chain, {chain.alice, chain.bob})
    assert chain.distributor.functions.outstanding().call() == 0


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    index=st.integers(0, 2**256 - 1),
    account=st.binary(min_size=20, max_size=20),
    amount=st.integers(0, 2**256 - 1),
)
def test_leaf_hash_matches_the_contract(
    embedded_chain: ChainEnv, index: int, account: bytes, amount: int
) -> None:
    address = embedded_chain.w3.to_checksum_address(account)
    on_chain = embedded_chain.distributor.functions.leafHash(index, address, amount).call()
    assert on_chain == leaf_hash(index, address, amount)


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    amounts=st.lists(st.integers(1, 10**24), min_size=1, max_size=40),
    claim_order=st.randoms(use_true_random=False),
)
def test_random_trees_pay_every_leaf_exactly_once(
    embedded_chain: ChainEnv, amounts: list[int], claim_order: random.Random
) -> None:
    """Trees of 1..40 leaves (odd levels included) built in Python verify on-chain."""
    chain, epoch = embedded_chain, next(_fresh_epochs)
    accounts = chain.backend.accounts
    leaves = [(i, accounts[i % len(accounts)], a) for i, a in enumerate(amounts)]
    tree = MerkleTree(leaves)
    _publish(chain, tree, sum(amounts), epoch=epoch)
    order = list(range(len(leaves)))
    claim_order.shuffle(order)
    for index in order[:8]:  # a sample of claims per tree keeps the test quick
        _claim(chain, tree, index, chain.carol, epoch=epoch)
        assert chain.distributor.functions.isClaimed(epoch, index).call()
    claimed = sum(amounts[i] for i in order[:8])
    assert chain.distributor.functions.epochClaimed(epoch).call() == claimed
