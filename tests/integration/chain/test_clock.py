"""Swap deadlines against an idle chain: the head an hour stale, the clock warped, not waited.

anvil and the embedded chain mine only on a transaction, so after an idle hour their latest
block is an hour old. The executor counts a swap's deadline from the clock (never from that
block), brings such a dev chain's clock up to the present with one empty block, only reads an
rpc node, and sends a swap the pool refuses as expired once more with a fresh deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from web3.exceptions import ContractLogicError
from web3.types import RPCEndpoint

from agent.chain.anvil import AnvilBackend
from agent.chain.backends import ChainBackend, EmbeddedBackend, RpcBackend
from agent.chain.clock import head_timestamp
from agent.chain.executor import EXPIRED, OnChainExecutor
from agent.errors import TransactionReverted
from tests.integration.dex.conftest import DeployedPool, deploy_pool, fund

E6 = 10**6
E18 = 10**18
HOUR_S = 3600
ANVIL_KEY_0 = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
"""The well-known private key of anvil's first development account."""


class Clock:
    """The wall clock shifted by `offset_s`; counts its reads, calling `on_read[n]` at read n."""

    def __init__(self, offset_s: float = 0.0) -> None:
        self.offset_s = offset_s
        self.reads = 0
        self.on_read: dict[int, Callable[[], object]] = {}

    def __call__(self) -> float:
        self.reads += 1
        if self.reads in self.on_read:
            self.on_read[self.reads]()
        return time.time() + self.offset_s


@pytest.fixture(params=["embedded", "anvil"])
def dev_chain(request: pytest.FixtureRequest) -> Iterator[ChainBackend]:
    """A fresh chain that Agora mines itself: embedded or anvil."""
    with EmbeddedBackend() if request.param == "embedded" else AnvilBackend() as backend:
        yield backend


@pytest.fixture(params=["anvil", "rpc"])
def node_chain(request: pytest.FixtureRequest) -> Iterator[tuple[ChainBackend, AnvilBackend]]:
    """anvil, as itself or as a plain rpc node, and the node (whose clock the test moves).

    The embedded chain is not here: its next block is never later than its latest block + 1 s
    or the host's clock, so a deadline counted from the later of them cannot pass.
    """
    with AnvilBackend() as node:
        yield (node if request.param == "anvil" else RpcBackend(node.url, ANVIL_KEY_0)), node


def block_interval(node: AnvilBackend, seconds: int | None) -> None:
    """Make each of anvil's next blocks `seconds` later than the one before (None: undo)."""
    if seconds is None:
        call, params = "anvil_removeBlockTimestampInterval", []
    else:
        call, params = "anvil_setBlockTimestampInterval", [seconds]
    response = node.w3.provider.make_request(RPCEndpoint(call), params)
    assert "error" not in response, response


def market(backend: ChainBackend, clock: Clock, **options: int) -> OnChainExecutor:
    """A 1,000 base / 3M USD pool and an executor for a funded trader that has swapped once."""
    deployed: DeployedPool = deploy_pool(
        backend, reserve_base=1_000 * E18, reserve_quote=3_000_000 * E6
    )
    trader = backend.accounts[-1]
    fund(backend, deployed, trader, base=100 * E18, quote=1_000_000 * E6)
    executor = OnChainExecutor(
        backend,
        deployed.address,
        deployed.base.address,
        deployed.quote.address,
        trader,
        clock=clock,
        **options,
    )
    executor.swap_exact_in("quote", 1_000 * E6, 1)  # approvals out of the way
    clock.reads = 0
    return executor


def idle(backend: ChainBackend, clock: Clock, seconds: int) -> None:
    """Let `seconds` pass without a block: for the host's clock, and for anvil's own."""
    clock.offset_s += seconds
    if backend.name != "embedded":  # the embedded chain has no clock but the host's
        backend.w3.provider.make_request(RPCEndpoint("evm_increaseTime"), [seconds])


def test_a_head_an_hour_stale_is_brought_to_the_clock_before_the_swap(
    dev_chain: ChainBackend,
) -> None:
    chain = dev_chain
    clock = Clock()
    executor = market(chain, clock)
    head = head_timestamp(chain)
    idle(chain, clock, HOUR_S)
    if chain.name == "anvil":  # the old rule, the latest block's time + 300 s, has expired
        stale = executor._pool.functions.swapExactIn(
            executor.token_addresses["quote"], 1_000 * E6, 1, head + 300, executor.trader
        )
        with pytest.raises(ContractLogicError, match=EXPIRED):
            stale.call({"from": executor.trader}, block_identifier="pending")

    before = chain.w3.eth.block_number
    now = clock()
    receipt = executor.swap_exact_in("quote", 1_000 * E6, 1)

    w3 = chain.w3
    swap_block = w3.eth.get_block(receipt.block_number)
    assert swap_block["timestamp"] >= int(now)  # the swap bears the time it was sent
    warp = w3.eth.get_block(receipt.block_number - 1)
    assert warp["number"] > before and warp["transactions"] == []  # one empty block first
    assert warp["timestamp"] >= int(now) - 1
    assert clock.reads == 2  # one attempt (and the read above): nothing expired


def test_an_rpc_node_is_only_read_and_the_deadline_comes_from_the_clock() -> None:
    with AnvilBackend() as node:
        chain = RpcBackend(node.url, ANVIL_KEY_0)
        clock = Clock()
        executor = market(chain, clock)
        head = head_timestamp(chain)
        clock.offset_s += HOUR_S  # an hour later for this host; the node keeps its own time
        before = chain.w3.eth.block_number
        receipt = executor.swap_exact_in("quote", 1_000 * E6, 1)
        assert receipt.block_number == before + 1  # no block mined but the swap's
        assert chain.w3.eth.get_block(receipt.block_number)["timestamp"] < head + HOUR_S


def test_an_expired_swap_is_sent_once_more_with_a_fresh_deadline(
    node_chain: tuple[ChainBackend, AnvilBackend],
) -> None:
    chain, node = node_chain
    clock = Clock()
    executor = market(chain, clock, deadline_s=1)
    before = executor.reserves()
    block_interval(node, 600)  # the node's clock jumps ten minutes a block...
    clock.on_read[2] = lambda: block_interval(node, None)  # ... until the retry
    receipt = executor.swap_exact_in("quote", 10_000 * E6, 1)
    assert clock.reads == 2  # the first attempt expired, the second went through
    refused = chain.w3.eth.get_block(receipt.block_number - 1, full_transactions=True)
    (tx,) = refused["transactions"]
    assert chain.w3.eth.get_transaction_receipt(tx["hash"])["status"] == 0
    assert receipt.amount_in == 10_000 * E6
    assert executor.reserves().quote == before.quote + 10_000 * E6


def test_a_swap_that_expires_twice_is_raised_with_the_clocks(
    node_chain: tuple[ChainBackend, AnvilBackend],
) -> None:
    chain, node = node_chain
    clock = Clock()
    executor = market(chain, clock, deadline_s=1)
    before = executor.reserves()
    block_interval(node, 600)  # the node's clock jumps ten minutes a block, and goes on so
    with pytest.raises(TransactionReverted, match=r"Pool: EXPIRED, twice") as info:
        executor.swap_exact_in("quote", 10_000 * E6, 1)
    assert info.value.reason == EXPIRED
    assert "1 s (chain.deadline_s) after the latest of this host's clock" in str(info.value)
    assert clock.reads == 2  # exactly one retry
    assert executor.reserves() == before
