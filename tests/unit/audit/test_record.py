"""The decision record: canonical encoding (golden vector), hashing, fixed point, JSON."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from eth_abi import encode as abi_encode
from eth_utils import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.audit.record import (
    RECORD_ABI_TYPES,
    ZERO_HASH,
    DecisionFields,
    DecisionRecord,
    ExecutedTrade,
    as_bytes32,
    canonical_json,
    chain_head,
    config_digest,
    decision_hash,
    encode,
    observation_digest,
    record_from_json,
    to_fixed_e9,
)
from agent.config import Settings
from agent.errors import AuditError
from tests.unit.audit.conftest import records, sample_fields, sample_record

GOLDEN_HASH = "0x1326b0f98d82733be758b5ae8a1d451d698af280ca468eda4ec062f07e1e3b9d"
"""decision_hash(sample_record()); also printed in docs/audit.md as the test vector."""
DOCS = Path(__file__).resolve().parents[3] / "docs" / "audit.md"


def _b32(text: str) -> bytes:
    return bytes.fromhex(text[2:])


def _abi_by_hand(fields: list[tuple[str, Any]]) -> bytes:
    """abi.encode(...) of (type, value) pairs built one field at a time: static values in the
    head, dynamic ones as an offset in the head and their encoding in the tail."""
    dynamic = {"string", "string[]", "int64[]", "bool[]"}
    head_size = 32 * len(fields)
    head, tail = b"", b""
    for abi_type, value in fields:
        if abi_type in dynamic:
            head += (head_size + len(tail)).to_bytes(32, "big")
            tail += abi_encode([abi_type], [value])[32:]  # drop the lone value's own offset
        else:
            word = abi_encode([abi_type], [value])
            assert len(word) == 32
            head += word
    return head + tail


def test_golden_vector_matches_an_independent_field_by_field_encoding() -> None:
    r = sample_record()
    t = r.trade
    fields = [
        ("uint8", 1),
        ("uint64", 7),
        ("int64", 1_704_067_200_000),
        ("string", "synthetic:SYN/USD:1h"),
        ("bytes32", _b32(r.model_id)),
        ("bytes32", b"\xc0" * 32),
        ("bytes32", keccak(np.array([0.5, -1.25, 3.0], dtype="<f4").tobytes())),
        ("string[]", ["ma-crossover", "rsi-reversion", "macd"]),
        ("int64[]", [250_000_000, -1_000_000_000, 0]),
        ("bool[]", [True, True, False]),
        ("uint64", 750_000_000),
        ("uint8", 1),  # buy
        ("uint256", t.amount_in),
        ("uint256", 12_345_678_901_234_567_890),
        ("uint256", 3_703_703),
        ("uint64", 98_765),
        ("bytes32", b"\xab" * 32),
        ("bytes32", b"\x11" * 32),
    ]
    assert [f[0] for f in fields] == list(RECORD_ABI_TYPES)
    expected = _abi_by_hand(fields)
    assert encode(r) == expected
    assert decision_hash(r) == "0x" + keccak(expected).hex() == GOLDEN_HASH


def test_docs_print_the_golden_vector() -> None:
    text = DOCS.read_text(encoding="utf-8")
    assert GOLDEN_HASH in text
    assert canonical_json(sample_record()) in text


CHANGES: dict[str, Any] = {
    "seq": 8,
    "bar_time_ms": 1_704_067_200_001,
    "market": "synthetic:SYN/USD:4h",
    "model_id": "0x" + "00" * 31 + "01",
    "config_hash": "0x" + "c0" * 31 + "c1",
    "observation_digest": ZERO_HASH,
    "strategy_names": ("ma-crossover", "rsi-reversion", "macd2"),
    "signals_e9": (250_000_001, -1_000_000_000, 0),
    "masks": (True, False, False),
    "target_exposure_e9": 750_000_001,
    "prev_hash": "0x" + "11" * 31 + "12",
}
TRADE_CHANGES: dict[str, Any] = {
    "side": "sell",
    "amount_in": 1_234_567_891,
    "amount_out": 12_345_678_901_234_567_891,
    "fee": 3_703_704,
    "gas_used": 98_766,
    "tx_hash": ZERO_HASH,
}


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_any_single_field_change_changes_the_hash(name: str) -> None:
    value = CHANGES[name]
    if name == "masks":  # a masked-off signal must be 0
        changed = dataclasses.replace(sample_record(), masks=value, signals_e9=(250_000_000, 0, 0))
    else:
        changed = dataclasses.replace(sample_record(), **{name: value})
    assert decision_hash(changed) != GOLDEN_HASH


@pytest.mark.parametrize("name", sorted(TRADE_CHANGES))
def test_any_single_trade_field_change_changes_the_hash(name: str) -> None:
    base = sample_record()
    trade = dataclasses.replace(base.trade, **{name: TRADE_CHANGES[name]})
    assert decision_hash(dataclasses.replace(base, trade=trade)) != GOLDEN_HASH


def test_strategy_order_is_part_of_the_hash() -> None:
    base = sample_record()
    swapped = dataclasses.replace(
        base,
        strategy_names=("rsi-reversion", "ma-crossover", "macd"),
        signals_e9=(-1_000_000_000, 250_000_000, 0),
    )
    assert decision_hash(swapped) != decision_hash(base)


@settings(max_examples=200, deadline=None)
@given(records())
def test_json_round_trip_keeps_the_record_and_its_hash(record: DecisionRecord) -> None:
    text = canonical_json(record)
    again = record_from_json(text)
    assert again == record
    assert decision_hash(again) == decision_hash(record)
    assert canonical_json(again) == text
    # any JSON spelling of the same data (key order, whitespace) gives the same record
    assert record_from_json(json.dumps(json.loads(text), indent=1)) == record


@settings(max_examples=50, deadline=None)
@given(records())
def test_hash_is_keccak_of_the_abi_encoding(record: DecisionRecord) -> None:
    encoded = abi_encode(list(RECORD_ABI_TYPES), list(record.abi_values()))
    assert decision_hash(record) == "0x" + keccak(encoded).hex()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.0, 0),
        (1.0, 10**9),
        (-1.0, -(10**9)),
        (0.1, 100_000_000),  # 0.1000000000000000055511151231257827 * 1e9
        (2**-10, 976_562),  # exactly 976562.5: ties to even, down
        (3 * 2**-10, 2_929_688),  # exactly 2929687.5: ties to even, up
        (-(2**-10), -976_562),
        (0.123456789499999, 123_456_789),
        (1e-10, 0),
    ],
)
def test_to_fixed_e9_rounds_the_exact_value_half_to_even(value: float, expected: int) -> None:
    assert to_fixed_e9(value) == expected


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_to_fixed_e9_refuses_non_finite_values(value: float) -> None:
    with pytest.raises(AuditError, match="non-finite"):
        to_fixed_e9(value)


def test_fields_become_a_record_with_quantised_values_and_masked_signals_zeroed() -> None:
    fields = sample_fields(4)  # masks [True, True, False], the masked signal is NaN
    rec = fields.to_record(4, "0x" + "22" * 32)
    assert rec.seq == 4 and rec.prev_hash == "0x" + "22" * 32
    assert rec.signals_e9 == (to_fixed_e9(fields.signals[0]), -500_000_000, 0)
    assert rec.target_exposure_e9 == 10**9 and rec.target_exposure == 1.0
    assert rec.signals[1] == -0.5


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"signals_e9": (250_000_000, -1_000_000_000, 5)}, "mask is off"),
        ({"signals_e9": (1_000_000_001, 0, 0)}, r"signals_e9\[0\]"),
        ({"masks": (True, True)}, "differ in length"),
        ({"target_exposure_e9": -1}, "target_exposure_e9"),
        ({"target_exposure_e9": 10**9 + 1}, "target_exposure_e9"),
        ({"model_id": "0x1234"}, "model_id"),
        ({"prev_hash": "0x" + "zz" * 32}, "prev_hash"),
        ({"seq": -1}, "seq"),
        ({"seq": 1.0}, "seq"),
        ({"market": ""}, "market"),
    ],
)
def test_invalid_records_are_refused(change: dict[str, Any], message: str) -> None:
    with pytest.raises(AuditError, match=message):
        dataclasses.replace(sample_record(), **change)


def test_a_no_trade_with_amounts_is_refused() -> None:
    with pytest.raises(AuditError, match="side 'none'"):
        ExecutedTrade("none", amount_in=1)
    with pytest.raises(AuditError, match="side"):
        ExecutedTrade("short")  # type: ignore[arg-type]


def test_numpy_integers_are_stored_as_plain_ints() -> None:
    trade = ExecutedTrade("buy", np.int64(5), np.uint64(7), np.int64(1), np.int64(9))
    assert type(trade.amount_in) is int and type(trade.gas_used) is int
    rec = dataclasses.replace(sample_record(), seq=np.int64(3), trade=trade)
    assert type(rec.seq) is int
    assert record_from_json(canonical_json(rec)) == rec


def test_malformed_json_records_are_refused() -> None:
    data = sample_record().to_json_data()
    with pytest.raises(AuditError, match="not valid JSON"):
        record_from_json("{nope")
    with pytest.raises(AuditError, match="malformed"):
        record_from_json(json.dumps({k: v for k, v in data.items() if k != "market"}))
    with pytest.raises(AuditError, match="version"):
        record_from_json(json.dumps({**data, "version": 2}))


def test_chain_head_follows_the_decision_log_rule() -> None:
    h1, h2 = "0x" + "01" * 32, "0x" + "02" * 32
    step1 = keccak(bytes(32) + _b32(h1))
    assert chain_head([]) == ZERO_HASH
    assert chain_head([h1]) == "0x" + step1.hex()
    assert chain_head([h1, h2]) == "0x" + keccak(step1 + _b32(h2)).hex()
    assert chain_head([h2], head=chain_head([h1])) == chain_head([h1, h2])


def test_observation_digest_hashes_little_endian_float32_in_c_order() -> None:
    obs = np.array([[0.1, -2.0], [3.5, 1e-3]], dtype="float64")
    expected = keccak(obs.astype("<f4").tobytes(order="C"))
    assert observation_digest(obs) == "0x" + expected.hex()
    assert observation_digest(obs.astype(">f4")) == observation_digest(obs)
    assert observation_digest(np.asfortranarray(obs)) == observation_digest(obs)


def test_config_digest_extends_the_short_config_hash() -> None:
    settings_ = Settings()
    digest = config_digest(settings_)
    assert as_bytes32(digest) == digest
    assert digest[2:].startswith(settings_.config_hash())
    changed = settings_.model_copy(update={"dex": settings_.dex.model_copy(update={"fee_bps": 5})})
    assert config_digest(changed) != digest


@given(st.binary(min_size=32, max_size=32))
def test_as_bytes32_accepts_bytes_and_any_hex_spelling(raw: bytes) -> None:
    canonical = "0x" + raw.hex()
    assert as_bytes32(raw) == canonical
    assert as_bytes32(raw.hex().upper()) == canonical
    assert as_bytes32("0X" + raw.hex()) == canonical


def test_decision_fields_with_mismatched_lengths_are_refused() -> None:
    fields = dataclasses.replace(sample_fields(0), masks=[True])
    with pytest.raises(AuditError, match="3 signals but 1 masks"):
        fields.to_record(0, ZERO_HASH)
    assert isinstance(sample_fields(1), DecisionFields)
