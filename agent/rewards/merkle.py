"""The Merkle tree of an epoch's payouts, built exactly as `RewardDistributor` verifies it.

Leaf = keccak256(keccak256(abi.encode(uint256 index, address account, uint256 amount))); the
double hash keeps a 64-byte internal node from passing as a leaf. Parent = keccak256 of the two
children in ascending order (OpenZeppelin's commutative pair hash), so proofs carry no
left/right flags. Levels are paired left to right; a node left without a partner is promoted
unchanged to the next level, and a one-leaf tree's root is the leaf itself (empty proof).
"""

from __future__ import annotations

from collections.abc import Sequence

from eth_abi import encode
from eth_utils import keccak, to_checksum_address

HASH_BYTES = 32
UINT256_MAX = 2**256 - 1


def leaf_hash(index: int, account: str, amount: int) -> bytes:
    """Return the leaf the distributor computes for a claim of `amount` by `account`.

    Raises:
        ValueError: `index` or `amount` is outside uint256, or `account` is not an address.
    """
    for label, value in (("index", index), ("amount", amount)):
        if not 0 <= value <= UINT256_MAX:
            raise ValueError(f"leaf {label} {value} is outside uint256")
    address = to_checksum_address(account)
    inner = keccak(encode(["uint256", "address", "uint256"], [index, address, amount]))
    return keccak(inner)


def hash_pair(a: bytes, b: bytes) -> bytes:
    """Hash two nodes in ascending order (32-byte big-endian compare == uint256 compare)."""
    return keccak(a + b) if a <= b else keccak(b + a)


def verify(root: bytes, leaf: bytes, proof: Sequence[bytes]) -> bool:
    """Return whether `proof` leads from `leaf` to `root` (OpenZeppelin `MerkleProof.verify`)."""
    node = leaf
    for sibling in proof:
        if len(sibling) != HASH_BYTES:
            return False
        node = hash_pair(node, sibling)
    return node == root


class MerkleTree:
    """A Merkle tree over payout leaves `(index, account, amount)`.

    Leaf `i` of the input is at position `i` of the bottom level; `index` in a leaf is the
    claim index the contract marks as claimed, so indexes must be unique.

    Raises:
        ValueError: no leaves, a duplicate index, or an invalid leaf value.
    """

    def __init__(self, leaves: Sequence[tuple[int, str, int]]) -> None:
        if not leaves:
            raise ValueError("a Merkle tree needs at least one leaf")
        self.leaves: tuple[tuple[int, str, int], ...] = tuple(
            (int(index), to_checksum_address(account), int(amount))
            for index, account, amount in leaves
        )
        self._position: dict[int, int] = {}
        for position, (index, _, _) in enumerate(self.leaves):
            if index in self._position:
                raise ValueError(f"duplicate leaf index {index}")
            self._position[index] = position
        level = [leaf_hash(*leaf) for leaf in self.leaves]
        self._levels: list[list[bytes]] = [level]
        while len(level) > 1:
            level = [
                hash_pair(level[i], level[i + 1]) if i + 1 < len(level) else level[i]
                for i in range(0, len(level), 2)
            ]
            self._levels.append(level)

    @property
    def root(self) -> bytes:
        """The 32-byte root to publish on-chain."""
        return self._levels[-1][0]

    def leaf(self, index: int) -> bytes:
        """Return the hash of the leaf with claim index `index`."""
        return self._levels[0][self._lookup(index)]

    def proof(self, index: int) -> list[bytes]:
        """Return the sibling hashes from the leaf with claim index `index` up to the root."""
        position = self._lookup(index)
        proof: list[bytes] = []
        for level in self._levels[:-1]:
            sibling = position ^ 1
            if sibling < len(level):
                proof.append(level[sibling])
            position //= 2
        return proof

    def _lookup(self, index: int) -> int:
        try:
            return self._position[index]
        except KeyError:
            raise KeyError(f"no leaf with index {index} in this tree") from None
