"""Kill -9: the service runs in paper mode on an accelerated replay, on anvil with a persisted
state file, and is SIGKILLed at random points (at least 20 times: right after a decision was
recorded and before it was sent, during start-up and recovery, while deciding, while paying an
epoch), restarted each time, then left to finish and stopped with SIGTERM.

At the end every bar is decided exactly once, `agora audit verify` passes, and the pool's
reserves, the trader's and operator's token balances and the published reward roots on the
chain are exactly what the records imply, computed here independently from the store.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.config import load_settings
from agent.store import Store
from tests.e2e.conftest import Run
from tests.unit.service.fixtures import install_model

KILLS = 21
BARS, START = 360, 300
PREFUND = (10**36, 10**30)
CONFIG = f"""
data:
  dir: data
market:
  synthetic:
    bars: {BARS}
    seed: 11
chain:
  backend: anvil
  anvil_persist: true
agent:
  strategies: [ma-crossover, rsi-reversion, ts-momentum]
rewards:
  epoch_bars: 20
  workers: 1
  significance: 0.0    # every positive contribution paid in part: epochs publish under kills
  group_r2: 1.0
service:
  chain: anvil
  start_bar: {START}
  replay_speed: 2
  bootstrap_model: false
  port: 0
  heartbeat_s: 1
"""


class Service:
    """One `agora run` subprocess and its JSON events (stderr read in a thread)."""

    def __init__(self, workdir: Path, extra_env: dict[str, str] | None = None) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGORA__")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "agent", "run"],
            cwd=workdir,
            env={**env, **(extra_env or {})},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    def events(self, name: str) -> list[dict[str, Any]]:
        return [
            json.loads(line)
            for line in list(self.lines)
            if line.startswith("{") and f'"event":"{name}"' in line
        ]

    def wait_for(self, name: str, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.process.poll() is None:
            if self.events(name):
                return True
            time.sleep(0.005)
        return bool(self.events(name))

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        self._reader.join(timeout=5)


def anvils_of(state_path: Path) -> list[int]:
    """Return the pids of anvil nodes using this test's state file."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"anvil") and str(state_path).encode() in argv:
            found.append(int(entry.name))
    return found


@pytest.fixture
def killable(workdir: Path) -> Iterator[Path]:
    (workdir / "config.yaml").write_text(CONFIG)
    settings = load_settings(workdir / "config.yaml", environ={})
    with Store(settings.data.database_path) as store:
        install_model(store, settings)
    yield workdir
    for pid in anvils_of(workdir / "data" / "anvil-state.json"):  # left by a kill at start-up
        os.kill(pid, signal.SIGKILL)


def decided_bars(database: Path) -> int:
    with sqlite3.connect(database) as conn:
        try:
            row = conn.execute("SELECT COUNT(*) FROM service_ticks WHERE status != 'skipped'")
        except sqlite3.OperationalError:
            return 0
        return int(row.fetchone()[0])


