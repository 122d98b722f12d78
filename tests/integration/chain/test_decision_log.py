"""DecisionLog on both backends: writers only, the running head, batches, range reads."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from eth_tester.exceptions import TransactionFailed
from eth_utils import keccak
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from web3.exceptions import ContractLogicError
from web3.logs import DISCARD

if TYPE_CHECKING:
    from tests.integration.chain.conftest import ChainEnv

ZERO = bytes(32)
CALL_REVERTED = (ContractLogicError, TransactionFailed)
"""A reverting eth_call: web3 raises ContractLogicError on anvil, eth-tester TransactionFailed."""


def chain_head(hashes: list[bytes], head: bytes = ZERO) -> bytes:
    """The log's head recomputed off-chain: head = keccak256(head ‖ h), from bytes32(0)."""
    for h in hashes:
        head = keccak(head + h)
    return head


def decision_hash(n: int) -> bytes:
    return keccak(n.to_bytes(32, "big"))


def test_record_by_a_non_writer_reverts(chain: ChainEnv) -> None:
    with chain.reverts("DecisionLog: CALLER_NOT_WRITER"):
        chain.transact(chain.log.functions.record(decision_hash(1)), chain.alice)
    with chain.reverts("DecisionLog: CALLER_NOT_WRITER"):
        chain.transact(chain.log.functions.recordBatch([decision_hash(1)]), chain.alice)
    assert chain.log.functions.count().call() == 0


def test_a_granted_writer_can_record(chain: ChainEnv) -> None:
    role = chain.log.functions.WRITER_ROLE().call()
    chain.transact(chain.log.functions.grantRole(role, chain.alice))
    chain.transact(chain.log.functions.record(decision_hash(1)), chain.alice)
    assert chain.log.functions.count().call() == 1


def test_record_emits_decision_recorded_with_the_new_head(chain: ChainEnv) -> None:
    first, second = decision_hash(1), decision_hash(2)
    chain.transact(chain.log.functions.record(first))
    receipt = chain.transact(chain.log.functions.record(second))
    (event,) = chain.log.events.DecisionRecorded().process_receipt(receipt, errors=DISCARD)
    head = chain_head([first, second])
    assert (event["args"].seq, event["args"].decisionHash, event["args"].head) == (1, second, head)
    assert chain.log.functions.head().call() == head
    assert chain.log.functions.hashAt(0).call() == first


def test_empty_batch_reverts(chain: ChainEnv) -> None:
    with chain.reverts("DecisionLog: EMPTY_BATCH"):
        chain.transact(chain.log.functions.recordBatch([]))


def test_reads_beyond_the_log_revert(chain: ChainEnv) -> None:
    chain.transact(chain.log.functions.record(decision_hash(1)))
    with pytest.raises(CALL_REVERTED, match="DecisionLog: SEQ_OUT_OF_RANGE"):
        chain.log.functions.hashAt(1).call()
    with pytest.raises(CALL_REVERTED, match="DecisionLog: SEQ_OUT_OF_RANGE"):
        chain.log.functions.hashRange(2, 10).call()
    assert chain.log.functions.hashRange(1, 10).call() == []


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    batches=st.lists(
        st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=12),
        min_size=1,
        max_size=4,
    )
)
def test_head_recomputed_off_chain_matches_after_random_batches(
    chain: ChainEnv, batches: list[list[bytes]]
) -> None:
    head = chain.log.functions.head().call()
    count = chain.log.functions.count().call()
    for batch in batches:
        if len(batch) == 1:
            chain.transact(chain.log.functions.record(batch[0]))
        else:
            chain.transact(chain.log.functions.recordBatch(batch))
        head = chain_head(batch, head)
        count += len(batch)
    assert chain.log.functions.head().call() == head
    assert chain.log.functions.count().call() == count


def test_one_thousand_hashes_in_batches_match_the_off_chain_head(embedded_chain: ChainEnv) -> None:
    """The issue's "done when": 1,000 hashes logged in 10 batches of 100 verify off-chain."""
    chain = embedded_chain
    hashes = [decision_hash(n) for n in range(1_000)]
    first_seqs = []
    for start in range(0, 1_000, 100):
        receipt = chain.transact(chain.log.functions.recordBatch(hashes[start : start + 100]))
        events = chain.log.events.DecisionRecorded().process_receipt(receipt, errors=DISCARD)
        assert [e["args"].seq for e in events] == list(range(start, start + 100))
        first_seqs.append(events[0]["args"].seq)
    assert first_seqs == list(range(0, 1_000, 100))
    assert chain.log.functions.count().call() == 1_000
    assert chain.log.functions.head().call() == chain_head(hashes)
    on_chain = [
        h
        for start in range(0, 1_000, 250)
        for h in chain.log.functions.hashRange(start, 250).call()
    ]
    assert on_chain == hashes
