"""Each stored decision keeps the DecisionLog head it makes; `stored_head` reads it in one row.

The head of every prefix equals `chain_head` over the stored hashes (what the DecisionLog
computes), whether the heads were written with the decisions, are missing (a store written
before heads were kept: hashed from the last stored head), or were filled in by the next
decision appended after the upgrade.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.audit.outbox import append_decision, fill_heads, read_hashes, stored_head
from agent.audit.record import ZERO_HASH, chain_head
from agent.errors import AuditError
from agent.store import Store
from tests.unit.audit.conftest import sample_fields


def expected_heads(store: Store) -> list[str]:
    """The head after 0, 1, …, n stored decisions, hashed from scratch."""
    hashes = [h for _, h in read_hashes(store)]
    return [chain_head(hashes[:count]) for count in range(len(hashes) + 1)]


def test_the_head_of_every_prefix_is_the_chained_hashes(tmp_path: Path) -> None:
    with Store(tmp_path / "agora.db") as store:
        assert stored_head(store, 0) == ZERO_HASH
        for i in range(25):
            append_decision(store, sample_fields(i))
        heads = expected_heads(store)
        assert [stored_head(store, count) for count in range(26)] == heads
        with pytest.raises(AuditError, match="fewer than 26"):
            stored_head(store, 26)


def test_heads_missing_from_an_older_store_are_hashed_then_filled_by_the_next_append(
    tmp_path: Path,
) -> None:
    with Store(tmp_path / "agora.db") as store:
        for i in range(12):
            append_decision(store, sample_fields(i))
        store.db.execute("UPDATE decisions SET head = NULL WHERE seq >= 5")  # as migrated
        heads = expected_heads(store)
        assert [stored_head(store, count) for count in range(13)] == heads
        store.db.execute("UPDATE decisions SET head = NULL")  # none at all
        assert [stored_head(store, count) for count in range(13)] == heads

        append_decision(store, sample_fields(12))
        missing = store.db.execute("SELECT COUNT(*) FROM decisions WHERE head IS NULL")
        assert missing.fetchone()[0] == 0
        assert [stored_head(store, count) for count in range(14)] == expected_heads(store)


def test_fill_heads_writes_the_missing_heads_once(tmp_path: Path) -> None:
    with Store(tmp_path / "agora.db") as store:
        fill_heads(store)  # nothing stored: nothing to do
        for i in range(8):
            append_decision(store, sample_fields(i))
        heads = expected_heads(store)
        store.db.execute("UPDATE decisions SET head = NULL WHERE seq >= 3")
        fill_heads(store)
        stored = [h for (h,) in store.db.execute("SELECT head FROM decisions ORDER BY seq")]
        assert stored == heads[1:]
        fill_heads(store)  # all there: unchanged
        assert [stored_head(store, count) for count in range(9)] == heads
