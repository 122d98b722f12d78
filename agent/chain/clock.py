"""Chain time against the wall clock: swap deadlines, and dev chains whose head went stale.

A swap's deadline is a window (`chain.deadline_s`) counted from the latest of the decision's
own time (the bar's close), the wall clock and the chain's latest block. Not from the latest
block alone: anvil and the embedded chain mine only when a transaction arrives, so after an
idle gap their latest block is as old as the gap, and a deadline counted from it has already
passed. But not without it either: each block is at least a second after the one before, so a
dev chain that mines faster than a block a second (a replay, an `--onchain` backtest) runs
ahead of the wall clock, and a deadline counted from the wall clock alone would have passed.

A head that lags the wall clock is also brought forward before Agora sends a transaction, so
the blocks that carry its swaps and decision hashes bear the time they were sent (a block's
timestamp is the public evidence of when a decision was published): on the chains Agora mines
itself (anvil, the embedded chain) one empty block is mined at the current time; any other
node (`rpc`) is only read, since its clock is not Agora's to move. A chain's clock is never
moved backwards.
"""

from __future__ import annotations

import math
from typing import Any

from eth_tester.exceptions import ValidationError as EthTesterValidationError
from web3.exceptions import Web3Exception
from web3.types import RPCEndpoint

from agent.chain.backends import ChainBackend
from agent.errors import ChainError

STALE_HEAD_S = 60
"""A head this many seconds behind the clock is stale: the chain is brought up to the clock."""

_WARP = {
    "anvil": ("evm_mine", lambda t: [t]),
    "embedded": ("testing_timeTravel", lambda t: [t]),
}
"""Per backend that Agora mines itself, the JSON-RPC call that mines a block at a timestamp."""


def swap_deadline(
    window_s: int, *, now_s: float, not_before_s: float | None = None, head_s: int | None = None
) -> int:
    """Return the deadline of a swap sent now: a window after the latest of the given times.

    Args:
        window_s: seconds the swap stays valid (`chain.deadline_s`; negative gives an expired one).
        now_s: the wall clock, Unix seconds.
        not_before_s: the decision's own time (the bar's close), Unix seconds, if known.
        head_s: the timestamp of the chain's latest block, if known.
    """
    start = max(t for t in (now_s, not_before_s, head_s) if t is not None)
    return math.ceil(start) + window_s


def head_timestamp(backend: ChainBackend) -> int:
    """Return the timestamp of the chain's latest block.

    Raises:
        ChainError: the node cannot be read.
    """
    try:
        return int(backend.w3.eth.get_block("latest")["timestamp"])
    except (OSError, Web3Exception, ValueError, KeyError) as e:
        raise ChainError(f"cannot read the latest block on {backend.name}: {e}") from e


def catch_up_head(
    backend: ChainBackend, now_s: float, *, stale_after_s: float = STALE_HEAD_S
) -> int:
    """Bring a stale dev chain's clock up to `now_s`; return the latest block's timestamp.

    On anvil and the embedded chain a head older than `stale_after_s` is followed by one empty
    block mined at `now_s`, and the node's clock goes on from there. Any other node is only
    read (a node that refuses the call keeps its time). Never moves a clock backwards.

    Raises:
        ChainError: the node cannot be read.
    """
    head = head_timestamp(backend)
    target = int(now_s)
    warp = _WARP.get(backend.name)
    if warp is None or head >= target - stale_after_s:
        return head
    method, params = warp
    if _request(backend, method, params(target)):
        return head_timestamp(backend)
    return head


def _request(backend: ChainBackend, method: str, params: list[Any]) -> bool:
    """Make a JSON-RPC call; return whether the node did it (False when it refuses)."""
    try:
        response = backend.w3.provider.make_request(RPCEndpoint(method), params)
    except (OSError, Web3Exception, ValueError, EthTesterValidationError):
        return False
    return isinstance(response, dict) and "error" not in response
