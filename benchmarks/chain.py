"""Chain throughput: decision hashes logged and swaps executed per second, per backend.

Run on demand: `.venv/bin/python benchmarks/chain.py [--quick] [--backends embedded,anvil]`.
Prints a table (no assertions). For each backend: `DecisionLog.record` one hash per
transaction (with and without gas estimation) and `recordBatch` of 100 hashes, with gas per
decision (the log's first write, which starts its count and head from zero, is left out as a
warm-up); reading every logged hash back from the log's events as a verifier does
(`read_decision_log`), on that chain and on two fresh chains of one decision per transaction
(500 and 2,000 transactions; the embedded one in a chain file, as `agora run` keeps it), so
the time per decision shows how reading scales with the chain's length, each backend the
other's peer; swaps through `OnChainExecutor`; and, as the peer measured in the same run, the
same swap workload through the off-chain mirror (`agent.dex.amm`) with the ratio
mirror/on-chain.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import web3
from eth_utils import keccak
from web3 import Web3

from agent.audit.log_events import read_decision_log
from agent.chain.backends import AnvilBackend, ChainBackend, EmbeddedBackend, find_anvil
from agent.chain.contracts import load_artifact
from agent.chain.executor import OnChainExecutor
from agent.dex import amm
from agent.dex.amm import PoolState, Token

BATCH_SIZE = 100
RECORD_GAS_LIMIT = 150_000
BATCH_GAS_LIMIT = 1_000_000
RESERVE_BASE = 10_000 * 10**18
RESERVE_QUOTE = 30_000_000 * 10**6
MIRROR_MIN_TIME_S = 0.5


@dataclass(frozen=True)
class Counts:
    """How much work each measurement does."""

    records_estimated: int
    records: int
    batches: int
    swaps: int
    read_back_chains: tuple[int, ...]
    """Lengths (transactions of one decision each) of the fresh chains read back."""


FULL = Counts(
    records_estimated=60, records=300, batches=10, swaps=300, read_back_chains=(500, 2_000)
)
QUICK = Counts(records_estimated=15, records=60, batches=3, swaps=60, read_back_chains=(100, 400))


@dataclass(frozen=True)
class Row:
    """One line of the table."""

    backend: str
    operation: str
    count: int
    seconds: float
    gas_per_item: float | None
    unit: str = "decisions"

    @property
    def per_second(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else float("inf")


def decision_hashes(count: int, start: int = 0) -> list[bytes]:
    """Deterministic stand-ins for decision hashes."""
    return [keccak((start + i).to_bytes(32, "big")) for i in range(count)]


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


# ------------------------------------------------------------------ decision log


def bench_decision_log(backend: ChainBackend, counts: Counts) -> list[Row]:
    artifact = load_artifact("DecisionLog")
    address = Web3.to_checksum_address(
        backend.deploy(artifact.abi, artifact.bytecode, backend.operator)
    )
    log = backend.w3.eth.contract(address=address, abi=artifact.abi)
    backend.transact(log.functions.record(keccak(b"warm-up")))  # first write is dearer
    rows = []
    next_hash = 0

    def record_each(count: int, gas: int | None) -> list[int]:
        nonlocal next_hash
        hashes = decision_hashes(count, next_hash)
        next_hash += count
        return [backend.transact(log.functions.record(h), gas=gas)["gasUsed"] for h in hashes]

    seconds, gas_used = timed(lambda: record_each(counts.records_estimated, None))
    rows.append(Row(backend.name, "record, gas estimated", len(gas_used), seconds, _mean(gas_used)))
    seconds, gas_used = timed(lambda: record_each(counts.records, RECORD_GAS_LIMIT))
    rows.append(Row(backend.name, "record, fixed gas", len(gas_used), seconds, _mean(gas_used)))

    def record_batches() -> list[int]:
        nonlocal next_hash
        gas = []
        for _ in range(counts.batches):
            hashes = decision_hashes(BATCH_SIZE, next_hash)
            next_hash += BATCH_SIZE
            receipt = backend.transact(log.functions.recordBatch(hashes), gas=BATCH_GAS_LIMIT)
            gas.append(receipt["gasUsed"])
        return gas

    seconds, gas_used = timed(record_batches)
    rows.append(
        Row(
            backend.name,
            f"recordBatch of {BATCH_SIZE}, fixed gas",
            counts.batches * BATCH_SIZE,
            seconds,
            sum(gas_used) / (counts.batches * BATCH_SIZE),
        )
    )
    seconds, onchain = timed(lambda: read_decision_log(backend, address))
    assert onchain.inconsistency is None and len(onchain.hashes) == next_hash + 1
    rows.append(Row(backend.name, "read back from events", len(onchain.hashes), seconds, None))
    return rows


def bench_read_back(name: str, transactions: int) -> Row:
    """Log one decision per transaction on a fresh chain, then time reading them all back."""
    with fresh_backend(name) as backend:
        artifact = load_artifact("DecisionLog")
        address = Web3.to_checksum_address(
            backend.deploy(artifact.abi, artifact.bytecode, backend.operator)
        )
        log = backend.w3.eth.contract(address=address, abi=artifact.abi)
        for decision_hash in decision_hashes(transactions - 1):  # the deployment is one
            backend.transact(log.functions.record(decision_hash), gas=RECORD_GAS_LIMIT)
        seconds, onchain = timed(lambda: read_decision_log(backend, address))
    assert onchain.inconsistency is None and len(onchain.hashes) == transactions - 1
    operation = f"read back, {transactions:,}-tx chain"
    return Row(backend.name, operation, len(onchain.hashes), seconds, None)


@contextmanager
def fresh_backend(name: str) -> Iterator[ChainBackend]:
    """A new chain; the embedded one in a chain file in a temporary directory."""
    if name != "embedded":
        with AnvilBackend() as backend:
            yield backend
        return
    with tempfile.TemporaryDirectory() as state_dir, EmbeddedBackend(Path(state_dir)) as backend:
        yield backend


# ------------------------------------------------------------------ swaps


def swap_workload(count: int, seed: int = 7) -> list[tuple[Token, int]]:
    """Alternating buys and sells, sizes log-uniform from 0.001 % to 1 % of the reserve in."""
    rng = random.Random(seed)
    workload: list[tuple[Token, int]] = []
    for i in range(count):
        token_in: Token = "quote" if i % 2 == 0 else "base"
        reserve_in = RESERVE_QUOTE if token_in == "quote" else RESERVE_BASE
        fraction = 10 ** rng.uniform(-5, -2)
        workload.append((token_in, max(1, int(reserve_in * fraction))))
    return workload


def mirror_swaps(state: PoolState, workload: list[tuple[Token, int]], fee_bps: int) -> PoolState:
    for token_in, amount_in in workload:
        state = amm.swap_exact_in(state, token_in, amount_in, fee_bps).new_state
    return state


def bench_swaps(backend: ChainBackend, counts: Counts) -> tuple[list[Row], str]:
    token = load_artifact("MarketToken")
    pool = load_artifact("ConstantProductPool")
    operator = backend.operator
    base = Web3.to_checksum_address(backend.deploy(token.abi, token.bytecode, "Base", "BASE", 18))
    quote = Web3.to_checksum_address(backend.deploy(token.abi, token.bytecode, "USD", "USD", 6))
    address = Web3.to_checksum_address(backend.deploy(pool.abi, pool.bytecode, base, quote, 30))
    w3 = backend.w3
    for token_address in (base, quote):
        contract = w3.eth.contract(address=token_address, abi=token.abi)
        backend.transact(contract.functions.mint(operator, 2**100))
        backend.transact(contract.functions.approve(address, 2**256 - 1))
    pool_contract = w3.eth.contract(address=address, abi=pool.abi)
    backend.transact(pool_contract.functions.addLiquidity(RESERVE_BASE, RESERVE_QUOTE, operator))
    executor = OnChainExecutor(backend, address, base, quote)
    executor.swap_exact_in("quote", 10**6, 1)  # warm up (approval already standing)
    executor.swap_exact_in("base", 10**15, 1)
    start_state = executor.reserves()
    workload = swap_workload(counts.swaps)

    def run_on_chain() -> list[int]:
        return [executor.swap_exact_in(t, a, 1).gas_used for t, a in workload]

    seconds, gas_used = timed(run_on_chain)
    on_chain = Row(
        backend.name, "swap (OnChainExecutor)", len(workload), seconds, _mean(gas_used), "swaps"
    )
    final_state = mirror_swaps(start_state, workload, executor.fee_bps)
    parity = "ok" if final_state == executor.reserves() else "BROKEN"
    repeats, mirror_seconds = 0, 0.0
    while mirror_seconds < MIRROR_MIN_TIME_S:
        elapsed, _ = timed(lambda: mirror_swaps(start_state, workload, executor.fee_bps))
        mirror_seconds += elapsed
        repeats += 1
    mirror = Row(
        backend.name, "swap (amm mirror)", repeats * len(workload), mirror_seconds, None, "swaps"
    )
    return [on_chain, mirror], parity


# ------------------------------------------------------------------ report


def open_backend(name: str) -> ChainBackend:
    return EmbeddedBackend() if name == "embedded" else AnvilBackend()


def environment() -> str:
    try:
        anvil = subprocess.run(
            [str(find_anvil()), "--version"], capture_output=True, text=True, check=False
        ).stdout.splitlines()[0]
    except Exception as error:  # informational only
        anvil = f"anvil unavailable ({error})"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"python {platform.python_version()}, web3 {web3.__version__}, {anvil}; "
        f"{os.cpu_count()} CPUs, load average {load}"
    )


def print_read_back(rows: list[Row], names: list[str], chains: tuple[int, ...]) -> None:
    """One line per chain length (the backends side by side), one per backend (the scaling)."""
    seconds = {
        (row.backend, length): row.seconds
        for row in rows
        for length in chains
        if row.operation == f"read back, {length:,}-tx chain"
    }
    for length in chains:
        figures = " vs ".join(f"{name} {seconds[name, length]:.2f} s" for name in names)
        print(f"read back {length - 1:,} decisions from events ({length:,}-tx chain): {figures}")
    shortest, longest = chains[0], chains[-1]
    growth = longest / shortest
    for name in names:
        took = seconds[name, longest] / seconds[name, shortest]
        print(
            f"{name}: a {growth:.0f}x longer chain reads back in {took:.1f}x the time "
            f"(linear {growth:.0f}x, quadratic {growth**2:.0f}x)"
        )


def print_table(rows: list[Row], ratios: dict[str, float], parity: dict[str, str]) -> None:
    header = (
        f"{'backend':<9} {'operation':<30} {'count':>7} {'seconds':>8} {'per second':>12} "
        f"{'gas each':>10}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        gas = f"{row.gas_per_item:,.0f}" if row.gas_per_item is not None else "-"
        rate = f"{row.per_second:,.1f}"
        print(
            f"{row.backend:<9} {row.operation:<30} {row.count:>7,} {row.seconds:>8.2f} "
            f"{rate:>12} {gas:>10}"
        )
    print()
    for name, ratio in ratios.items():
        print(
            f"{name}: the mirror runs {ratio:,.0f}x as many swaps per second as the chain "
            f"(same workload; final reserves {parity[name]})"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run (about 1/5)")
    parser.add_argument(
        "--backends", default="embedded,anvil", help="comma-separated: embedded, anvil"
    )
    args = parser.parse_args(argv)
    counts = QUICK if args.quick else FULL
    names = [name.strip() for name in args.backends.split(",") if name.strip()]
    unknown = set(names) - {"embedded", "anvil"}
    if unknown:
        parser.error(f"unknown backends {sorted(unknown)}: expected embedded, anvil")
    print(f"# chain benchmark ({'quick' if args.quick else 'full'}): {environment()}")
    rows: list[Row] = []
    ratios: dict[str, float] = {}
    parity: dict[str, str] = {}
    started = time.perf_counter()
    for name in names:
        with open_backend(name) as backend:
            rows += bench_decision_log(backend, counts)
            swap_rows, parity[name] = bench_swaps(backend, counts)
            rows += swap_rows
            ratios[name] = swap_rows[1].per_second / swap_rows[0].per_second
        rows += [bench_read_back(name, length) for length in counts.read_back_chains]
    print_table(rows, ratios, parity)
    print()
    print_read_back(rows, names, counts.read_back_chains)
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0


def _mean(values: list[int]) -> float:
    return sum(values) / len(values)


if __name__ == "__main__":
    sys.exit(main())
