"""Chain backends behind one interface: `embedded` (in-process EVM), `anvil`, `rpc`.

`connect` is the one place a process opens the data directory's chain. One chain per data
directory: when a node already serves it (the service's anvil, or the embedded chain the
service holds and serves on loopback) the process attaches to it (`AttachedNode`), after a
liveness check (`agent.chain.node`); otherwise it opens the chain itself (the embedded file, or
an anvil node started from its state file, recorded so that others attach) and releases it
cleanly on close. A process never writes a chain state it does not own.

The anvil node's process (start, stop) is managed in one place, `agent.chain.anvil`;
`AnvilBackend` and `find_anvil` are re-exported here.

Everything else talks to the chain through a `ChainBackend`: a connected `Web3` whose calls
have a deadline (`chain.rpc_timeout_s`), the account that signs, and `transact`, which sends a
contract call, waits for its receipt and turns failures into `ChainError` /
`TransactionReverted` with the revert reason.
"""

from __future__ import annotations

import os
import threading
import time
from abc import ABC
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from eth_tester.exceptions import TransactionFailed
from web3 import Web3
from web3.exceptions import ContractLogicError, TimeExhausted, Web3Exception

from agent.chain.node import (
    DEFAULT_RPC_TIMEOUT_S,
    ChainLocked,
    ChainLost,
    NodeLock,
    NodeRecord,
    answers,
    anvil_state_path,
    chain_dir,
    clear_record,
    command_name,
    holder_note,
    http_web3,
    live_record,
    process_alive,
    write_record,
)
from agent.config import ChainSettings
from agent.errors import ChainError, ConfigError, TransactionReverted

Event = Callable[..., None]
Cleanup = Callable[[bool], None]
ANVIL_LOCK_FILE = "anvil.lock"


