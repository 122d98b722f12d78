"""The audit trail: decision records, their canonical encoding and hash, the outbox that logs
them on the DecisionLog contract, and the verifier that checks the store against the chain.

    record   DecisionRecord (immutable), encode / decision_hash(es) / chain_records / chain_head
    outbox   the `decisions` table and DecisionOutbox (store first, then chain, exactly once)
    trail    AuditTrail: append + flush, for backtests and the service
    verify   verify (first mismatch by seq and kind), prove (one decision's on-chain proof)

Errors: AuditError (the trail does not verify, or a record is invalid), ChainError.
"""

from __future__ import annotations

from agent.audit.log_events import Mismatch, read_onchain_hashes
from agent.audit.outbox import (
    DEFAULT_BATCH_SIZE,
    DecisionOutbox,
    FlushReport,
    StoredDecision,
    append_decision,
    read_decision,
    read_decisions,
    stored_count,
)
from agent.audit.record import (
    ENCODING_VERSION,
    NO_TRADE,
    RECORD_ABI_TYPES,
    ZERO_HASH,
    DecisionFields,
    DecisionRecord,
    ExecutedTrade,
    as_bytes32,
    canonical_json,
    chain_head,
    chain_records,
    config_digest,
    decision_hash,
    decision_hashes,
    encode,
    keccak256,
    observation_digest,
    record_from_json,
    text_id,
    to_fixed_e9,
)
from agent.audit.trail import AuditTrail, LogLocation, locate_decision_log
from agent.audit.verify import (
    DecisionProof,
    VerifyReport,
    find_first_mismatch,
    prove,
    verify,
    verify_records,
)

__all__ = [
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
]
