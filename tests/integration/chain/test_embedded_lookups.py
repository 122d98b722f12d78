"""The embedded chain finds transactions by py-evm's hash index, with eth-tester's exact answers.

Each test builds a small chain (blocks of one and of several transactions, a reverted
transaction, contracts emitting one and several logs, a snapshot revert that leaves py-evm's
index stale) and reads it twice: through the embedded backend, and through eth-tester's stock
`PyEVMBackend` over the same chain, which scans back from the newest block. Logs, receipts and
transactions must be equal field for field; a long read must decode each block a bounded number
of times, not once per later block.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_tester import EthereumTester, PyEVMBackend
from eth_tester.exceptions import TransactionNotFound
from eth_utils import keccak
from web3 import EthereumTesterProvider, Web3

from agent.chain.backends import ChainBackend, EmbeddedBackend
from agent.chain.contracts import load_artifact
from agent.chain.embedded import indexed_backend_class

GAS = 1_000_000


def eth_tester_of(backend: ChainBackend) -> EthereumTester:
    return backend.w3.provider.ethereum_tester  # type: ignore[attr-defined]


def stock_w3(backend: ChainBackend) -> Web3:
    """A Web3 over eth-tester's unmodified backend, reading the same chain object."""
    fast = eth_tester_of(backend).backend
    stock = object.__new__(PyEVMBackend)
    stock.chain = fast.chain
    stock.account_keys = fast.account_keys
    return Web3(EthereumTesterProvider(EthereumTester(stock)))


def deploy(backend: ChainBackend, name: str, *args: Any) -> tuple[Any, bytes]:
    """Deploy a contract; return it bound and the deploying transaction's hash."""
    art = load_artifact(name)
    factory = backend.w3.eth.contract(abi=art.abi, bytecode=art.bytecode)
    receipt = backend.transact(factory.constructor(*args), gas=3 * GAS)
    address = Web3.to_checksum_address(receipt["contractAddress"])
    return backend.w3.eth.contract(address=address, abi=art.abi), receipt["transactionHash"]


def build_chain(backend: ChainBackend) -> dict[str, Any]:
    """Write a varied little chain; return its addresses and transaction hashes."""
    w3 = backend.w3
    operator, alice = backend.accounts[:2]
    log, log_deployed = deploy(backend, "DecisionLog", operator)
    token, token_deployed = deploy(backend, "MarketToken", "Base", "BASE", 18)
    hashes: list[bytes] = [log_deployed, token_deployed]
    for i in range(6):
        batch = [keccak(text=f"decision {i}.{j}") for j in range(i % 3 + 1)]
        hashes.append(
            backend.transact(log.functions.recordBatch(batch), gas=GAS)["transactionHash"]
        )
    hashes.append(backend.transact(token.functions.mint(alice, 10**18), gas=GAS)["transactionHash"])
    hashes.append(
        backend.transact(token.functions.approve(operator, 5), sender=alice, gas=GAS)[
            "transactionHash"
        ]
    )
    # A reverted transaction is mined too (status 0): the operator has no tokens to send.
    hashes.append(token.functions.transfer(alice, 1).transact({"from": operator, "gas": GAS}))

    # One block of several transactions (eth-tester mines each alone when auto-mining).
    tester = eth_tester_of(backend)
    tester.disable_auto_mine_transactions()
    try:
        for i, sender in enumerate(backend.accounts[2:5]):  # eth-tester wants one per sender
            call = token.functions.approve(operator, i + 1)
            hashes.append(call.transact({"from": sender, "gas": GAS}))
        tester.mine_blocks(1)
    finally:
        tester.enable_auto_mine_transactions()

    # A snapshot revert: the dropped transaction's hash stays in py-evm's index, pointing at
    # the block (and index) its replacement now occupies.
    snapshot = w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
    dropped = log.functions.record(keccak(text="dropped")).transact({"from": operator, "gas": GAS})
    w3.provider.make_request("evm_revert", [snapshot])  # type: ignore[arg-type]
    hashes.append(
        log.functions.record(keccak(text="kept")).transact({"from": operator, "gas": GAS})
    )
    for i in range(3):
        hashes.append(
            backend.transact(log.functions.record(keccak(text=f"after {i}")), gas=GAS)[
                "transactionHash"
            ]
        )
    return {"log": log.address, "token": token.address, "hashes": hashes, "dropped": dropped}


