"""The public API of agent.audit, pinned: a change here is a change for every caller."""

from __future__ import annotations

import agent.audit

PUBLIC = {
    "DEFAULT_BATCH_SIZE",
    "ENCODING_VERSION",
    "NO_TRADE",
    "RECORD_ABI_TYPES",
    "ZERO_HASH",
    "AuditTrail",
    "DecisionFields",
    "DecisionOutbox",
    "DecisionProof",
    "DecisionRecord",
    "ExecutedTrade",
    "FlushReport",
    "LogLocation",
    "Mismatch",
    "StoredDecision",
    "VerifyReport",
    "append_decision",
    "as_bytes32",
    "canonical_json",
    "chain_head",
    "chain_records",
    "config_digest",
    "decision_hash",
    "decision_hashes",
    "encode",
    "find_first_mismatch",
    "keccak256",
    "locate_decision_log",
    "observation_digest",
    "prove",
    "read_decision",
    "read_decisions",
    "read_onchain_hashes",
    "record_from_json",
    "stored_count",
    "text_id",
    "to_fixed_e9",
    "verify",
    "verify_records",
}


def test_the_public_api_is_pinned() -> None:
    assert set(agent.audit.__all__) == PUBLIC
    assert all(hasattr(agent.audit, name) for name in PUBLIC)
