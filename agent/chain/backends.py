"""Chain backends behind one interface: `embedded` (in-process EVM), `anvil`, `rpc`.

The anvil node's process (start, stop, attach to one a killed run left) is managed in one
place, `agent.chain.anvil`; `AnvilBackend` and `find_anvil` are re-exported here.

Everything else talks to the chain through a `ChainBackend`: a connected `Web3`, the account
that signs, and `transact`, which sends a contract call, waits for its receipt and turns
failures into `ChainError` / `TransactionReverted` with the revert reason.
"""

from __future__ import annotations

import os
from abc import ABC
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from eth_tester.exceptions import TransactionFailed
from web3 import Web3
from web3.exceptions import ContractLogicError, TimeExhausted, Web3Exception

from agent.config import ChainSettings
from agent.errors import ChainError, ConfigError, TransactionReverted


class ChainBackend(ABC):
    """A connected chain and the account Agora signs with."""

    name: str
    persistent: bool
    """Whether the chain's state survives a restart of Agora (else it must be replayed)."""

    def __init__(self, w3: Web3, operator: str) -> None:
        self.w3 = w3
        self.operator = Web3.to_checksum_address(operator)

    @property
    def accounts(self) -> list[str]:
        """Funded accounts that can sign on this chain (the operator first)."""
        return [self.operator]

    def reachable(self) -> bool:
        """Return whether the node answers right now."""
        try:
            self.w3.eth.chain_id  # noqa: B018 - a cheap round trip
        except (OSError, Web3Exception, ValueError):
            return False
        return True

    def transact(self, call: Any, *, sender: str | None = None, gas: int | None = None) -> Any:
        """Send a contract function call, wait for its receipt and return it.

        Raises:
            TransactionReverted: the call reverted; `reason` holds the revert reason.
            ChainError: the node could not be reached or did not mine the transaction.
        """
        params: dict[str, Any] = {"from": sender or self.operator}
        if gas is not None:
            params["gas"] = gas
        label = getattr(call, "fn_name", "transaction")
        try:
            tx_hash = call.transact(params)
            receipt = self.w3.eth.wait_for_transaction_receipt(
                tx_hash, timeout=120, poll_latency=0.01
            )
        except (ContractLogicError, TransactionFailed) as e:
            reason = revert_reason(e)
            raise TransactionReverted(f"{label} reverted: {reason}", reason=reason) from e
        except TimeExhausted as e:
            raise ChainError(f"{label}: not mined within 120 s on {self.name}") from e
        except (OSError, Web3Exception, ValueError) as e:
            raise ChainError(f"{label} failed on {self.name}: {e}") from e
        if receipt["status"] != 1:
            raise TransactionReverted(f"{label} reverted (no reason given)", reason=None)
        return receipt

    def deploy(self, abi: list[Any], bytecode: str, *args: Any, sender: str | None = None) -> str:
        """Deploy a contract and return its checksum address."""
        factory = self.w3.eth.contract(abi=abi, bytecode=bytecode)
        receipt = self.transact(factory.constructor(*args), sender=sender)
        return str(receipt["contractAddress"])

    def close(self) -> None:  # noqa: B027 - most backends hold nothing to release
        """Release the backend (stop a node Agora started)."""

    def __enter__(self) -> ChainBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def revert_reason(error: Exception) -> str:
    """Return the human part of a revert: the reason string or the custom error's data."""
    message = str(getattr(error, "message", None) or error)
    for prefix in ("execution reverted: ", "execution reverted"):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    data = getattr(error, "data", None)
    return message.strip() or (str(data) if data else "unknown")


