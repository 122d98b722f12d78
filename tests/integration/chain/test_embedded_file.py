"""The embedded chain's state file: reopened by other processes, locked, crash-safe.

Each test runs real processes (`python -c`) over one chain directory: a chain written by one
process is the chain the next one reads, two processes never have it open at once, and a
process killed with SIGKILL between (or during) transactions leaves the last mined block.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from eth_utils import keccak

from agent.chain.backends import EmbeddedBackend
from agent.chain.contracts import load_artifact
from agent.chain.deploy import chain_key
from agent.chain.embedded import ChainLocked, ChainLost, chain_file

REPO = Path(__file__).resolve().parents[3]

WRITER = """
import json, sys
from pathlib import Path
from eth_utils import keccak
from agent.chain.backends import EmbeddedBackend
from agent.chain.contracts import load_artifact
from agent.chain.deploy import chain_key

state_dir, n = Path(sys.argv[1]), int(sys.argv[2])
with EmbeddedBackend(state_dir) as chain:
    art = load_artifact("DecisionLog")
    address = chain.deploy(art.abi, art.bytecode, chain.operator)
    log = chain.w3.eth.contract(address=address, abi=art.abi)
    print(json.dumps({"address": address, "key": chain_key(chain),
                      "head": "0x" + bytes(log.functions.head().call()).hex()}), flush=True)
    for i in range(n):
        chain.transact(log.functions.record(keccak(text=f"decision {i}")))
        print(json.dumps({"sent": i + 1}), flush=True)
    print(json.dumps({"block": chain.w3.eth.block_number}), flush=True)
"""


def run_python(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def expected_head(start: str, n: int) -> str:
    head = bytes.fromhex(start.removeprefix("0x"))
    for i in range(n):
        head = keccak(head + keccak(text=f"decision {i}"))
    return "0x" + head.hex()


def read_log(chain: EmbeddedBackend, address: str) -> tuple[int, str]:
    log = chain.w3.eth.contract(address=address, abi=load_artifact("DecisionLog").abi)
    return int(log.functions.count().call()), "0x" + bytes(log.functions.head().call()).hex()


def test_a_chain_written_by_one_process_is_the_chain_the_next_one_opens(tmp_path: Path) -> None:
    state_dir = tmp_path / "chain"
    first = run_python(WRITER, str(state_dir), "5")
    assert first.returncode == 0, first.stderr
    lines = [json.loads(line) for line in first.stdout.splitlines()]
    deployed, block = lines[0], lines[-1]["block"]

    with EmbeddedBackend(state_dir) as chain:
        assert not chain.created and chain.persistent
        assert chain.state_path == chain_file(state_dir)
        assert chain.w3.eth.block_number == block
        assert chain_key(chain) == deployed["key"]  # stable: chain id + genesis hash
        assert chain.w3.eth.get_code(deployed["address"])  # the contract is still there
        assert read_log(chain, deployed["address"]) == (5, expected_head(deployed["head"], 5))
        # the same deterministic accounts, with their nonces carried over
        assert chain.operator == deployed_operator()
        assert chain.w3.eth.get_transaction_count(chain.operator) == 6
        log = chain.w3.eth.contract(
            address=deployed["address"], abi=load_artifact("DecisionLog").abi
        )
        chain.transact(log.functions.record(keccak(text="decision 5")))

    second = run_python(
        """
        import sys
        from pathlib import Path
        from agent.chain.backends import EmbeddedBackend
        with EmbeddedBackend(Path(sys.argv[1])) as chain:
            print(chain.w3.eth.block_number)
        """,
        str(state_dir),
    )
    assert second.returncode == 0, second.stderr
    assert int(second.stdout) == block + 1


def deployed_operator() -> str:
    with EmbeddedBackend() as throwaway:
        return throwaway.operator


def test_an_in_memory_chain_is_still_a_fresh_throwaway(tmp_path: Path) -> None:
    with EmbeddedBackend() as first, EmbeddedBackend() as second:
        assert not first.persistent and first.state_path is None
        art = load_artifact("DecisionLog")
        first.deploy(art.abi, art.bytecode, first.operator)
        assert second.w3.eth.block_number == 0
        assert chain_key(first) != chain_key(second)
    assert not list(tmp_path.iterdir())


def test_a_second_process_gets_a_one_line_error_naming_the_holder(tmp_path: Path) -> None:
    state_dir = tmp_path / "chain"
    with EmbeddedBackend(state_dir):
        other = run_python(
            """
            import sys
            from pathlib import Path
            from agent.chain.backends import EmbeddedBackend
            from agent.chain.embedded import ChainLocked
            try:
                EmbeddedBackend(Path(sys.argv[1]), lock_timeout_s=0.3)
            except ChainLocked as e:
                print(e)
            """,
            str(state_dir),
        )
        assert other.returncode == 0, other.stderr
        message = other.stdout.strip()
        assert "\n" not in message
        assert message.startswith(
            f"the embedded chain in {state_dir} is in use by pid {os.getpid()}"
        )
        assert message.endswith("stop it or use chain.backend: anvil")
        with pytest.raises(ChainLocked):
            EmbeddedBackend(state_dir, lock_timeout_s=0.1)  # the same process, a second opener
    with EmbeddedBackend(state_dir, lock_timeout_s=0.1) as again:  # released on close
        assert not again.created


def test_a_process_killed_mid_way_leaves_a_consistent_prefix(tmp_path: Path) -> None:
    state_dir = tmp_path / "chain"
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(state_dir), "100000"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    deployed = json.loads(process.stdout.readline())
    reported = 0
    deadline = time.monotonic() + 60
    while reported < 25 and time.monotonic() < deadline:
        reported = json.loads(process.stdout.readline()).get("sent", reported)
    process.send_signal(signal.SIGKILL)
    process.wait()
    process.stdout.close()
    process.stderr.close()  # type: ignore[union-attr]
    assert reported >= 25

    with EmbeddedBackend(state_dir) as chain:
        head_block = chain.w3.eth.get_block("latest")
        assert chain.w3.eth.get_balance(chain.operator, head_block["number"]) > 0
        count, head = read_log(chain, deployed["address"])
        # every transaction whose receipt the writer saw is there, none is half-applied
        assert count >= reported
        assert head == expected_head(deployed["head"], count)
        assert head_block["number"] == 1 + count  # the deployment, then one block per record
        assert chain.w3.eth.get_transaction_count(chain.operator) == 1 + count


def test_a_corrupt_chain_file_is_reported_not_rebuilt(tmp_path: Path) -> None:
    state_dir = tmp_path / "chain"
    state_dir.mkdir()
    chain_file(state_dir).write_bytes(b"this is not a SQLite database, just garbage" * 100)
    with pytest.raises(ChainLost, match="agora chain recover"):
        EmbeddedBackend(state_dir)
    assert chain_file(state_dir).read_bytes().startswith(b"this is not")


def test_a_missing_chain_file_is_created_only_when_asked(tmp_path: Path) -> None:
    with pytest.raises(ChainLost, match="no embedded chain file"):
        EmbeddedBackend(tmp_path / "chain", create=False)
    assert not chain_file(tmp_path / "chain").exists()
