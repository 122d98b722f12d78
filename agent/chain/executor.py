"""On-chain execution: the trades the off-chain mirror decides, sent as real pool transactions.

The service and `--onchain` backtests trade through `OnChainExecutor`; training and fast
backtests use `agent.dex.amm` / `agent.dex.pool` instead. `execute` sends the trade the mirror
computed and checks that the chain agrees with it to the wei (amount out and reserves after),
so the two paths cannot drift apart unnoticed.

Deadlines (`agent.chain.clock`): a swap expires `deadline_s` after the latest of its decision's
time, the wall clock and the chain's latest block (stale on an idle dev chain, ahead of the
clock on one that mines fast). Before each swap a stale dev-chain head is brought up to the
clock. A swap the pool refuses as expired is sent once more with a fresh deadline (from the
head as it is then); a second refusal is raised.

Errors (all from the chain boundary):

    ChainError                  node failure, a receipt that does not match the request, or
    │                           "parity broken": the chain disagrees with the mirror
    └── TransactionReverted     the swap (or a view) reverted; `reason` is e.g.
                                "Pool: INSUFFICIENT_OUTPUT_AMOUNT"
    AmmError (a ValueError)     a token other than 'base'/'quote', or a bad market price
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from eth_tester.exceptions import TransactionFailed
from eth_typing import ChecksumAddress
from web3 import Web3
from web3.exceptions import ContractLogicError, Web3Exception
from web3.logs import DISCARD

from agent.chain.backends import ChainBackend, revert_reason
from agent.chain.clock import catch_up_head, swap_deadline
from agent.chain.contracts import load_artifact
from agent.dex import amm
from agent.dex.amm import PoolState, SwapResult, Token
from agent.dex.pool import TradeResult
from agent.errors import ChainError, TransactionReverted

MAX_UINT256 = 2**256 - 1
SWAP_GAS_LIMIT = 200_000
"""Gas limit sent with every swap (a swap uses ~75k-110k). Sending a fixed limit skips
`eth_estimateGas`, which costs as much as the swap itself (several times more on py-evm)."""

OPERATOR_FLOAT = (10**36, 10**30)
"""(base, quote) units minted once to an operator that also trades (one key), so its
arbitrage never draws on the portfolio: 10**18 base tokens (18 decimals), 10**24 USD (6)."""

DEFAULT_DEADLINE_S = 300
"""Seconds a swap stays valid by default (`chain.deadline_s`)."""
EXPIRED = "Pool: EXPIRED"
"""The pool's revert reason for a swap mined after its deadline."""

_UNLIMITED_ALLOWANCE = 2**255
"""An allowance at or above this is treated as unlimited (OpenZeppelin does not spend a max
allowance, other tokens may)."""


@dataclass(frozen=True, slots=True)
class SwapReceipt:
    """An exact-input swap mined on-chain, as read from its receipt.

    Attributes:
        token_in: the token paid in.
        amount_in: paid into the pool, in `token_in` units (from the Swap event).
        amount_out: received from the pool, in units of the other token (from the Swap event).
        gas_used: gas the transaction used.
        tx_hash: the transaction hash, 0x-prefixed.
        block_number: the block the swap was mined in.
        reserves_after: the pool right after the swap (Sync event; LP supply at that block).
    """

    token_in: Token
    amount_in: int
    amount_out: int
    gas_used: int
    tx_hash: str
    block_number: int
    reserves_after: PoolState


