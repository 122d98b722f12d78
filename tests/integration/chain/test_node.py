"""One chain per data directory: processes attach to the node that serves it, never start a
second one on the same state, and never write a state they do not own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from agent.chain.anvil import AnvilBackend
from agent.chain.backends import AttachedNode, EmbeddedBackend, connect
from agent.chain.contracts import load_artifact
from agent.chain.deploy import chain_key
from agent.chain.node import (
    ChainLocked,
    ChainLost,
    NodeRecord,
    anvil_state_path,
    read_record,
    write_record,
)
from agent.config import ChainSettings
from agent.errors import ChainError

REPO = Path(__file__).parents[3]
ANVIL = ChainSettings(backend="anvil", rpc_timeout_s=2.0)


def deploy_log(backend: object) -> str:
    artifact = load_artifact("DecisionLog")
    return backend.deploy(artifact.abi, artifact.bytecode, backend.operator)  # type: ignore[attr-defined]


def test_a_command_attaches_to_the_embedded_chain_its_holder_serves(tmp_path: Path) -> None:
    with EmbeddedBackend(tmp_path / "chain") as holder:
        url = holder.serve(tmp_path)
        with connect(ChainSettings(), tmp_path) as other:
            assert isinstance(other, AttachedNode) and other.url == url
            assert chain_key(other) == chain_key(holder)
            address = deploy_log(other)  # sent through the holder, which writes the file
            assert holder.w3.eth.get_code(address)
            assert other.w3.eth.block_number == holder.w3.eth.block_number
        assert read_record(tmp_path) is not None  # a guest leaves the holder's record alone
    assert read_record(tmp_path) is None
    with EmbeddedBackend(tmp_path / "chain", create=False) as reopened:
        assert reopened.w3.eth.get_code(address)


def test_a_holder_that_does_not_serve_makes_others_wait_then_names_it(tmp_path: Path) -> None:
    with (
        EmbeddedBackend(tmp_path / "chain"),
        pytest.raises(ChainLocked, match=f"in use by pid {os.getpid()}"),
    ):
        connect(ChainSettings(), tmp_path, lock_timeout_s=0.3)


def test_a_stale_record_is_ignored(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    pid = int(dead.stdout)
    write_record(
        tmp_path, NodeRecord("anvil", "http://127.0.0.1:9", pid, pid, "agora run", None, 0)
    )
    with connect(ANVIL, tmp_path) as backend:
        assert isinstance(backend, AnvilBackend)  # started its own from the state file
        assert read_record(tmp_path).pid == backend.pid  # type: ignore[union-attr]


def test_commands_share_one_anvil_node_and_its_owner_stops_it_cleanly(tmp_path: Path) -> None:
    state = anvil_state_path(tmp_path)
    first = connect(ANVIL, tmp_path)
    assert isinstance(first, AnvilBackend) and first.state_path == state
    with connect(ANVIL, tmp_path) as second:  # a second command, meanwhile: the same node
        assert isinstance(second, AttachedNode) and second.pid == first.pid
        address = deploy_log(second)
    assert first.w3.eth.get_code(address)  # the guest left the node running
    first.close()
    assert first.process.returncode == 0 and read_record(tmp_path) is None
    assert state.is_file()  # written by the node its owner stopped with SIGTERM
    with connect(ANVIL, tmp_path) as third:
        assert isinstance(third, AnvilBackend) and third.w3.eth.get_code(address)


def test_a_hung_node_is_reported_never_replaced(tmp_path: Path) -> None:
    with connect(ANVIL.model_copy(update={"rpc_timeout_s": 0.3}), tmp_path) as owner:
        assert isinstance(owner, AnvilBackend)
        os.kill(owner.pid, signal.SIGSTOP)
        try:
            assert owner.probe(0.3) is not None
            with pytest.raises(ChainError, match=r"does not answer within 0\.3 s \(the process"):
                connect(ANVIL.model_copy(update={"rpc_timeout_s": 0.3}), tmp_path)
        finally:
            os.kill(owner.pid, signal.SIGCONT)
        assert owner.probe(2.0) is None


def test_a_chain_found_lost_leaves_no_empty_state_file_behind(tmp_path: Path) -> None:
    state = anvil_state_path(tmp_path)
    with pytest.raises(ChainLost), connect(ANVIL, tmp_path):
        raise ChainLost("the recorded contracts have no code")
    assert not state.exists() and read_record(tmp_path) is None


def test_a_corrupt_anvil_state_file_is_a_lost_chain_naming_recover(tmp_path: Path) -> None:
    state = anvil_state_path(tmp_path)
    state.write_text('{"block": not json')
    with pytest.raises(ChainLost, match=r"cannot load its state file .*agora chain recover"):
        connect(ANVIL, tmp_path)
    assert state.read_text() == '{"block": not json'  # left as it was, for recover to move