@pytest.mark.slow
def test_sigkill_at_random_points_never_loses_or_duplicates_anything(
    killable: Path, agora: Run
) -> None:
    started = time.monotonic()
    rng = random.Random(20_240_101)
    database = killable / "data" / "agora.db"
    between_record_and_send = 0
    for kill in range(KILLS):
        service = Service(killable)
        mode = kill % 3
        if mode == 0:  # right after a decision is recorded and logged, before it is sent
            recorded = len(service.events("decision"))
            service.wait_for("decision", 30)
            between_record_and_send += len(service.events("decision")) > recorded
        elif mode == 1:  # anywhere: start-up, recovery, deciding
            time.sleep(rng.uniform(0.2, 3.5))
        else:
            service.wait_for("started", 30)
            time.sleep(rng.uniform(0.0, 1.2))
        service.kill()
        assert service.process.returncode == -signal.SIGKILL
    assert between_record_and_send >= 5
    assert decided_bars(database) < BARS - START, "the kills should land while deciding"

    final = Service(killable)
    assert final.wait_for("replay_finished", 120), "".join(final.lines[-30:])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(final.events("epoch_paid")) < 2:
        if _epochs_settled(database) >= 2:
            break
        time.sleep(0.2)
    final.process.send_signal(signal.SIGTERM)
    assert final.process.wait(timeout=60) == 0, "".join(final.lines[-30:])
    final._reader.join(timeout=5)

    check_exactly_once(database)
    verified = agora("audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith(f"OK: {BARS - START} decisions verified")
    check_chain_matches_the_records(killable)
    assert time.monotonic() - started < 240


def _epochs_settled(database: Path) -> int:
    """Epochs recorded and done: published, or with nothing to publish."""
    with sqlite3.connect(database) as conn:
        row = conn.execute(
            "SELECT COUNT(*) FROM reward_epochs WHERE status IN ('published', 'empty')"
        )
        return int(row.fetchone()[0])


def check_exactly_once(database: Path) -> None:
    from agent.market.synthetic import generate

    settings = load_settings(database.parent.parent / "config.yaml", environ={})
    source = generate(settings.market.synthetic, "1h").candles["open_time"].tolist()
    with sqlite3.connect(database) as conn:
        ticks = conn.execute(
            "SELECT bar_time_ms, status, seq FROM service_ticks ORDER BY bar_time_ms"
        ).fetchall()
        records = conn.execute("SELECT seq, record FROM decisions ORDER BY seq").fetchall()
    assert [t[0] for t in ticks] == source[START:BARS]
    assert {t[1] for t in ticks} == {"decided"}
    assert [t[2] for t in ticks] == list(range(BARS - START))
    assert [r[0] for r in records] == list(range(BARS - START))
    assert [json.loads(r[1])["bar_time_ms"] for r in records] == source[START:BARS]


def check_chain_matches_the_records(workdir: Path) -> None:
    """Compare the chain with what the store implies, without the service's own code."""
    from agent.chain.backends import AnvilBackend
    from agent.chain.contracts import load_artifact

    data = workdir / "data"
    with sqlite3.connect(data / "agora.db") as conn:
        (key, genesis) = conn.execute("SELECT chain_key, genesis FROM service_chains").fetchone()
        outcomes = [
            json.loads(row[0])
            for row in conn.execute("SELECT outcome FROM service_ticks ORDER BY bar_time_ms")
        ]
        addresses = dict(
            conn.execute("SELECT name, address FROM deployments WHERE chain_key = ?", [key])
        )
        roots = dict(conn.execute("SELECT epoch, root FROM reward_epochs WHERE root IS NOT NULL"))
        recorded = [r[0] for r in conn.execute("SELECT epoch FROM reward_epochs ORDER BY 1")]
        (executions,) = conn.execute(
            "SELECT COUNT(DISTINCT bar_time_ms) FROM service_executions WHERE chain_key = ?", [key]
        ).fetchone()
    genesis, last = json.loads(genesis), outcomes[-1]
    assert key == "anvil:31337" and executions == BARS - START
    with AnvilBackend(state_path=data / "anvil-state.json") as backend:
        w3 = backend.w3

        def contract(name: str, artifact: str) -> Any:
            return w3.eth.contract(address=addresses[name], abi=load_artifact(artifact).abi)

        pool = contract("pool", "ConstantProductPool")
        base, quote = (
            contract("market_base", "MarketToken"),
            contract("market_quote", "MarketToken"),
        )
        reserve0, reserve1, _ = pool.functions.getReserves().call()
        base_first = pool.functions.token0().call() == addresses["market_base"]
        reserves = (reserve0, reserve1) if base_first else (reserve1, reserve0)
        assert list(reserves) == last["pool_after"][:2]

        def held(account: str) -> tuple[int, int]:
            return base.functions.balanceOf(account).call(), quote.functions.balanceOf(
                account
            ).call()

        trader0, operator0 = genesis["trader"], genesis["operator"]
        assert held(genesis["trader_address"]) == (
            trader0[0] + last["balances"][0],
            trader0[1] + last["balances"][1] + last["gas_total"],
        )
        assert held(genesis["operator_address"]) == (
            operator0[0] + PREFUND[0] + last["arbitrage_flow"][0],
            operator0[1] + PREFUND[1] + last["arbitrage_flow"][1],
        )
        swaps = {genesis["operator_address"]: 0, genesis["trader_address"]: 0}
        for event in pool.events.Swap().get_logs(from_block=0):
            swaps[event["args"]["sender"]] += 1
        assert swaps == {  # every recorded swap on the chain exactly once, nothing else
            genesis["operator_address"]: sum(o["arbitrage"] is not None for o in outcomes),
            genesis["trader_address"]: sum(o["trade"]["side"] != "none" for o in outcomes),
        }
        distributor = contract("reward_distributor", "RewardDistributor")
        # both epochs run through the kills; in epoch 15 no strategy changes an action of this
        # policy (nothing to pay, nothing published), epoch 16 publishes
        assert recorded == [15, 16] and len(roots) >= 1
        for epoch in recorded:
            on_chain = "0x" + bytes(distributor.functions.epochRoot(epoch).call()).hex()
            assert on_chain == roots.get(epoch, "0x" + "00" * 32)