class OnChainExecutor:
    """Trade against a deployed `ConstantProductPool` with real transactions.

    The executor knows which of the pool's token0/token1 is the base asset, grants the pool
    an unlimited allowance the first time an account pays in a token (once per account and
    token, remembered), and reads every result from the transaction's events.

    Args:
        backend: the chain.
        pool_address: the deployed pool.
        base_token: address of the base asset (one of the pool's two tokens).
        quote_token: address of the quote asset (the other one).
        trader: the account that trades; defaults to the backend's operator.
        gas_limit: gas limit sent with each swap; None estimates it (slower, but a reverting
            swap then fails before it is sent, which saves its gas on a real chain).
        deadline_s: seconds a swap stays valid after the latest of its decision's time, the
            clock and the chain's latest block (`chain.deadline_s`).
        clock: the wall clock, Unix seconds (tests warp it).

    Raises:
        ChainError: if the pool does not trade exactly these two tokens, or the node fails.
    """

    def __init__(
        self,
        backend: ChainBackend,
        pool_address: str,
        base_token: str,
        quote_token: str,
        trader: str | None = None,
        *,
        gas_limit: int | None = SWAP_GAS_LIMIT,
        deadline_s: int = DEFAULT_DEADLINE_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.backend = backend
        self.trader = Web3.to_checksum_address(trader or backend.operator)
        self.gas_limit = gas_limit
        self.deadline_s = deadline_s
        self.clock = clock
        w3 = backend.w3
        pool_abi = load_artifact("ConstantProductPool").abi
        token_abi = load_artifact("MarketToken").abi
        self.pool_address = Web3.to_checksum_address(pool_address)
        self._pool = w3.eth.contract(address=self.pool_address, abi=pool_abi)
        self.token_addresses: dict[Token, ChecksumAddress] = {
            "base": Web3.to_checksum_address(base_token),
            "quote": Web3.to_checksum_address(quote_token),
        }
        self._tokens = {
            key: w3.eth.contract(address=address, abi=token_abi)
            for key, address in self.token_addresses.items()
        }
        token0 = self._view(self._pool.functions.token0())
        token1 = self._view(self._pool.functions.token1())
        pair = (self.token_addresses["base"], self.token_addresses["quote"])
        if (token0, token1) not in (pair, pair[::-1]):
            raise ChainError(
                f"pool {self.pool_address} trades ({token0}, {token1}), expected base "
                f"{pair[0]} and quote {pair[1]}"
            )
        self.base_is_token0: bool = token0 == pair[0]
        self.fee_bps: int = self._view(self._pool.functions.feeBps())
        self.base_decimals: int = self._view(self._tokens["base"].functions.decimals())
        self.quote_decimals: int = self._view(self._tokens["quote"].functions.decimals())
        self._approved: set[tuple[str, Token]] = set()

    # ------------------------------------------------------------------ views

    def reserves(self, block_identifier: int | str = "latest") -> PoolState:
        """Return the pool's reserves and LP supply, as the mirror's state type."""
        reserve0, reserve1, _ = self._view(
            self._pool.functions.getReserves(), block_identifier=block_identifier
        )
        total_supply = self._view(
            self._pool.functions.totalSupply(), block_identifier=block_identifier
        )
        return self._state(reserve0, reserve1, total_supply)

    def quote(self, token_in: Token, amount_in: int) -> int:
        """Return what `swap_exact_in(token_in, amount_in, ...)` would pay out now.

        Raises:
            TransactionReverted: the pool refuses the input (reason as the swap would give).
        """
        call = self._pool.functions.quoteExactIn(self._address(token_in), amount_in)
        return int(self._view(call))

    def quote_exact_out(self, token_out: Token, amount_out: int) -> int:
        """Return the input of the other token needed to receive exactly `amount_out`.

        Raises:
            TransactionReverted: the pool refuses the output (e.g. it would drain a reserve).
        """
        call = self._pool.functions.quoteExactOut(self._address(token_out), amount_out)
        return int(self._view(call))

    def balances(self, owner: str | None = None) -> tuple[int, int]:
        """Return `(base, quote)` balances of `owner` (default: the trader), in token units."""
        account = Web3.to_checksum_address(owner or self.trader)
        return (
            int(self._view(self._tokens["base"].functions.balanceOf(account))),
            int(self._view(self._tokens["quote"].functions.balanceOf(account))),
        )

    # ------------------------------------------------------------------ swaps

    def swap_exact_in(
        self,
        token_in: Token,
        amount_in: int,
        min_amount_out: int,
        deadline_s: int | None = None,
        *,
        sender: str | None = None,
        not_before_s: float | None = None,
    ) -> SwapReceipt:
        """Swap exactly `amount_in` of `token_in` for the other token, paid to the sender.

        A stale dev-chain head is first brought up to the clock (`clock.catch_up_head`). A
        swap refused as expired is sent once more with a fresh deadline.

        Args:
            token_in: 'base' or 'quote'.
            amount_in: input in `token_in` units.
            min_amount_out: the swap reverts if it would pay out less.
            deadline_s: seconds the swap stays valid after the latest of `not_before_s`, the
                clock and the chain's latest block (default: the executor's); negative gives an
                expired one.
            sender: the account that pays and receives; defaults to the trader.
            not_before_s: the decision's own time (the bar's close), Unix seconds.

        Returns:
            What the pool paid, the gas and the reserves after.

        Raises:
            TransactionReverted: the swap reverted; the message carries the reason, e.g.
                "swapExactIn reverted: Pool: INSUFFICIENT_OUTPUT_AMOUNT".
            ChainError: the node failed, or the receipt does not show this swap.
            AmmError: `token_in` is neither 'base' nor 'quote'.
        """
        token_address = self._address(token_in)
        account = Web3.to_checksum_address(sender or self.trader)
        window = self.deadline_s if deadline_s is None else deadline_s
        self._ensure_allowance(account, token_in)
        for attempt in (1, 2):
            now = self.clock()
            head = catch_up_head(self.backend, now)
            deadline = swap_deadline(window, now_s=now, not_before_s=not_before_s, head_s=head)
            call = self._pool.functions.swapExactIn(
                token_address, amount_in, min_amount_out, deadline, account
            )
            try:
                receipt = self._send(call, account, self.gas_limit)
            except TransactionReverted as error:
                if error.reason == "Pool: INSUFFICIENT_ALLOWANCE":  # revoked since: check again
                    self._approved.discard((account, token_in))
                if error.reason != EXPIRED:
                    raise
                if attempt == 2:
                    raise TransactionReverted(
                        f"swapExactIn reverted: {EXPIRED}, twice: the second swap's deadline "
                        f"was {deadline}, {window} s (chain.deadline_s) after the latest of "
                        f"this host's clock ({int(now)}), the decision's time and the chain's "
                        f"latest block ({head}), and the node mined it later: does the node's "
                        "clock jump ahead?",
                        reason=EXPIRED,
                    ) from error
                continue
            return self._read_swap(receipt, account, token_in, amount_in, min_amount_out)
        raise AssertionError("unreachable")  # pragma: no cover

    def execute(
        self,
        trade: SwapResult | TradeResult,
        *,
        expected_reserves_after: PoolState | None = None,
        sender: str | None = None,
        not_before_s: float | None = None,
    ) -> SwapReceipt | None:
        """Send the swap the off-chain mirror computed and check the chain agrees to the wei.

        The mirror's `amount_out` is also the swap's `min_amount_out`, so a chain that would
        pay less reverts instead of trading worse than decided.

        Args:
            trade: an `amm.SwapResult` or a `pool.TradeResult` ('none' sends nothing).
            expected_reserves_after: the mirror's pool after the trade (base and quote are
                compared); defaults to `trade.new_state` for a `SwapResult`.
            sender: the account that trades; defaults to the trader.
            not_before_s: the decision's own time (the bar's close), Unix seconds: the
                deadline is counted from it when it is later than the clock.

        Returns:
            The receipt, or None for a 'none' trade.

        Raises:
            ChainError: "parity broken" if the chain pays a different amount or ends with
                different reserves than the mirror (the swap, if mined, stays mined).
            TransactionReverted: the swap reverted for another reason (balance, a deadline
                passed twice).
        """
        expected_after: PoolState | None
        if isinstance(trade, SwapResult):
            token_in: Token = trade.token_in
            expected_after = (
                trade.new_state if expected_reserves_after is None else expected_reserves_after
            )
        elif trade.side == "none":
            return None
        else:
            token_in = "quote" if trade.side == "buy" else "base"
            expected_after = expected_reserves_after
        try:
            receipt = self.swap_exact_in(
                token_in,
                trade.amount_in,
                trade.amount_out,
                sender=sender,
                not_before_s=not_before_s,
            )
        except TransactionReverted as error:
            if error.reason != f"Pool: {amm.INSUFFICIENT_OUTPUT_AMOUNT}":
                raise
            raise ChainError(
                f"parity broken: the mirror expects {trade.amount_out} out for {trade.amount_in}"
                f" {token_in} in, the pool pays less (the swap reverted: {error.reason})"
            ) from error
        if receipt.amount_out != trade.amount_out:
            raise ChainError(
                f"parity broken: swap {receipt.tx_hash} paid {receipt.amount_out} out for "
                f"{trade.amount_in} {token_in} in, the mirror computed {trade.amount_out}"
            )
        after = receipt.reserves_after
        if expected_after is not None and (after.base, after.quote) != (
            expected_after.base,
            expected_after.quote,
        ):
            raise ChainError(
                f"parity broken: after swap {receipt.tx_hash} the pool holds (base "
                f"{after.base}, quote {after.quote}), the mirror expects (base "
                f"{expected_after.base}, quote {expected_after.quote})"
            )
        return receipt

    def arbitrage_to_price(
        self, price_quote_per_base: float | Fraction | Decimal
    ) -> SwapReceipt | None:
        """Move the pool to a market price, as `MarketCoupledPool.couple` does off-chain.

        The mirror's arbitrage swap (`amm.arbitrage_to_price`) is computed from the on-chain
        reserves and executed by the operator, which mints itself any input it lacks (it owns
        the simulated market's tokens).

        Returns:
            The arbitrage swap, or None if the pool already sits at the price.

        Raises:
            ChainError: "parity broken" as in `execute`, or a node failure.
            AmmError: the price is not a positive finite number.
        """
        swap = amm.arbitrage_to_price(
            self.reserves(),
            price_quote_per_base,
            self.fee_bps,
            base_decimals=self.base_decimals,
            quote_decimals=self.quote_decimals,
        )
        if swap is None:
            return None
        operator = self.backend.operator
        self._fund(operator, swap.token_in, swap.amount_in)
        return self.execute(swap, sender=operator)

    # ------------------------------------------------------------------ internals

    def _address(self, token: Token) -> ChecksumAddress:
        try:
            return self.token_addresses[token]
        except KeyError:
            raise amm.AmmError(f"token is {token!r}, expected 'base' or 'quote'") from None

    def _state(self, reserve0: int, reserve1: int, total_supply: int) -> PoolState:
        if self.base_is_token0:
            return PoolState(int(reserve0), int(reserve1), int(total_supply))
        return PoolState(int(reserve1), int(reserve0), int(total_supply))

    def _ensure_allowance(self, owner: str, token: Token) -> None:
        """Approve the pool for an unlimited amount the first time `owner` pays in `token`."""
        if (owner, token) in self._approved:
            return
        contract = self._tokens[token]
        allowance = self._view(contract.functions.allowance(owner, self.pool_address))
        if allowance < _UNLIMITED_ALLOWANCE:
            self._send(contract.functions.approve(self.pool_address, MAX_UINT256), owner, None)
        self._approved.add((owner, token))

    def _fund(self, owner: str, token: Token, amount: int) -> None:
        """Mint `owner` what it lacks of `amount` (the operator owns the market tokens)."""
        contract = self._tokens[token]
        balance = int(self._view(contract.functions.balanceOf(owner)))
        if balance < amount:
            self._send(contract.functions.mint(owner, amount - balance), owner, None)

    def _view(self, call: Any, block_identifier: int | str = "latest") -> Any:
        """Run a view call; wrap reverts and node failures at the chain boundary."""
        label = getattr(call, "fn_name", "call")
        try:
            return call.call(block_identifier=block_identifier)
        except (ContractLogicError, TransactionFailed) as e:
            reason = revert_reason(e)
            raise TransactionReverted(f"{label} reverted: {reason}", reason=reason) from e
        except (OSError, Web3Exception, ValueError) as e:
            raise ChainError(f"{label} failed on {self.backend.name}: {e}") from e

    def _send(self, call: Any, sender: str, gas: int | None) -> Any:
        """Send a transaction; recover the revert reason a fixed-gas transaction loses."""
        try:
            return self.backend.transact(call, sender=sender, gas=gas)
        except TransactionReverted as error:
            if error.reason is not None:
                raise
            reason = self._replay_reason(call, sender)
            raise TransactionReverted(
                f"{call.fn_name} reverted: {reason}", reason=reason
            ) from error

    def _replay_reason(self, call: Any, sender: str) -> str:
        """Re-run a reverted call as eth_call to learn why it reverted (the state is unchanged)."""
        try:
            call.call({"from": sender})
        except (ContractLogicError, TransactionFailed) as e:
            return revert_reason(e)
        except (OSError, Web3Exception, ValueError):
            return "no reason given"
        return (
            f"no reason given (the call succeeds when replayed: gas limit {self.gas_limit} "
            "too low?)"
        )

    def _read_swap(
        self, receipt: Any, sender: str, token_in: Token, amount_in: int, min_amount_out: int
    ) -> SwapReceipt:
        """Read the swap's amounts and the reserves after from its events, and cross-check."""
        tx_hash = Web3.to_hex(receipt["transactionHash"])
        swaps = [
            event
            for event in self._pool.events.Swap().process_receipt(receipt, errors=DISCARD)
            if event["address"] == self.pool_address
        ]
        syncs = [
            event
            for event in self._pool.events.Sync().process_receipt(receipt, errors=DISCARD)
            if event["address"] == self.pool_address
        ]
        if len(swaps) != 1 or not syncs:
            raise ChainError(
                f"swap {tx_hash}: expected one Swap and a Sync event from pool "
                f"{self.pool_address}, found {len(swaps)} and {len(syncs)}"
            )
        args = swaps[0]["args"]
        if (token_in == "base") == self.base_is_token0:  # paid in token0, paid out token1
            in_, other_in, out, other_out = (
                args["amount0In"],
                args["amount1In"],
                args["amount1Out"],
                args["amount0Out"],
            )
        else:
            in_, other_in, out, other_out = (
                args["amount1In"],
                args["amount0In"],
                args["amount0Out"],
                args["amount1Out"],
            )
        problems = []
        if in_ != amount_in or other_in != 0:
            problems.append(f"amounts in ({in_}, {other_in}), expected ({amount_in}, 0)")
        if other_out != 0 or out < max(min_amount_out, 1):
            problems.append(f"amounts out ({out}, {other_out}), expected (>= {min_amount_out}, 0)")
        if args["sender"] != sender or args["to"] != sender:
            problems.append(f"sender/to ({args['sender']}, {args['to']}), expected {sender}")
        if problems:
            raise ChainError(f"swap {tx_hash} does not match its request: {'; '.join(problems)}")
        block_number = int(receipt["blockNumber"])
        sync = syncs[-1]["args"]
        total_supply = self._view(self._pool.functions.totalSupply(), block_identifier=block_number)
        return SwapReceipt(
            token_in=token_in,
            amount_in=int(in_),
            amount_out=int(out),
            gas_used=int(receipt["gasUsed"]),
            tx_hash=tx_hash,
            block_number=block_number,
            reserves_after=self._state(sync["reserve0"], sync["reserve1"], total_supply),
        )