class ChainBackend(ABC):
    """A connected chain and the account Agora signs with."""

    name: str
    persistent: bool
    """Whether the chain's state survives a restart of Agora (else it must be replayed)."""

    url: str | None = None
    """Where the node answers JSON-RPC (None: in-process)."""
    node_marker: str | None = None
    """For a chain that does not persist: what tells this node apart from the next one."""
    node_left_running = False
    """Set by `close` when a node this process owns did not stop in time (it was paused)."""
    restored = False
    """Whether this process started the node from a state file it persisted earlier (it may
    lack the last seconds before the previous node stopped)."""
    discard_new_state = False
    """Set when the chain turned out not to hold the store's records (`ChainLost`): a state
    file its node created from nothing is then removed at close, not left behind as if it
    were the data directory's chain."""

    def __init__(self, w3: Web3, operator: str) -> None:
        self.w3 = w3
        self.operator = Web3.to_checksum_address(operator)
        self.cleanups: list[Cleanup] = []
        """Run at close, after the node stopped (or was left running: the flag says which)."""

    @property
    def accounts(self) -> list[str]:
        """Funded accounts that can sign on this chain (the operator first)."""
        return [self.operator]

    def reachable(self) -> bool:
        """Return whether the node answers right now (within the RPC deadline)."""
        try:
            self.w3.eth.chain_id  # noqa: B018 - a cheap round trip
        except (OSError, Web3Exception, ValueError):
            return False
        return True

    def probe(self, timeout_s: float) -> str | None:
        """Ask the node for its chain id within `timeout_s`; return why it failed, or None.

        Uses a connection of its own, so it answers even while another thread waits on the
        node; an in-process chain cannot hang on I/O and always answers.
        """
        if self.url is None:
            return None
        if answers(self.url, timeout_s) is not None:
            return None
        if self.node_dead():
            return f"the {self.name} node at {self.url} is gone (its process exited)"
        return f"the {self.name} node at {self.url} did not answer within {timeout_s:g} s"

    def node_dead(self) -> bool:
        """Return whether the node's process has exited (False when Agora cannot tell)."""
        return False

    def run_cleanups(self, *, node_stopped: bool) -> None:
        """Run (once) what `close` must do after the node stopped: records, locks, servers."""
        cleanups, self.cleanups = self.cleanups, []
        for cleanup in reversed(cleanups):
            cleanup(node_stopped)

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

    def close(self, timeout_s: float = 15.0) -> None:
        """Release the backend: stop a node this process owns (waiting up to `timeout_s`)."""
        self.run_cleanups(node_stopped=False)

    def __enter__(self) -> ChainBackend:
        return self

    def __exit__(self, kind: object, error: object, traceback: object) -> None:
        if isinstance(error, ChainLost):
            self.discard_new_state = True
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
    beside it), and the one holding it may `serve` it to the others. Without one it lives in
    memory and is lost on close (a throwaway chain for tests and simulations). Requests are
    serialised by a lock, so the service's threads and the chain server share it safely.

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

        self.state_dir = None if state_dir is None else Path(state_dir)
        self.persistent = state_dir is not None
        self._file: Any = None
        if self.state_dir is None:
            from agent.chain.embedded import indexed_backend_class

            tester = EthereumTester(indexed_backend_class()())
        else:
            from agent.chain.embedded import ChainFile

            self._file = ChainFile(self.state_dir, create=create, lock_timeout_s=lock_timeout_s)
            tester = EthereumTester(self._file.backend)
        self.provider = _locked_provider_class()(tester)
        w3 = Web3(self.provider)
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

    def serve(self, data_dir: Path, host: str = "127.0.0.1") -> str:
        """Serve this chain over JSON-RPC on loopback and record it for other processes.

        Returns:
            The URL it answers on.
        """
        from agent.chain.serve import ChainServer

        server = ChainServer(self.provider, host)
        write_record(
            data_dir,
            NodeRecord(
                "embedded",
                server.url,
                os.getpid(),
                os.getpid(),
                command_name(),
                None,
                time.time_ns() // 1_000_000,
            ),
        )

        def stop_serving(_stopped: bool) -> None:
            server.close()
            clear_record(data_dir, url=server.url)

        self.cleanups.append(stop_serving)
        self.url = None  # the service itself keeps using the chain in-process
        self.served_url = server.url
        return server.url

    def close(self, timeout_s: float = 15.0) -> None:
        self.run_cleanups(node_stopped=True)  # stop serving first
        if self._file is not None:
            with self.provider.lock:  # not in the middle of a request
                self._file.close()


_PROVIDER: dict[str, Any] = {}


def _locked_provider_class() -> Any:
    """Return eth-tester's provider with every request under one lock (py-evm is not safe to
    use from two threads at once)."""
    if "class" not in _PROVIDER:
        from web3 import EthereumTesterProvider

        class LockedEthereumTesterProvider(EthereumTesterProvider):
            def __init__(self, tester: Any) -> None:
                super().__init__(tester)
                self.lock = threading.RLock()

            def make_request(self, method: Any, params: Any) -> Any:
                with self.lock:
                    return super().make_request(method, params)

        _PROVIDER["class"] = LockedEthereumTesterProvider
    return _PROVIDER["class"]


def embedded_state_dir(data_dir: Path) -> Path:
    """Return the directory of the data directory's embedded chain (`data/chain`)."""
    return chain_dir(data_dir)