class EmbeddedBackend(ChainBackend):
    """An in-process EVM (eth-tester + py-evm): nothing to install or start.

    With a `state_dir` the chain lives in `state_dir/embedded.sqlite` (see
    `agent.chain.embedded`): every process opens the same chain, one at a time (a lock file
    beside it). Without one it lives in memory and is lost on close (a throwaway chain for
    tests and simulations).

    Args:
        state_dir: where the chain file lives; None for an in-memory chain.
        create: create the chain when the file does not exist (else `ChainLost`).
        lock_timeout_s: how long to wait for another process to release the chain.

    Raises:
        ChainLocked: another process has the chain open.
        ChainLost: the file is missing (and `create` is false) or corrupt.
    """

    name = "embedded"

    def __init__(
        self, state_dir: Path | None = None, *, create: bool = True, lock_timeout_s: float = 3.0
    ) -> None:
        from eth_tester import EthereumTester
        from web3 import EthereumTesterProvider

        self.state_dir = None if state_dir is None else Path(state_dir)
        self.persistent = state_dir is not None
        self._file: Any = None
        if self.state_dir is None:
            from agent.chain.embedded import indexed_backend_class

            provider = EthereumTesterProvider(EthereumTester(indexed_backend_class()()))
        else:
            from agent.chain.embedded import ChainFile

            self._file = ChainFile(self.state_dir, create=create, lock_timeout_s=lock_timeout_s)
            provider = EthereumTesterProvider(EthereumTester(self._file.backend))
        w3 = Web3(provider)
        super().__init__(w3, w3.eth.accounts[0])
        self._accounts = [Web3.to_checksum_address(a) for a in w3.eth.accounts]

    @property
    def accounts(self) -> list[str]:
        return list(self._accounts)

    @property
    def state_path(self) -> Path | None:
        """The chain file, or None for an in-memory chain."""
        return None if self._file is None else self._file.path

    @property
    def created(self) -> bool:
        """Whether this backend created the chain (a fresh genesis) rather than reopening it."""
        return self._file is None or bool(self._file.created)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def embedded_state_dir(data_dir: Path) -> Path:
    """Return the directory of the data directory's embedded chain (`data/chain`)."""
    return Path(data_dir) / "chain"


class RpcBackend(ChainBackend):
    """Any JSON-RPC node; transactions are signed locally with a key from the environment."""

    name = "rpc"
    persistent = True

    def __init__(self, url: str, private_key: str) -> None:
        from eth_account import Account
        from web3.middleware import SignAndSendRawMiddlewareBuilder

        w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 60}))
        try:
            account = Account.from_key(private_key)
        except (ValueError, TypeError) as e:
            raise ConfigError("the private key for the rpc backend is not a valid key") from e
        w3.middleware_onion.inject(SignAndSendRawMiddlewareBuilder.build(account), layer=0)
        w3.eth.default_account = account.address
        super().__init__(w3, account.address)
        if not self.reachable():
            raise ChainError(f"the rpc node at {url} does not answer")


def connect(
    settings: ChainSettings,
    data_dir: Path,
    environ: Mapping[str, str] | None = None,
    *,
    create_chain: bool = True,
) -> ChainBackend:
    """Open the backend chosen in the configuration.

    The embedded chain is the one in `data_dir/chain`; with `create_chain` false a missing
    chain file is a `ChainLost` error instead of a new chain.
    """
    environ = os.environ if environ is None else environ
    if settings.backend == "embedded":
        return EmbeddedBackend(embedded_state_dir(data_dir), create=create_chain)
    if settings.backend == "anvil":
        from agent.chain.anvil import AnvilBackend

        state = data_dir / "anvil-state.json" if settings.anvil_persist else None
        return AnvilBackend(binary=settings.anvil_path, state_path=state)
    if not settings.rpc_url:
        raise ConfigError("chain.rpc_url is required when chain.backend is rpc")
    key = environ.get(settings.private_key_env)
    if not key:
        raise ConfigError(
            f"chain.backend is rpc but the environment variable {settings.private_key_env} "
            "(chain.private_key_env) holding the signing key is not set"
        )
    return RpcBackend(settings.rpc_url, key)


_ANVIL_NAMES = ("AnvilBackend", "find_anvil", "free_loopback_port")


def __getattr__(name: str) -> Any:
    """Re-export the anvil backend (its module imports this one, so lazily)."""
    if name in _ANVIL_NAMES:
        from agent.chain import anvil

        return getattr(anvil, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