def assert_same_answers(backend: ChainBackend, built: dict[str, Any]) -> None:
    w3, slow = backend.w3, stock_w3(backend)
    head = w3.eth.block_number
    for params in (
        {"fromBlock": 0, "toBlock": head},
        {"fromBlock": 0, "toBlock": "latest", "address": built["log"]},
        {"fromBlock": 3, "toBlock": head - 2, "address": built["token"]},
        {"fromBlock": head, "toBlock": head},
    ):
        fast_logs = w3.eth.get_logs(params)  # type: ignore[arg-type]
        assert fast_logs == slow.eth.get_logs(params), params  # type: ignore[arg-type]
        assert repr(fast_logs) == repr(slow.eth.get_logs(params))  # type: ignore[arg-type]
    for tx_hash in built["hashes"]:
        receipt = w3.eth.get_transaction_receipt(tx_hash)
        assert repr(receipt) == repr(slow.eth.get_transaction_receipt(tx_hash))
        assert repr(w3.eth.get_transaction(tx_hash)) == repr(slow.eth.get_transaction(tx_hash))
    receipts = [w3.eth.get_transaction_receipt(h) for h in built["hashes"]]
    assert max(len(r["logs"]) for r in receipts) >= 2  # the DecisionLog grants its roles
    statuses = [r["status"] for r in receipts]
    assert 0 in statuses and statuses.count(1) == len(statuses) - 1
    assert {r["transactionIndex"] for r in receipts} == {0, 1, 2}
    # Not on the chain, or no longer: both paths say so in the same way.
    fast_tester, slow_tester = eth_tester_of(backend), slow.provider.ethereum_tester  # type: ignore[attr-defined]
    for missing in (built["dropped"], keccak(text="never sent")):
        for tester in (fast_tester, slow_tester):
            with pytest.raises(TransactionNotFound):
                tester.get_transaction_receipt(Web3.to_hex(missing))
            with pytest.raises(TransactionNotFound):
                tester.get_transaction_by_hash(Web3.to_hex(missing))


@pytest.fixture
def file_chain(tmp_path: Path) -> Iterator[ChainBackend]:
    with EmbeddedBackend(tmp_path / "chain") as backend:
        yield backend


def test_both_embedded_chains_run_the_indexed_backend(file_chain: ChainBackend) -> None:
    with EmbeddedBackend() as in_memory:
        for backend in (file_chain, in_memory):
            assert isinstance(eth_tester_of(backend).backend, indexed_backend_class())


def test_logs_receipts_and_transactions_equal_eth_testers_on_a_file_chain(
    file_chain: ChainBackend,
) -> None:
    assert_same_answers(file_chain, build_chain(file_chain))


def test_logs_and_receipts_equal_eth_testers_after_the_chain_file_is_reopened(
    tmp_path: Path,
) -> None:
    with EmbeddedBackend(tmp_path / "chain") as backend:
        built = build_chain(backend)
        expected = repr(backend.w3.eth.get_logs({"fromBlock": 0, "toBlock": "latest"}))
    with EmbeddedBackend(tmp_path / "chain") as reopened:
        assert repr(reopened.w3.eth.get_logs({"fromBlock": 0, "toBlock": "latest"})) == expected
        assert_same_answers(reopened, built)


def test_logs_receipts_and_transactions_equal_eth_testers_in_memory() -> None:
    with EmbeddedBackend() as backend:
        assert_same_answers(backend, build_chain(backend))


def test_reading_every_log_decodes_each_block_a_bounded_number_of_times(
    file_chain: ChainBackend,
) -> None:
    art = load_artifact("DecisionLog")
    address = file_chain.deploy(art.abi, art.bytecode, file_chain.operator)
    log = file_chain.w3.eth.contract(address=Web3.to_checksum_address(address), abi=art.abi)
    for i in range(60):
        file_chain.transact(log.functions.record(keccak(text=f"decision {i}")), gas=GAS)
    chain = eth_tester_of(file_chain).backend.chain
    decoded = 0
    lookup = chain.get_canonical_block_by_number

    def counting(number: int) -> Any:
        nonlocal decoded
        decoded += 1
        return lookup(number)

    chain.get_canonical_block_by_number = counting
    try:
        blocks = file_chain.w3.eth.block_number + 1
        logs = file_chain.w3.eth.get_logs({"fromBlock": 0, "toBlock": "latest"})
        assert len(logs) == 60 + 2  # the records and the deployment's two role grants
    finally:
        del chain.get_canonical_block_by_number
    # eth-tester's scan decodes ~blocks**2 / 2 (about 1,900 here); the index, two per block.
    assert decoded <= 2 * blocks + 2, f"{decoded} block decodes to read {blocks} blocks"
