"""Sandboxed signal calls per second, warm and cold: a fresh process per call either way.

    .venv/bin/python benchmarks/sandbox.py              # 10 calls per row on 2,000 bars
    .venv/bin/python benchmarks/sandbox.py --calls 20 --bars 10000

Rows, all computing the same small plugin file (a squashed 12-bar return) on the same candles:

- `bubblewrap, warm`: `run_plugin` as every path runs it (the default): each call is a fresh
  confined process forked from the plugin's zygote (new mount, PID and IPC namespaces, a fresh
  tmpfs, no capabilities), which loads the plugin, computes and replies. The zygote's own
  start (one cold start) is paid by a call before the timed ones and shown apart.
- `bubblewrap, cold`: the same without a zygote (`SandboxLimits(warm_start=False)`): bwrap
  starts the namespaces, the child imports numpy and pandas from the read-only environment,
  loads the plugin, computes, replies; the parent checks the reply.
- `none (unsafe)`: the same child without bubblewrap, the cost the sandbox adds on top.
- `in-process (trusted)`: the same class run through `run_trusted`, the floor.

Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from agent.config import SyntheticSettings
from agent.market.synthetic import generate
from agent.plugins.sandbox import PluginLocation, SandboxLimits, run_plugin, run_trusted

PLUGIN = """
import numpy as np
import pandas as pd

from agent.plugins import Strategy


class CloseMomentum(Strategy):
    name = "close-momentum"
    warmup_bars = 12

    def signal(self, candles: pd.DataFrame) -> pd.Series:
        return np.tanh(candles["close"].pct_change(12) * 20.0)
"""


def sandboxed(
    path: Path, candles: pd.DataFrame, mode: str, calls: int, warm_start: bool = False
) -> float:
    location = PluginLocation("file", str(path), "CloseMomentum")
    limits = SandboxLimits(sandbox=mode, warm_start=warm_start)
    started = time.perf_counter()
    for _ in range(calls):
        (result,) = run_plugin(
            location, [candles], name="close-momentum", warmup_bars=12, limits=limits
        )
        assert result.ok, result.reason
    return time.perf_counter() - started


def trusted(path: Path, candles: pd.DataFrame, calls: int) -> float:
    namespace: dict[str, object] = {}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    strategy_cls = namespace["CloseMomentum"]
    started = time.perf_counter()
    for _ in range(calls):
        (result,) = run_trusted(strategy_cls, [candles])  # type: ignore[arg-type]
        assert result.ok, result.reason
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--bars", type=int, default=2_000)
    args = parser.parse_args()
    bwrap = subprocess.run(["bwrap", "--version"], capture_output=True, text=True).stdout.strip()
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, pandas {pd.__version__}, "
        f"{bwrap or 'no bwrap'}; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; "
        f"{args.calls} calls per row on {args.bars:,} synthetic 1h bars"
    )
    candles = generate(SyntheticSettings(seed=1, bars=args.bars), "1h").candles
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "close_momentum.py"
        path.write_text(PLUGIN)
        first = sandboxed(path, candles, "bubblewrap", 1, warm_start=True)
        rows = [
            ("bubblewrap, warm", sandboxed(path, candles, "bubblewrap", args.calls, True)),
            ("bubblewrap, cold", sandboxed(path, candles, "bubblewrap", args.calls)),
            ("none (unsafe)", sandboxed(path, candles, "none", args.calls)),
            ("in-process (trusted)", trusted(path, candles, args.calls)),
        ]
    print(f"first warm call (starts the zygote): {1000 * first:.0f} ms")
    print(f"{'row':<22} {'calls':>6} {'seconds':>8} {'per second':>11} {'ms each':>8}")
    for label, seconds in rows:
        print(
            f"{label:<22} {args.calls:>6} {seconds:>8.2f} {args.calls / seconds:>11.1f} "
            f"{1000 * seconds / args.calls:>8.1f}"
        )


if __name__ == "__main__":
    main()
