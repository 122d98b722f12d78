"""Reassembling the DecisionLog's events: gaps, duplicates and broken heads are inconsistencies."""

from __future__ import annotations

from eth_utils import keccak

from agent.audit.log_events import LoggedBatch, _assemble
from agent.audit.record import ZERO_HASH, chain_head

INTERVAL = 4


def _hash(n: int) -> str:
    return "0x" + keccak(n.to_bytes(32, "big")).hex()


def _batches(sizes: list[int]) -> list[LoggedBatch]:
    """Events as a genuine DecisionLog emits them for batches of these sizes."""
    batches, seq, head = [], 0, ZERO_HASH
    for block, size in enumerate(sizes):
        hashes = tuple(_hash(n) for n in range(seq, seq + size))
        new_head = chain_head(list(hashes), head)
        batches.append(LoggedBatch(seq, hashes, head, new_head, f"0x{block:064x}", block))
        seq, head = seq + size, new_head
    return batches


def test_genuine_events_reassemble_with_the_head_at_every_checkpoint() -> None:
    hashes, heads, inconsistency = _assemble(_batches([3, 1, 6, 2]), INTERVAL)
    expected = [_hash(n) for n in range(12)]
    assert inconsistency is None and hashes == expected
    assert heads == {
        0: ZERO_HASH,
        1: chain_head(expected[:4]),
        2: chain_head(expected[:8]),
        3: chain_head(expected),
        -1: chain_head(expected),
    }


def test_a_missing_event_is_a_gap_at_its_first_seq() -> None:
    batches = _batches([3, 2, 4])
    hashes, _, inconsistency = _assemble([batches[0], batches[2]], INTERVAL)
    assert inconsistency is not None
    assert (inconsistency.seq, inconsistency.kind) == (3, "log_inconsistent")
    assert "pruned" in inconsistency.detail and len(hashes) == 3


def test_an_event_seen_twice_is_a_duplicate() -> None:
    batches = _batches([3, 2])
    _, _, inconsistency = _assemble([*batches, batches[1]], INTERVAL)
    assert inconsistency is not None
    assert (inconsistency.seq, inconsistency.kind) == (3, "log_inconsistent")


def test_an_event_that_does_not_chain_onto_the_last_is_inconsistent() -> None:
    first, second = _batches([3, 2])
    forged = LoggedBatch(3, second.hashes, ZERO_HASH, second.head, second.tx_hash, 1)
    _, _, inconsistency = _assemble([first, forged], INTERVAL)
    assert inconsistency is not None and (inconsistency.seq, inconsistency.found) == (3, ZERO_HASH)


def test_an_event_whose_hashes_do_not_give_its_head_is_inconsistent() -> None:
    first, second = _batches([3, 2])
    forged = LoggedBatch(
        3, (second.hashes[1], second.hashes[0]), second.prev_head, second.head, second.tx_hash, 1
    )
    _, _, inconsistency = _assemble([first, forged], INTERVAL)
    assert inconsistency is not None and inconsistency.seq == 3
    assert "reports head" in inconsistency.detail