class AttachedNode(ChainBackend):
    """A node another process serves for this data directory, reached over JSON-RPC.

    Closing it leaves the node alone, unless this process adopted it (`owned`): a node a
    killed service left running, which the next service takes over and stops as its own.
    """

    def __init__(self, record: NodeRecord, *, rpc_timeout_s: float, owned: bool = False) -> None:
        self.name = record.backend
        self.persistent = record.backend == "embedded" or record.state_path is not None
        self.record = record
        self.url = record.url
        self.pid = record.pid
        self.owned = owned
        self.node_marker = f"{record.pid}"
        w3 = http_web3(record.url, rpc_timeout_s)
        try:
            self._accounts = [Web3.to_checksum_address(a) for a in w3.eth.accounts]
        except (OSError, Web3Exception, ValueError) as e:
            raise ChainError(f"{record.describe()} did not list its accounts: {e}") from e
        super().__init__(w3, self._accounts[0])

    @property
    def accounts(self) -> list[str]:
        return list(self._accounts)

    def node_dead(self) -> bool:
        return not process_alive(self.pid)

    def close(self, timeout_s: float = 15.0) -> None:
        stopped = False
        if self.owned:
            from agent.chain.anvil import stop_process

            stopped = stop_process(self.pid, timeout_s)
            self.node_left_running = not stopped
        self.run_cleanups(node_stopped=stopped)


class RpcBackend(ChainBackend):
    """Any JSON-RPC node; transactions are signed locally with a key from the environment."""

    name = "rpc"
    persistent = True

    def __init__(
        self, url: str, private_key: str, *, rpc_timeout_s: float = DEFAULT_RPC_TIMEOUT_S
    ) -> None:
        from eth_account import Account
        from web3.middleware import SignAndSendRawMiddlewareBuilder

        self.url = url
        w3 = http_web3(url, rpc_timeout_s)
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
    data_dir: Path | str,
    environ: Mapping[str, str] | None = None,
    *,
    create_chain: bool = True,
    serve: bool = False,
    event: Event | None = None,
    lock_timeout_s: float = 3.0,
) -> ChainBackend:
    """Open the data directory's chain: attach to the node serving it, else open it.

    Args:
        settings: the `chain` section (backend, anvil, rpc, deadlines).
        data_dir: the data directory whose chain this is.
        environ: where the rpc key is read (default: the process environment).
        create_chain: create the embedded chain when its file does not exist (else
            `ChainLost`).
        serve: this process owns the chain for others (the service): it serves the embedded
            chain on loopback, records its anvil node, and adopts an anvil node a killed run
            left running.
        event: the structured log (`event(name, **fields)`), for the service.
        lock_timeout_s: how long to wait for another process that holds the chain without
            serving it.

    Raises:
        ChainLocked: another process holds the chain and serves no node to attach to.
        ChainLost: the embedded chain file is missing (and `create_chain` is false) or corrupt.
        ChainError: a node recorded for the data directory is alive but does not answer, or a
            node cannot be started or reached.
        ConfigError: the rpc backend lacks its URL or key.
    """
    environ = os.environ if environ is None else environ
    data_dir = Path(data_dir)
    say = event or (lambda *_args, **_fields: None)
    timeout_s = settings.rpc_timeout_s
    if settings.backend == "embedded":
        return _open_embedded(data_dir, create_chain, serve, timeout_s, lock_timeout_s, say)
    if settings.backend == "anvil":
        return _open_anvil(settings, data_dir, serve, lock_timeout_s, say)
    if not settings.rpc_url:
        raise ConfigError("chain.rpc_url is required when chain.backend is rpc")
    key = environ.get(settings.private_key_env)
    if not key:
        raise ConfigError(
            f"chain.backend is rpc but the environment variable {settings.private_key_env} "
            "(chain.private_key_env) holding the signing key is not set"
        )
    return RpcBackend(settings.rpc_url, key, rpc_timeout_s=timeout_s)


def _open_embedded(
    data_dir: Path, create: bool, serve: bool, timeout_s: float, lock_timeout_s: float, say: Event
) -> ChainBackend:
    """Open the embedded chain file, or attach to the process that holds and serves it."""
    from agent.chain.embedded import LOCK_FILE

    state_dir = embedded_state_dir(data_dir)
    deadline = time.monotonic() + lock_timeout_s
    while True:
        try:
            backend = EmbeddedBackend(state_dir, create=create, lock_timeout_s=0.0)
        except ChainLocked:
            holder = holder_note(state_dir / LOCK_FILE).get("pid")
            record = live_record(data_dir, "embedded", timeout_s=timeout_s)
            if record is not None and record.pid == holder:
                return AttachedNode(record, rpc_timeout_s=timeout_s)
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.1)
            continue
        if serve:
            try:
                url = backend.serve(data_dir)
            except BaseException:
                backend.close()
                raise
            say("chain_served", backend="embedded", url=url)
        return backend


