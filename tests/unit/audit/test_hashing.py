"""The fast keccak256 binding equals eth_utils' bit for bit; batch hashing equals one at a time."""

from __future__ import annotations

import random

import numpy as np
from eth_abi import encode as abi_encode
from eth_utils import keccak as eth_utils_keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.audit.record import (
    RECORD_ABI_TYPES,
    ZERO_HASH,
    DecisionRecord,
    chain_head,
    chain_records,
    decision_hash,
    decision_hashes,
    encode,
    keccak256,
    observation_digest,
    text_id,
)
from agent.backtest.onchain import NO_OBSERVATION
from tests.unit.audit.conftest import records, sample_fields, sample_record


def test_keccak256_equals_eth_utils_on_a_thousand_random_inputs() -> None:
    rng = random.Random(16)
    lengths = [0, 1, 31, 32, 33, 64, 135, 136, 137, 200, 271, 272, 273, 1216, 4096]
    lengths += [rng.randrange(0, 3_000) for _ in range(1_000)]
    for length in lengths:
        data = rng.randbytes(length)
        assert keccak256(data) == eth_utils_keccak(data), f"differs at {length} bytes"


def test_keccak256_of_known_vectors() -> None:
    empty = "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    assert keccak256(b"").hex() == empty
    assert keccak256(b"abc").hex() == (
        "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"
    )
    assert NO_OBSERVATION == observation_digest(np.zeros(0, dtype=np.float32)) == "0x" + empty


def test_keccak256_takes_any_bytes_like_value() -> None:
    data = b"decision"
    assert keccak256(bytearray(data)) == keccak256(memoryview(data)) == eth_utils_keccak(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2_000))
def test_keccak256_equals_eth_utils_on_any_bytes(data: bytes) -> None:
    assert keccak256(data) == eth_utils_keccak(data)


def test_record_hashes_equal_the_eth_utils_reference() -> None:
    fixtures = [sample_record(), *[sample_fields(i).to_record(i, ZERO_HASH) for i in range(30)]]
    for record in fixtures:
        reference = eth_utils_keccak(abi_encode(list(RECORD_ABI_TYPES), list(record.abi_values())))
        assert decision_hash(record) == "0x" + reference.hex()
        assert encode(record) == abi_encode(list(RECORD_ABI_TYPES), list(record.abi_values()))
    observation = [0.5, -1.25, 3.0]
    assert (
        observation_digest(observation)
        == "0x" + eth_utils_keccak(np.asarray(observation, dtype="<f4").tobytes()).hex()
    )
    assert text_id("ppo-seed0") == "0x" + eth_utils_keccak(text="ppo-seed0").hex()


def test_chain_head_equals_the_eth_utils_reference() -> None:
    hashes = [decision_hash(sample_fields(i).to_record(i, ZERO_HASH)) for i in range(10)]
    head = bytes(32)
    for h in hashes:
        head = eth_utils_keccak(head + bytes.fromhex(h[2:]))
    assert chain_head(hashes) == "0x" + head.hex()
    assert chain_head([]) == ZERO_HASH


@settings(max_examples=50, deadline=None)
@given(st.lists(records(), max_size=8))
def test_decision_hashes_equal_decision_hash_one_at_a_time(batch: list[DecisionRecord]) -> None:
    assert decision_hashes(batch) == [decision_hash(r) for r in batch]
    assert decision_hashes(iter(batch)) == [decision_hash(r) for r in batch]


def test_chain_records_links_each_record_to_the_hash_of_the_one_before() -> None:
    decisions = [sample_fields(i) for i in range(12)]
    chained, hashes = chain_records(decisions)
    prev = ZERO_HASH
    for i, (fields, record) in enumerate(zip(decisions, chained, strict=True)):
        assert record == fields.to_record(i, prev)
        prev = decision_hash(record)
    assert hashes == decision_hashes(chained)
    more, more_hashes = chain_records(decisions[:2], prev_hash=hashes[-1], first_seq=12)
    assert [r.seq for r in more] == [12, 13] and more[0].prev_hash == hashes[-1]
    assert more_hashes == decision_hashes(more)
    assert chain_records([]) == ([], [])
