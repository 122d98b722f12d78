"""What the benchmark scripts share: the report's first line, timing, tables and target verdicts.

A target compares an Agora figure with a peer measured in the same run (`ratio_target`: Agora
over peer, wanted at least some ratio) or with a fixed limit (`limit_target`: seconds, wanted at
most the limit). Each becomes one row of the targets table, with a `met` / `NOT met` verdict;
nothing is asserted.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def print_header(distributions: Sequence[str], what: str) -> None:
    """Print the versions of python and `distributions`, the CPU count, the load, and `what`."""
    versions = [f"python {platform.python_version()}"]
    for name in distributions:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    print(
        f"{', '.join(versions)}; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; {what}",
        flush=True,
    )


def print_kernel_compile() -> None:
    """Print the rollout kernel's compile time and its load from the on-disk cache.

    Two fresh processes share an empty cache directory (NUMBA_CACHE_DIR): the first compiles
    every kernel function (what the first command after an install pays, once), the second
    loads them (what every later process pays). Then this process warms its own kernel.
    """
    import subprocess
    import sys
    import tempfile

    from agent.env import kernel

    probe = "from agent.env import kernel; print(kernel.ensure_compiled())"
    root = str(Path(__file__).resolve().parents[1])
    seconds = []
    with tempfile.TemporaryDirectory(prefix="agora-numba-") as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache, "PYTHONPATH": root}
        for _ in range(2):
            done = subprocess.run(
                [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
            )
            seconds.append(float(done.stdout.strip().splitlines()[-1]))
    kernel.ensure_compiled()
    print(
        f"rollout kernel (Numba): compiled in {seconds[0]:.2f} s once, then loaded from its "
        f"cache in {seconds[1]:.2f} s per process",
        flush=True,
    )


def timed(run: Callable[[], T]) -> tuple[float, T]:
    """Return (wall-clock seconds, result) of one call of `run`."""
    started = time.perf_counter()
    out = run()
    return time.perf_counter() - started, out


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print rows under headers: the first column left-aligned, the others right-aligned."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print(
        "  ".join(
            _align(str(h), w, i) for i, (h, w) in enumerate(zip(headers, widths, strict=True))
        )
    )
    for row in cells:
        print("  ".join(_align(c, w, i) for i, (c, w) in enumerate(zip(row, widths, strict=True))))


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _align(text: str, width: int, column: int) -> str:
    return f"{text:<{width}}" if column == 0 else f"{text:>{width}}"


@dataclass(frozen=True)
class Target:
    """One target of the benchmark and how this run fared against it.

    Attributes:
        name: what is compared (e.g. 'raw env steps/s').
        agora: Agora's figure.
        peer: the peer's figure (None for a fixed limit).
        peer_name: the peer (or 'limit').
        ratio: agora / peer (None for a fixed limit).
        wanted: the target, as text ('>= 1.0x', '<= 2 s').
        met: whether this run met it.
    """

    name: str
    agora: float
    peer: float | None
    peer_name: str
    ratio: float | None
    wanted: str
    met: bool


def ratio_target(name: str, agora: float, peer_name: str, peer: float, wanted: float) -> Target:
    """Return a higher-is-better target: met when agora / peer >= `wanted`."""
    ratio = agora / peer if peer > 0 else float("inf")
    return Target(name, agora, peer, peer_name, ratio, f">= {wanted:.1f}x", ratio >= wanted)


def limit_target(name: str, seconds: float, limit_s: float) -> Target:
    """Return a time target: met when `seconds` <= `limit_s`."""
    return Target(name, seconds, None, "limit", None, f"<= {limit_s:g} s", seconds <= limit_s)


def print_targets(targets: Sequence[Target], *, issue: int = 16) -> None:
    """Print the targets table (of `issue`): figure, peer, ratio, wanted, verdict."""
    print()
    print(f"targets (issue {issue}):")
    print_table(
        ("target", "agora", "peer", "peer figure", "ratio", "wanted", "verdict"),
        [
            (
                t.name,
                t.agora,
                t.peer_name,
                "-" if t.peer is None else t.peer,
                "-" if t.ratio is None else f"{t.ratio:.2f}x",
                t.wanted,
                "met" if t.met else "NOT met",
            )
            for t in targets
        ],
    )
