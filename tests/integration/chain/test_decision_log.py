"""DecisionLog on both backends: writers only, the running head, one event per batch,
checkpoints every 1,000 entries, and what a decision costs in gas."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eth_utils import keccak
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from web3.logs import DISCARD

if TYPE_CHECKING:
    from tests.integration.chain.conftest import ChainEnv

ZERO = bytes(32)
INTERVAL = 1_000
SINGLE_RECORD_GAS = 40_000
"""Target for one `record` transaction (21,000 base included), once the log holds an entry."""
BATCHED_GAS_PER_DECISION = 2_000
"""Target per decision for `recordBatch` of 100 (21,000 base included, shared by the batch)."""


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


def _events(chain: ChainEnv, receipt: Any) -> list[Any]:
    return list(chain.log.events.DecisionsRecorded().process_receipt(receipt, errors=DISCARD))


def test_record_emits_one_event_with_the_hash_and_the_heads(chain: ChainEnv) -> None:
    first, second = decision_hash(1), decision_hash(2)
    chain.transact(chain.log.functions.record(first))
    receipt = chain.transact(chain.log.functions.record(second))
    (event,) = _events(chain, receipt)
    head = chain_head([first, second])
    args = event["args"]
    assert (args.firstSeq, args.prevHead, args.head) == (1, chain_head([first]), head)
    assert args.decisionHashes == [second]
    assert chain.log.functions.head().call() == head


def test_record_batch_emits_one_event_carrying_every_hash(chain: ChainEnv) -> None:
    chain.transact(chain.log.functions.record(decision_hash(0)))
    hashes = [decision_hash(n) for n in range(1, 8)]
    receipt = chain.transact(chain.log.functions.recordBatch(hashes))
    (event,) = _events(chain, receipt)
    args = event["args"]
    assert (args.firstSeq, args.decisionHashes) == (1, hashes)
    assert args.prevHead == chain_head([decision_hash(0)])
    assert args.head == chain_head([decision_hash(0), *hashes]) == chain.log.functions.head().call()
    assert chain.log.functions.count().call() == 8


def test_empty_batch_reverts(chain: ChainEnv) -> None:
    with chain.reverts("DecisionLog: EMPTY_BATCH"):
        chain.transact(chain.log.functions.recordBatch([]))


def test_the_log_keeps_no_hash_in_storage(chain: ChainEnv) -> None:
    names = {item.get("name") for item in chain.log.abi}
    assert not names & {"hashAt", "hashRange", "hashes", "DecisionRecorded"}
    assert {"count", "head", "checkpoints", "CHECKPOINT_INTERVAL", "DecisionsRecorded"} <= names
    assert chain.log.functions.CHECKPOINT_INTERVAL().call() == INTERVAL


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


def test_gas_per_decision_meets_the_targets(chain: ChainEnv) -> None:
    """Gas is deterministic: one `record` <= 40k, `recordBatch` of 100 <= 2k per decision."""
    first = chain.transact(chain.log.functions.record(decision_hash(0)))["gasUsed"]
    single = [
        chain.transact(chain.log.functions.record(decision_hash(n)))["gasUsed"] for n in (1, 2)
    ]
    batches = [
        chain.transact(
            chain.log.functions.recordBatch([decision_hash(n) for n in range(s, s + 100)])
        )["gasUsed"]
        for s in range(3, 303, 100)
    ]
    print(f"{chain.name}: first record {first}, record {single}, batch of 100 {batches}")
    assert max(single) <= SINGLE_RECORD_GAS, single
    assert max(batches) / 100 <= BATCHED_GAS_PER_DECISION, batches
    assert first <= SINGLE_RECORD_GAS + 2 * 20_000  # a fresh log's count and head start at 0


def test_2500_hashes_leave_the_off_chain_head_and_a_checkpoint_every_1000(
    chain: ChainEnv,
) -> None:
    hashes = [decision_hash(n) for n in range(2_500)]
    logged = 0
    for size in (999, 1, 333, 333, 333, 1):  # checkpoints by `record` and mid-batch
        chunk = hashes[logged : logged + size]
        call = (
            chain.log.functions.record(chunk[0])
            if size == 1
            else chain.log.functions.recordBatch(chunk)
        )
        chain.transact(call)
        logged += size
    chain.transact(chain.log.functions.recordBatch(hashes[logged:]))
    assert chain.log.functions.count().call() == 2_500
    assert chain.log.functions.head().call() == chain_head(hashes)
    checkpoints = [chain.log.functions.checkpoints(k).call() for k in range(4)]
    assert checkpoints == [ZERO, chain_head(hashes[:1_000]), chain_head(hashes[:2_000]), ZERO]
    events = chain.log.events.DecisionsRecorded.get_logs(from_block=0, to_block="latest")
    carried = [h for event in events for h in event["args"]["decisionHashes"]]
    assert carried == hashes
