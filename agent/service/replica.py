"""The chain as a replica of the service's records: pool, balances, decision log, rewards.

The store decides; the chain follows. `ChainReplica.sync` brings a chain up to the records, one
bar at a time: the operator's arbitrage that couples the pool to the bar's price, then the
trader's swap, each exactly the swap the off-chain pool mirror computed (the executor checks the
amounts and the reserves after to the wei). It works out what a bar still needs by reading the
chain (pool reserves and the two accounts' balances) and comparing with the three states the
records imply (before the bar, after its arbitrage, after its swap), so a crash between sending
and recording never sends a swap twice. A fresh chain is synced from its genesis only on a
chain that does not persist, or by the explicit `agora chain recover`. A chain that is *behind*
the records (an anvil node restarted from a state file written a few seconds before it died)
is found where it stands, at the exact state after one of the recorded bars, and replicated on
from there (`chain_rewound`); anything else it holds is a divergence.
`flush_decisions` hands the audit outbox what the DecisionLog lacks; `replicate_rewards`
publishes (and claims) recorded reward epochs the chain lacks.

A swap the chain refuses (a revert: an expired deadline, retried once by the executor with a
fresh one, or any other reason) is not fatal and changes no record: the bar is recorded as
`failed` on that chain with the reason (`service_executions`), replication stops there, and
the bar is tried again with the next decided bar or, failing that, after a backoff (30 s
doubling to an hour), never in a loop. Its decision stands, so the chain still owes exactly
that swap: the pool is Agora's own and moves only with the records, so a late swap pays what
the mirror computed, to the wei, and the bars after it follow in order.

Chain genesis. Before acting on a chain for the first time the service records the balances
it finds there; it then mints the operator a float of both market tokens (so arbitrage never
mints again) and funds the trader with the starting portfolio. Each step is recognised on the
chain afterwards by those balances, so it too happens exactly once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from web3 import Web3
from web3.exceptions import Web3Exception

from agent.chain.backends import ChainBackend
from agent.chain.deploy import Deployment, chain_key
from agent.chain.executor import OPERATOR_FLOAT
from agent.config import Settings
from agent.dex.amm import PoolState, SwapResult, Token
from agent.errors import ChainError, TransactionReverted
from agent.market.schema import format_time_ms, timeframe_ms
from agent.service import ledger
from agent.service.decision import BarOutcome
from agent.store import Store

PREFUND_BASE, PREFUND_QUOTE = OPERATOR_FLOAT
"""Base and quote units minted to the operator once, for arbitrage (`OPERATOR_FLOAT`)."""
Balances = tuple[int, int]
FAILED_RETRY_S = 30.0
"""Backoff before a failed bar is tried again without a newer bar (doubled per attempt)."""
FAILED_RETRY_MAX_S = 3600.0


class ChainDiverged(ChainError):
    """The chain holds a state the records do not explain: replicating further is refused."""


@dataclass(frozen=True)
class Snapshot:
    """What the replica compares: pool reserves and the (base, quote) balances that matter."""

    pool: Balances
    operator: Balances
    trader: Balances


@dataclass(frozen=True)
class BarPlan:
    """One decided bar as the chain must replay it (from the tick's outcome)."""

    bar_time_ms: int
    arbitrage: SwapResult | None
    trade: SwapResult | None
    pool_before: Balances
    pool_coupled: Balances
    pool_after: Balances
    trader_after: Balances
    """The trader's mirror balances after the bar, gas added back (gas is paid in ETH)."""
    operator_flow: Balances
    """The operator's cumulative arbitrage flow up to and including this bar."""

    @classmethod
    def from_outcome(cls, bar_time_ms: int, outcome: BarOutcome) -> BarPlan:
        """Rebuild the plan from a tick's outcome (`agent.service.decision.decide_outcome`)."""
        coupled, after = PoolState(*outcome.pool_coupled), PoolState(*outcome.pool_after)
        arb = outcome.arbitrage
        arbitrage = None
        if arb is not None:
            arbitrage = SwapResult(arb.amount_in, arb.amount_out, 0, coupled, arb.token_in)
        trade = outcome.trade
        swap = None
        if trade.side != "none":
            token_in: Token = "quote" if trade.side == "buy" else "base"
            swap = SwapResult(trade.amount_in, trade.amount_out, 0, after, token_in)
        base, quote = outcome.balances
        return cls(
            bar_time_ms=bar_time_ms,
            arbitrage=arbitrage,
            trade=swap,
            pool_before=outcome.pool_before[:2],
            pool_coupled=outcome.pool_coupled[:2],
            pool_after=outcome.pool_after[:2],
            trader_after=(base, quote + outcome.gas_total),
            operator_flow=outcome.arbitrage_flow,
        )


def _add(a: Balances, b: Balances) -> Balances:
    return a[0] + b[0], a[1] + b[1]


class ChainReplica:
    """One chain kept equal to the records of one store.

    Args:
        backend: the chain.
        deployment: Agora's contracts on it (`deploy_all`).
        store: the service's database (shared connection).
        settings: the configuration.
        market: the series the service decides on (the ticks' market).
        initial_quote: the starting portfolio, in quote units, funded to the trader.
        genesis_pool: the pool's reserves before the first decided bar (the fresh deployment).
        event: the structured log (`event(name, **fields)`).
        clock: the wall clock, Unix seconds: swap deadlines and a stale dev chain's catch-up.
    """

    def __init__(
        self,
        backend: ChainBackend,
        deployment: Deployment,
        store: Store,
        settings: Settings,
        *,
        market: str,
        initial_quote: int,
        genesis_pool: Balances,
        event: Callable[..., None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        from agent.audit.outbox import DecisionOutbox
        from agent.chain.executor import OnChainExecutor

        self.backend = backend
        self.deployment = deployment
        self.store = store
        self.settings = settings
        self.market = market
        self.initial_quote = initial_quote
        self.genesis_pool = genesis_pool
        self.event = event
        self.key = chain_key(backend)
        accounts = backend.accounts
        self.operator = backend.operator
        self.trader = Web3.to_checksum_address(accounts[1]) if len(accounts) > 1 else self.operator
        self.shared_account = self.trader == self.operator
        self.executor = OnChainExecutor(
            backend,
            deployment.pool,
            deployment.market_base,
            deployment.market_quote,
            self.trader,
            deadline_s=settings.chain.deadline_s,
            clock=clock,
        )
        self.timeframe_ms = timeframe_ms(market.rsplit(":", 1)[-1])
        self.outbox = DecisionOutbox(
            store,
            backend,
            deployment.decision_log,
            batch_size=settings.service.decision_batch_size,
            max_attempts=1,
            backoff_s=0.5,
            max_backoff_s=10.0,
            wall_clock=clock,
        )
        self._tokens = {
            name: deployment.contract(backend.w3, name) for name in ("market_base", "market_quote")
        }
        self._genesis: dict[str, Any] | None = None
        self._funded = False
        self._synced_ms: int | None = None
        self._verified = False
        """Whether the chain is known to be at `_synced_ms` (checked, or synced by this object)."""
        self._failed: dict[str, Any] | None = None
        """The bar whose execution failed and is owed to the chain (`ledger.failed_execution`)."""
        self._retry_after_bar: int | None = None
        """A failed bar is tried again once a bar newer than this one is decided..."""
        self._retry_at = 0.0
        """... or once the monotonic clock passes this (the backoff)."""
        self.recheck_rewards = False
        """Whether published epochs must be checked on the chain (it may have lost some)."""

    # --- reading ----------------------------------------------------------------------------
    def balances(self, account: str) -> Balances:
        """Return an account's (base, quote) market-token balances."""
        return self.executor.balances(account)

    def snapshot(self) -> Snapshot:
        """Read the pool reserves and the balances the replica compares."""
        reserves = self.executor.reserves()
        operator = self.balances(self.operator)
        trader = operator if self.shared_account else self.balances(self.trader)
        return Snapshot((reserves.base, reserves.quote), operator, trader)

    def _expected(self, pool: Balances, trader: Balances | None, flow: Balances) -> Snapshot:
        """Return the snapshot the records imply, `trader` None before the trader is funded."""
        genesis = self._require_genesis()
        operator0 = tuple(genesis["operator"])
        trader0 = tuple(genesis["trader"])
        operator = _add((operator0[0], operator0[1]), (PREFUND_BASE, PREFUND_QUOTE))
        operator = _add(operator, flow)
        if trader is None:
            trader_now: Balances = (trader0[0], trader0[1])
        else:
            trader_now = _add((trader0[0], trader0[1]), trader)
        if self.shared_account:
            together = _add(operator, _add(trader_now, (-trader0[0], -trader0[1])))
            return Snapshot(pool, together, together)
        return Snapshot(pool, operator, trader_now)

    def _require_genesis(self) -> dict[str, Any]:
        if self._genesis is None:
            raise ChainError("the chain's genesis is not recorded yet")
        return self._genesis

    # --- genesis ----------------------------------------------------------------------------
    def ensure_genesis(self) -> None:
        """Record the chain's genesis and fund the operator and trader (each step once)."""
        found = ledger.chain_genesis(self.store, self.key)
        if found is None:
            reserves = self.executor.reserves()
            if (reserves.base, reserves.quote) != self.genesis_pool:
                raise ChainDiverged(
                    f"the pool {self.deployment.pool} on {self.key} holds (base {reserves.base}, "
                    f"quote {reserves.quote}), not the fresh pool the service's records start "
                    f"from {self.genesis_pool}: it was traded by something else; give the "
                    "service its own chain (or a fresh data directory)"
                )
            genesis = {
                "operator": list(self.balances(self.operator)),
                "trader": list(self.balances(self.trader)),
                "trader_address": self.trader,
                "operator_address": self.operator,
            }
            ledger.put_chain_genesis(self.store, self.key, genesis)
            found = ledger.chain_genesis(self.store, self.key)
            assert found is not None
        self._genesis, self._synced_ms = found
        self._load_failed()
        if self._synced_ms is not None:
            self._funded = True
            return
        reserves = self.executor.reserves()
        if (reserves.base, reserves.quote) != self.genesis_pool:
            # The first bar is under way (its record was lost in a crash): funding comes before
            # any bar, so it is done; `sync` works out where the bar stands.
            self._funded, self._verified = True, False
            return
        minted = []
        operator0 = tuple(self._genesis["operator"])
        for index, (name, amount) in enumerate(
            (("market_base", PREFUND_BASE), ("market_quote", PREFUND_QUOTE))
        ):
            held = self.balances(self.operator)[index]
            if held == operator0[index]:
                self._mint(name, self.operator, amount)
                minted.append(name)
            elif held != operator0[index] + amount and not self.shared_account:
                raise ChainDiverged(
                    f"the operator holds {held} units of {name} on {self.key}; the records "
                    f"expect {operator0[index]} or {operator0[index] + amount}"
                )
        start = self._expected(self.genesis_pool, None, (0, 0))
        funded = self._expected(self.genesis_pool, (0, self.initial_quote), (0, 0))
        now = self.snapshot()
        if now == start:
            self._mint("market_quote", self.trader, self.initial_quote)
            minted.append("trader")
        elif now != funded:
            raise ChainDiverged(
                f"the chain {self.key} does not hold what the service's genesis implies "
                f"(found {now}, expected {start} or {funded})"
            )
        self._verified = self._funded = True
        if minted:
            self.event(
                "chain_genesis",
                chain=self.key,
                trader=self.trader,
                operator=self.operator,
                minted=minted,
            )

    def _mint(self, token: str, account: str, amount: int) -> None:
        self.backend.transact(self._tokens[token].functions.mint(account, amount))

    # --- trades -----------------------------------------------------------------------------
    def _states(self, plan: BarPlan, previous: BarPlan | None) -> tuple[Snapshot, ...]:
        """Return what the chain holds before a bar, after its arbitrage and after its swap."""
        if previous is None:
            trader, flow = (0, self.initial_quote), (0, 0)
        else:
            trader, flow = previous.trader_after, previous.operator_flow
        return (
            self._expected(plan.pool_before, trader, flow),
            self._expected(plan.pool_coupled, trader, plan.operator_flow),
            self._expected(plan.pool_after, plan.trader_after, plan.operator_flow),
        )

    def sync(self, *, limit: int | None = None, stop: Callable[[], bool] | None = None) -> int:
        """Replicate the decided bars the chain lacks, oldest first; return how many.

        Raises:
            ChainError: the node failed (the rest waits for the next call).
            ChainDiverged: the chain holds a state the records do not explain.
        """
        try:
            if not self._funded:
                self.ensure_genesis()
            if not self._verified and self._synced_ms is not None:
                self._locate()
                if not self._funded:
                    self.ensure_genesis()
            return self._sync(limit, stop)
        except ChainError:
            self._verified = False
            raise
        except (OSError, Web3Exception, ValueError) as e:
            self._verified = False
            raise ChainError(f"replicating on {self.key} failed: {e}") from e

    def _sync(self, limit: int | None, stop: Callable[[], bool] | None) -> int:
        if not self._retry_due():
            return 0
        ticks = ledger.decisions_after(self.store, self.market, self._synced_ms, limit)
        if not ticks:
            return 0
        previous = None if self._synced_ms is None else self._plan_at(self._synced_ms)
        done = 0
        for tick in ticks:
            if stop is not None and stop():
                break
            assert tick.outcome is not None
            plan = BarPlan.from_outcome(tick.bar_time_ms, tick.outcome)
            if not self._replicate(plan, previous):
                break
            previous = plan
            done += 1
        return done

    def _retry_due(self) -> bool:
        """Whether a failed bar may be tried again: a newer bar was decided, or backoff passed."""
        if self._failed is None or self._retry_after_bar is None:
            return True
        newest = ledger.last_decision(self.store, self.market)
        newer = newest is not None and newest.bar_time_ms > self._retry_after_bar
        return newer or time.monotonic() >= self._retry_at

    def _locate(self, page: int = 256) -> None:
        """Find the recorded bar the chain stands at when it is behind the records; resume there.

        The chain matches the state after a bar (that bar is done), or after its arbitrage or
        before it (the bar before it is done): replication resumes after that bar. A chain at
        the state before the trader was funded resumes from genesis. No match: left as it is,
        for `_replicate` to report the divergence.
        """
        assert self._synced_ms is not None
        now = self.snapshot()
        synced = self._synced_ms
        newer: list[Any] = ledger.decisions_until(self.store, self.market, synced, page + 1)
        following = ledger.decisions_after(self.store, self.market, synced, 1)
        if newer and following and newer[0].outcome and following[0].outcome:
            last = BarPlan.from_outcome(newer[0].bar_time_ms, newer[0].outcome)
            after_it = BarPlan.from_outcome(following[0].bar_time_ms, following[0].outcome)
            if now in self._states(after_it, last):
                return  # at, or part-way into, the next bar: `_replicate` takes it from there
        target: int | None = synced
        found = verified = False
        while newer and not found:
            plans = [BarPlan.from_outcome(t.bar_time_ms, t.outcome) for t in newer if t.outcome]
            older = plans[1:] if len(plans) > page else [*plans[1:], None]
            for plan, previous in zip(plans[:page], older, strict=False):
                before, coupled, after = self._states(plan, previous)
                if now == after:
                    target, verified, found = plan.bar_time_ms, True, True
                elif now in (coupled, before):
                    target = None if previous is None else previous.bar_time_ms
                    found = True
                if found:
                    break
            if len(plans) <= page:
                break
            oldest = plans[page].bar_time_ms
            newer = ledger.decisions_until(self.store, self.market, oldest, page + 1)
        genesis = self._require_genesis()
        untouched = Snapshot(
            self.genesis_pool, tuple(genesis["operator"]), tuple(genesis["trader"])
        )
        if not found and now in (untouched, self._expected(self.genesis_pool, None, (0, 0))):
            target, found, self._funded = None, True, False  # the funding itself was lost
        if not found:
            return
        self._verified = verified
        if target != synced:
            ledger.rewind_chain(self.store, self.key, target)
            self._synced_ms = target
            self.recheck_rewards = True
            self.event(
                "chain_rewound",
                chain=self.key,
                synced_bar=synced,
                resumes_after_bar=target,
                bars=ledger.count_decisions_after(self.store, self.market, target)
                - ledger.count_decisions_after(self.store, self.market, synced),
                note="the node restarted from a state written before its last transactions; "
                "they are replayed from the records",
            )

    def _replicate(self, plan: BarPlan, previous: BarPlan | None) -> bool:
        """Bring the chain through one bar; False if a transaction reverted (bar failed)."""
        before, coupled, after = self._states(plan, previous)
        do_arbitrage = do_swap = True
        if not self._verified:
            now = self.snapshot()
            if now == after:
                do_arbitrage = do_swap = False
            elif now == coupled:
                do_arbitrage = False
            elif now != before:
                raise ChainDiverged(
                    f"the chain {self.key} diverged from the records at bar {plan.bar_time_ms}: "
                    f"it holds {now}; the records imply {before} before the bar, {coupled} after "
                    f"its arbitrage and {after} after its swap"
                )
        arbitrage_tx = swap_tx = None
        gas = 0
        self._verified = False  # until the bar is recorded: a failure here needs a fresh look
        try:
            if do_arbitrage and plan.arbitrage is not None:
                receipt = self._execute(plan.arbitrage, self.operator, plan)
                arbitrage_tx, gas = receipt.tx_hash, gas + receipt.gas_used
            if do_swap and plan.trade is not None:
                receipt = self._execute(plan.trade, self.trader, plan)
                swap_tx, gas = receipt.tx_hash, gas + receipt.gas_used
        except TransactionReverted as error:
            self._bar_failed(plan, error, arbitrage_tx, gas)
            return False
        ledger.record_execution(
            self.store,
            self.key,
            plan.bar_time_ms,
            arbitrage_tx=arbitrage_tx,
            swap_tx=swap_tx,
            gas_used=gas,
        )
        self._synced_ms = plan.bar_time_ms
        self._verified = True
        if self._failed is not None and self._failed["bar_time_ms"] == plan.bar_time_ms:
            done = ledger.execution(self.store, self.key, plan.bar_time_ms) or {}
            self.event(
                "bar_execution_recovered",
                chain=self.key,
                bar=format_time_ms(plan.bar_time_ms),
                bar_time_ms=plan.bar_time_ms,
                attempts=done.get("attempts"),
            )
            self._failed = self._retry_after_bar = None
        return True

    def _bar_failed(
        self, plan: BarPlan, error: TransactionReverted, arbitrage_tx: str | None, gas: int
    ) -> None:
        """Record a bar whose transaction reverted; it is tried again later (not in a loop)."""
        attempts = ledger.record_failed_execution(
            self.store,
            self.key,
            plan.bar_time_ms,
            reason=str(error),
            arbitrage_tx=arbitrage_tx,
            gas_used=gas,
        )
        newest = ledger.last_decision(self.store, self.market)
        backoff = min(FAILED_RETRY_S * 2 ** (attempts - 1), FAILED_RETRY_MAX_S)
        self._failed = {"bar_time_ms": plan.bar_time_ms, "attempts": attempts, "error": str(error)}
        self._retry_after_bar = plan.bar_time_ms if newest is None else newest.bar_time_ms
        self._retry_at = time.monotonic() + backoff
        self.event(
            "bar_execution_failed",
            level=logging.WARNING,
            chain=self.key,
            bar=format_time_ms(plan.bar_time_ms),
            bar_time_ms=plan.bar_time_ms,
            reason=error.reason,
            error=str(error)[:500],
            attempts=attempts,
            retry=f"with the next decided bar, or in {backoff:.0f} s",
        )

    def _load_failed(self) -> None:
        """Take up a bar that failed in an earlier run (it is tried again at the first sync)."""
        failed = ledger.failed_execution(self.store, self.key)
        if failed is not None and (
            self._synced_ms is None or failed["bar_time_ms"] > self._synced_ms
        ):
            self._failed = failed
            self._retry_after_bar = None

    @property
    def failed_bar(self) -> dict[str, Any] | None:
        """The bar whose execution failed and is still owed to this chain (bar, attempts, error)."""
        if self._failed is None:
            return None
        bar_ms = int(self._failed["bar_time_ms"])
        return {
            "bar": format_time_ms(bar_ms),
            "bar_time_ms": bar_ms,
            "attempts": self._failed["attempts"],
            "error": self._failed["error"],
        }

    def _execute(self, swap: SwapResult, sender: str, plan: BarPlan) -> Any:
        not_before_s = (plan.bar_time_ms + self.timeframe_ms) / 1000
        try:
            receipt = self.executor.execute(swap, sender=sender, not_before_s=not_before_s)
        except ChainError as e:
            if str(e).startswith("parity broken"):
                raise ChainDiverged(f"bar {plan.bar_time_ms} on {self.key}: {e}") from e
            raise
        assert receipt is not None
        return receipt

    def verify(self) -> Snapshot:
        """Check that the chain holds exactly what the records imply after the last bar it
        replicated (decisions made since, by another thread, are not its yet); return the
        snapshot.

        With a failed bar owed to the chain, that is the state before the bar or after its
        arbitrage (replication stopped there).

        Raises:
            ChainDiverged: it does not.
        """
        if self._failed is not None:
            return self._verify_before_failed(int(self._failed["bar_time_ms"]))
        last = None
        if self._synced_ms is not None:
            found = ledger.decisions_until(self.store, self.market, self._synced_ms, 1)
            last = found[0] if found else None
        if last is None or last.outcome is None:
            expected = self._expected(self.genesis_pool, (0, self.initial_quote), (0, 0))
        else:
            plan = BarPlan.from_outcome(last.bar_time_ms, last.outcome)
            expected = self._expected(plan.pool_after, plan.trader_after, plan.operator_flow)
        now = self.snapshot()
        if now != expected:
            raise ChainDiverged(f"the chain {self.key} holds {now}, the records imply {expected}")
        return now

    def _verify_before_failed(self, bar_ms: int) -> Snapshot:
        plan = self._plan_at(bar_ms)
        previous = None if self._synced_ms is None else self._plan_at(self._synced_ms)
        if plan is None:
            raise ChainDiverged(f"bar {bar_ms} failed on {self.key} but has no recorded decision")
        before, coupled, _ = self._states(plan, previous)
        now = self.snapshot()
        if now not in (before, coupled):
            raise ChainDiverged(
                f"the chain {self.key} holds {now}; with bar {bar_ms} failed, the records imply "
                f"{before} before it or {coupled} after its arbitrage"
            )
        return now

    def _plan_at(self, bar_ms: int) -> BarPlan | None:
        """Return the plan of the decided bar opening at `bar_ms`, or None."""
        rows = ledger.decisions_after(self.store, self.market, bar_ms - 1, 1)
        if not rows or rows[0].bar_time_ms != bar_ms or rows[0].outcome is None:
            return None
        return BarPlan.from_outcome(bar_ms, rows[0].outcome)

    @property
    def synced_ms(self) -> int | None:
        """Open time of the last bar replicated on this chain."""
        return self._synced_ms

    # --- decisions and rewards ------------------------------------------------------------
    def flush_decisions(self, *, force: bool = False) -> Any:
        """Send the decisions the DecisionLog lacks once a batch is waiting.

        With `force` the log is always asked what it holds (a fresh chain's log is empty even
        though the store marks every decision confirmed on the chain before).
        """
        from agent.audit.outbox import unconfirmed_count

        if not force and unconfirmed_count(self.store) < self.outbox.batch_size:
            return None
        return self.outbox.try_flush()

    def replicate_rewards(self) -> int:
        """Publish recorded epochs this chain lacks, and claim what was claimed; return how many.

        After the chain may have lost recent state (`recheck_rewards`: it was rewound, or its
        node restarted), epochs recorded as published on it are checked on the chain too.

        Raises:
            ChainError: the node failed, or the chain holds another root for an epoch.
        """
        from agent.rewards.epochs import claim_epoch, publish_epoch
        from agent.rewards.ledger import PUBLISHED, list_epochs, read_epoch

        recheck = self.recheck_rewards
        touched = 0
        for epoch in list_epochs(self.store):
            record = read_epoch(self.store, epoch)
            if record is None or record.root is None:
                continue
            if record.status != PUBLISHED or record.chain_key != self.key:
                publish_epoch(self.store, self.backend, self.deployment, epoch)
                touched += 1
            elif recheck:
                _, sent = publish_epoch(self.store, self.backend, self.deployment, epoch)
                touched += sent is not None
            claimed = sorted(
                {a.account for a in record.allocations if a.claimed and a.claimed_chain_key}
                - (
                    set()
                    if recheck
                    else {a.account for a in record.allocations if a.claimed_chain_key == self.key}
                )
            )
            if claimed:
                results = claim_epoch(
                    self.store, self.backend, self.deployment, epoch, accounts=claimed
                )
                touched += any(r.tx is not None for r in results) or not recheck
        self.recheck_rewards = False
        return touched


# --- connecting ---------------------------------------------------------------------------------
def connect_chain(settings: Settings, store: Store, event: Callable[..., None]) -> ChainBackend:
    """Open the chain `service.chain` names, as the data directory's owner of it.

    Goes through the one place chains are opened (`agent.chain.backends.connect`, with
    `serve`): the embedded chain file is opened and served on loopback for the commands run
    beside the service; an anvil node is started from its state file and recorded (or adopted,
    when a killed run left it running). The embedded chain is created only on a fresh data
    directory: a store with records whose chain file is missing, corrupt or replaced is
    refused (`agora chain recover` rebuilds it), never silently replayed.

    Raises:
        ChainLost: the embedded chain file does not hold the store's records.
        ChainLocked: another process holds the chain and does not serve it.
        ChainError: the node cannot be started or reached.
        ConfigError: the rpc backend lacks its URL or key.
    """
    from agent.chain.backends import connect
    from agent.chain.custody import chain_history, require_chain_for_store

    chain = settings.chain.model_copy(update={"backend": settings.service.chain})
    create = chain.backend != "embedded" or chain_history(store).empty
    backend = connect(chain, Path(settings.data.dir), create_chain=create, serve=True, event=event)
    try:
        require_chain_for_store(backend, store)
    except BaseException:
        backend.close()
        raise
    return backend