def _open_anvil(
    settings: ChainSettings, data_dir: Path, serve: bool, lock_timeout_s: float, say: Event
) -> ChainBackend:
    """Attach to the data directory's live anvil node, else start one from its state file."""
    from agent.chain.anvil import AnvilBackend, stop_process

    state = anvil_state_path(data_dir) if settings.anvil_persist else None
    timeout_s = settings.rpc_timeout_s
    lock_path = chain_dir(data_dir) / ANVIL_LOCK_FILE
    what = f"the anvil node of {data_dir}"
    deadline = time.monotonic() + lock_timeout_s
    while True:
        record = live_record(data_dir, "anvil", timeout_s=timeout_s)
        if record is not None:
            # a record this very process wrote is one it no longer holds (a runtime that was
            # closed without stopping its node): taken over like a killed service's
            other_owner = record.owner_pid != os.getpid() and process_alive(record.owner_pid)
            if not serve or other_owner:
                return AttachedNode(record, rpc_timeout_s=timeout_s)
            if record.state_path == (None if state is None else str(state)):
                return _adopt(record, data_dir, lock_path, timeout_s, say)
            stop_process(record.pid, 15.0)  # left by a run of another configuration
            continue
        if state is None and not serve:
            return AnvilBackend(binary=settings.anvil_path, rpc_timeout_s=timeout_s)
        try:
            lock = NodeLock(lock_path, timeout_s=0.0, what=what)
        except ChainLocked:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.1)  # another process is starting the node: attach once it is recorded
            continue
        try:
            if live_record(data_dir, "anvil", timeout_s=timeout_s) is not None:
                lock.release()
                continue
            node = AnvilBackend(
                binary=settings.anvil_path,
                state_path=state,
                state_interval_s=settings.anvil_state_interval_s,
                rpc_timeout_s=timeout_s,
            )
        except BaseException:
            lock.release()
            raise
        record = NodeRecord(
            "anvil",
            f"http://127.0.0.1:{node.port}",
            node.pid,
            os.getpid(),
            command_name(),
            None if state is None else str(state),
            time.time_ns() // 1_000_000,
        )
        _own(node, data_dir, lock, record)
        say("anvil_started", pid=node.pid, url=node.url, persistent=state is not None)
        return node


def _adopt(
    record: NodeRecord, data_dir: Path, lock_path: Path, timeout_s: float, say: Event
) -> ChainBackend:
    """Take over a node a killed service left running (its state is newer than the file)."""
    lock = NodeLock(lock_path, timeout_s=3.0, what=f"the anvil node of {data_dir}")
    try:
        node = AttachedNode(record, rpc_timeout_s=timeout_s, owned=True)
    except BaseException:
        lock.release()
        raise
    _own(node, data_dir, lock, replace(record, owner_pid=os.getpid(), owner=command_name()))
    say("anvil_attached", pid=record.pid, url=record.url)
    return node


def _own(node: ChainBackend, data_dir: Path, lock: NodeLock, record: NodeRecord) -> None:
    """Record `node` as the data directory's node; on close, forget it (if it stopped)."""
    write_record(data_dir, record)

    def release(stopped: bool) -> None:
        if stopped:
            clear_record(data_dir, url=record.url)
        lock.release()

    node.cleanups.append(release)


_ANVIL_NAMES = ("AnvilBackend", "find_anvil", "free_loopback_port")


def __getattr__(name: str) -> Any:
    """Re-export the anvil backend (its module imports this one, so lazily)."""
    if name in _ANVIL_NAMES:
        from agent.chain import anvil

        return getattr(anvil, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
