"""The Python Merkle builder: proofs verify, tampered claims do not, nodes are not leaves."""

from __future__ import annotations

import pytest
from eth_abi import encode
from eth_utils import keccak, to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.rewards.merkle import MerkleTree, hash_pair, leaf_hash, verify

ALICE = to_checksum_address("0x" + "a1" * 20)
BOB = to_checksum_address("0x" + "b2" * 20)

addresses = st.binary(min_size=20, max_size=20).map(to_checksum_address)
amounts = st.integers(min_value=0, max_value=2**256 - 1)
leaf_sets = st.lists(st.tuples(addresses, amounts), min_size=1, max_size=40).map(
    lambda pairs: [(i, account, amount) for i, (account, amount) in enumerate(pairs)]
)


def test_leaf_is_the_double_keccak_of_the_abi_encoding() -> None:
    encoded = encode(["uint256", "address", "uint256"], [3, ALICE, 10**18])
    assert len(encoded) == 96
    assert leaf_hash(3, ALICE, 10**18) == keccak(keccak(encoded))
    assert leaf_hash(3, ALICE.lower(), 10**18) == leaf_hash(3, ALICE, 10**18)


def test_pair_hash_sorts_as_unsigned_integers() -> None:
    low, high = bytes(31) + b"\x01", b"\x80" + bytes(31)
    assert hash_pair(low, high) == hash_pair(high, low) == keccak(low + high)


def test_one_leaf_tree_has_the_leaf_as_root_and_an_empty_proof() -> None:
    tree = MerkleTree([(0, ALICE, 5)])
    assert tree.root == leaf_hash(0, ALICE, 5)
    assert tree.proof(0) == []
    assert verify(tree.root, tree.leaf(0), [])


def test_three_leaf_tree_promotes_the_unpaired_node() -> None:
    leaves = [(0, ALICE, 1), (1, BOB, 2), (2, ALICE, 3)]
    a, b, c = (leaf_hash(*leaf) for leaf in leaves)
    tree = MerkleTree(leaves)
    assert tree.root == hash_pair(hash_pair(a, b), c)
    assert tree.proof(2) == [hash_pair(a, b)]
    assert tree.proof(0) == [b, c]


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one leaf"):
        MerkleTree([])
    with pytest.raises(ValueError, match="duplicate leaf index 1"):
        MerkleTree([(1, ALICE, 1), (1, BOB, 2)])
    with pytest.raises(ValueError, match="outside uint256"):
        leaf_hash(0, ALICE, -1)
    with pytest.raises(ValueError):
        leaf_hash(0, "0x1234", 1)
    with pytest.raises(KeyError, match="no leaf with index 9"):
        MerkleTree([(0, ALICE, 1)]).proof(9)


def test_proof_entries_must_be_32_bytes() -> None:
    tree = MerkleTree([(0, ALICE, 1), (1, BOB, 2)])
    assert not verify(tree.root, tree.leaf(0), [tree.proof(0)[0] + b"\x00"])


@settings(max_examples=50, deadline=None)
@given(leaves=leaf_sets)
def test_every_proof_verifies(leaves: list[tuple[int, str, int]]) -> None:
    tree = MerkleTree(leaves)
    for index, account, amount in leaves:
        proof = tree.proof(index)
        assert verify(tree.root, leaf_hash(index, account, amount), proof)
        assert len(proof) <= max(len(leaves) - 1, 0).bit_length()


@settings(max_examples=50, deadline=None)
@given(leaves=leaf_sets, data=st.data())
def test_a_proof_does_not_verify_another_amount_account_or_index(
    leaves: list[tuple[int, str, int]], data: st.DataObject
) -> None:
    tree = MerkleTree(leaves)
    index, account, amount = data.draw(st.sampled_from(leaves))
    proof = tree.proof(index)
    other_amount = data.draw(amounts.filter(lambda a: a != amount))
    other_account = data.draw(addresses.filter(lambda a: a != account))
    assert not verify(tree.root, leaf_hash(index, account, other_amount), proof)
    assert not verify(tree.root, leaf_hash(index, other_account, amount), proof)
    assert not verify(tree.root, leaf_hash(index + len(leaves), account, amount), proof)


@settings(max_examples=50, deadline=None)
@given(leaves=leaf_sets.filter(lambda leaves: len(leaves) >= 2))
def test_an_internal_node_cannot_pass_as_a_leaf(leaves: list[tuple[int, str, int]]) -> None:
    """The 64-byte preimage of a parent, claimed as leaf data, never reproduces the root."""
    tree = MerkleTree(leaves)
    left, right = tree.leaf(leaves[0][0]), tree.leaf(leaves[1][0])
    parent = hash_pair(left, right)
    upper_proof = tree.proof(leaves[0][0])[1:]
    assert verify(tree.root, parent, upper_proof)  # as a node it is part of the tree ...
    preimage = min(left, right) + max(left, right)
    assert verify(tree.root, keccak(preimage), upper_proof)  # a single-hash leaf would be forged
    for data in (preimage, max(left, right) + min(left, right)):
        assert not verify(tree.root, keccak(keccak(data)), upper_proof)  # the double hash is not
