"""A bar's execution on a chain: a failed attempt is recorded and completed by a later one."""

from __future__ import annotations

from pathlib import Path

from agent.service import ledger
from agent.store import Store

KEY = "anvil:31337"
BAR = 1_704_067_200_000


def test_failed_attempts_are_counted_and_kept_beside_the_success(tmp_path: Path) -> None:
    with Store(tmp_path / "agora.db") as store:
        ledger.put_chain_genesis(store, KEY, {"operator": [0, 0], "trader": [0, 0]})
        attempts = ledger.record_failed_execution(
            store, KEY, BAR, reason="swapExactIn reverted: Pool: EXPIRED", arbitrage_tx="0xa1",
            gas_used=90_000,
        )  # fmt: skip
        assert attempts == 1
        again = ledger.record_failed_execution(
            store, KEY, BAR, reason="swapExactIn reverted: Pool: EXPIRED, twice",
            arbitrage_tx=None, gas_used=0,
        )  # fmt: skip
        assert again == 2
        failed = ledger.failed_execution(store, KEY)
        assert failed is not None and (failed["bar_time_ms"], failed["attempts"]) == (BAR, 2)
        assert ledger.chain_genesis(store, KEY) == ({"operator": [0, 0], "trader": [0, 0]}, None)

        ledger.record_execution(store, KEY, BAR, arbitrage_tx=None, swap_tx="0xb2", gas_used=100)
        done = ledger.execution(store, KEY, BAR)
        assert done is not None
        assert (done["status"], done["attempts"], done["arbitrage_tx"], done["swap_tx"]) == (
            ledger.EXECUTED, 3, "0xa1", "0xb2",
        )  # fmt: skip
        assert done["gas_used"] == 90_100 and "EXPIRED, twice" in done["error"]
        assert ledger.failed_execution(store, KEY) is None
        assert ledger.chain_genesis(store, KEY) == ({"operator": [0, 0], "trader": [0, 0]}, BAR)

        ledger.record_execution(store, KEY, BAR + 1, arbitrage_tx="0xc3", swap_tx=None, gas_used=1)
        plain = ledger.execution(store, KEY, BAR + 1)
        assert plain is not None and (plain["status"], plain["attempts"], plain["error"]) == (
            ledger.EXECUTED, 1, None,
        )  # fmt: skip
