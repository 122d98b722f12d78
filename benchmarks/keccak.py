"""keccak256 throughput: hashes per second of each Python binding, side by side.

    .venv/bin/python benchmarks/keccak.py                 # about 10 s
    .venv/bin/python benchmarks/keccak.py --seconds 0.1   # quicker, noisier

Rows, each on the same random inputs (every binding's digests are first checked against
`eth_utils.keccak`; a binding that differs is reported as such):

- `agora keccak256`: `agent.audit.record.keccak256`, what decision hashes, chain heads and
  observation digests use (tiny-keccak, with a bytes check).
- `tiny-keccak`: `tiny_keccak.keccak256` called directly (Rust, prebuilt abi3 wheels).
- `safe-pysha3`: `sha3.keccak_256(data).digest()` (C; eth-hash's `pysha3` backend uses it).
- `pycryptodome`: `Crypto.Hash.keccak.new(data=..., digest_bits=256).digest()` (eth-hash's
  first choice, which eth_utils uses when nothing else is configured).
- `pycryptodomex`: the same code as pycryptodome under the `Cryptodome` name.
- `eth_hash.auto`: `eth_hash.auto.keccak` (backend dispatch, then pycryptodome here).
- `eth_utils.keccak`: what Agora used before (argument conversion, then eth_hash.auto).

Columns: hashes per second at 64 bytes (a chain-head step), 200 bytes and 1,216 bytes (the ABI
encoding of the audit tests' sample decision record), and µs per hash at 200 bytes. A binding
that is not installed is listed as such (`make bench` installs the `bench` extra, which has
them all). Below the table: one `decision_hash`, split into its ABI encoding and its keccak.
Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eth_utils import keccak as eth_utils_keccak

from agent.audit.record import decision_hash, encode, keccak256
from tests.unit.audit.conftest import sample_record

Hasher = Callable[[bytes], bytes]
SIZES = (64, 200, 1_216)
INPUTS = 256


def _optional(module: str, make: Callable[[Any], Hasher]) -> Hasher | None:
    try:
        return make(importlib.import_module(module))
    except ImportError:
        return None


def _pycryptodome(module: Any) -> Hasher:
    return lambda data: module.new(data=data, digest_bits=256).digest()


def bindings() -> dict[str, Hasher | None]:
    """Return every candidate binding by name (None where it is not installed)."""
    return {
        "agora keccak256": keccak256,
        "tiny-keccak": _optional("tiny_keccak", lambda m: m.keccak256),
        "safe-pysha3": _optional("sha3", lambda m: lambda data: m.keccak_256(data).digest()),
        "pycryptodome": _optional("Crypto.Hash.keccak", _pycryptodome),
        "pycryptodomex": _optional("Cryptodome.Hash.keccak", _pycryptodome),
        "eth_hash.auto": _optional("eth_hash.auto", lambda m: m.keccak),
        "eth_utils.keccak": eth_utils_keccak,
    }


def hashes_per_second(hasher: Hasher, inputs: list[bytes], seconds: float) -> float:
    """Return the best of several timed passes over `inputs`, in hashes per second."""
    best = float("inf")
    deadline = time.perf_counter() + seconds
    while True:
        started = time.perf_counter()
        for data in inputs:
            hasher(data)
        best = min(best, time.perf_counter() - started)
        if time.perf_counter() > deadline:
            return len(inputs) / best


def header() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"python {platform.python_version()}; {os.cpu_count()} CPUs, load average {load}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.4, help="timing per binding and size")
    args = parser.parse_args()
    print(header())
    rng = random.Random(16)
    inputs = {size: [rng.randbytes(size) for _ in range(INPUTS)] for size in SIZES}
    columns = "".join(f"{f'{size} B /s':>14}" for size in SIZES)
    print(f"{'binding':<18}{columns}{'µs @ 200 B':>12}  equal to eth_utils")
    for name, hasher in bindings().items():
        if hasher is None:
            print(f"{name:<18}{'not installed':>14}")
            continue
        same = all(
            hasher(data) == eth_utils_keccak(data) for batch in inputs.values() for data in batch
        )
        rates = {size: hashes_per_second(hasher, inputs[size], args.seconds) for size in SIZES}
        figures = "".join(f"{rates[size]:>14,.0f}" for size in SIZES)
        print(f"{name:<18}{figures}{1e6 / rates[200]:>12.2f}  {'ok' if same else 'DIFFERS'}")

    record = sample_record()
    encoded = encode(record)
    whole = hashes_per_second(lambda _: decision_hash(record).encode(), [b""] * 200, args.seconds)
    abi = hashes_per_second(lambda _: encode(record), [b""] * 200, args.seconds)
    digest = hashes_per_second(keccak256, [encoded] * 200, args.seconds)
    print(
        f"\none decision_hash ({len(encoded):,} bytes encoded): {1e6 / whole:.1f} µs = "
        f"ABI encoding {1e6 / abi:.1f} µs + keccak256 {1e6 / digest:.2f} µs"
    )


if __name__ == "__main__":
    main()
