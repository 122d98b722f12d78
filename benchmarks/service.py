"""Service latency and throughput: one bar from tick to logged, per chain backend.

Run on demand: `.venv/bin/python benchmarks/service.py [--quick] [--backends embedded,anvil]`.
Prints a table (no assertions). A real service runtime (store, replay of the synthetic market,
a small PPO model trained here, the six shipped strategies) runs on each backend:

- `decided + logged`: from the moment a bar is available to its decision recorded (intent, audit
  trail) and its JSON line written: features, signals, policy, pool mirror, SQLite.
- `... + on-chain`: the whole tick of that bar: the above, then the arbitrage and the trader's
  swap sent through the pool contract and the decision hash confirmed on the DecisionLog
  (`service.decision_batch_size` 1).
- `sustained replay`: bars per second with the replay revealing every bar at once.

The peer, measured in the same run: the decision alone with no chain at all (`decided +
logged` on a runtime whose chain is never connected), so the chain's share is visible.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import web3

from agent.config import Settings
from agent.service import jobs
from agent.service.runtime import ServiceRuntime
from agent.service.telemetry import ServiceLog
from agent.store import Store

HISTORY_BARS = 600


@dataclass(frozen=True)
class Row:
    """One line of the table."""

    backend: str
    measure: str
    count: int
    p50_ms: float | None
    p99_ms: float | None
    per_second: float | None


def settings_for(data_dir: Path, backend: str, bars: int) -> Settings:
    return Settings.model_validate(
        {
            "data": {"dir": str(data_dir)},
            "market": {"synthetic": {"bars": bars, "seed": 7}},
            "chain": {"backend": backend},
            "agent": {"timesteps": 512, "n_steps": 256, "eval_every_steps": 512},
            "rewards": {"epoch_bars": 100_000},
            "service": {
                "chain": backend,
                "start_bar": HISTORY_BARS,
                "replay_speed": 0.0,
                "bootstrap_model": False,
                "pay_rewards": False,
                "port": 0,
            },
        }
    )


def train_model(template: Path, bars: int) -> None:
    """Train and promote a small PPO model on the history (once, copied for each backend)."""
    from agent.learn.dataset import dataset_from_candles
    from agent.learn.registry import promote
    from agent.learn.train import train
    from agent.service.feeds import make_feed

    settings = settings_for(template, "embedded", bars)
    with Store(settings.data.database_path) as store:
        feed = make_feed(store, settings)
        history = feed.history(HISTORY_BARS)
        store.write_candles(feed.key, history)
        dataset = dataset_from_candles(history, settings, key=feed.key, store=store)
        report = train(settings, store, dataset=dataset)
        promote(store, settings, report.runs[0].model_id)


def copy_tree(source: Path, target: Path) -> None:
    import shutil

    shutil.copytree(source, target)


def percentile(values: list[float], q: float) -> float:
    data = sorted(values)
    return data[min(len(data) - 1, int(q * len(data)))]


def start(data_dir: Path, backend: str, bars: int, *, chain: bool = True) -> ServiceRuntime:
    runtime = ServiceRuntime(
        settings_for(data_dir, backend, bars), log=ServiceLog(stream=io.StringIO())
    )
    if not chain:  # the chain is never reached: the peer decides and logs only
        runtime.connect_chain = lambda: False  # type: ignore[method-assign]
        runtime._connect_chain = lambda: False  # type: ignore[method-assign]
    runtime.start()
    return runtime


def timed_ticks(runtime: ServiceRuntime, count: int) -> tuple[list[float], list[float]]:
    """Run `count` ticks of one bar; return (decision latencies, whole-tick latencies) in s."""
    decided: list[float] = []
    whole: list[float] = []
    for _ in range(count):
        before = runtime.metrics.get("agora_decision_latency_seconds_sum")
        started = time.perf_counter()
        result = jobs.tick(runtime, max_bars=1)
        whole.append(time.perf_counter() - started)
        if result.bars != 1:
            raise RuntimeError(f"the tick decided {result.bars} bars: {result.detail}")
        decided.append(runtime.metrics.get("agora_decision_latency_seconds_sum") - before)
    return decided, whole


def sustained(runtime: ServiceRuntime, count: int) -> float:
    """Return bars per second over `count` bars decided by repeated ticks (all revealed)."""
    started = time.perf_counter()
    done = 0
    while done < count:
        done += jobs.tick(runtime, max_bars=count - done).bars
    return count / (time.perf_counter() - started)


def measure(template: Path, root: Path, backend: str, bars: int, n: int) -> list[Row]:
    data_dir = root / backend
    copy_tree(template, data_dir)
    runtime = start(data_dir, backend, bars)
    try:
        decided, whole = timed_ticks(runtime, n)
        rate = sustained(runtime, n)
    finally:
        runtime.close()
    return [
        row(backend, "decided + logged", decided),
        row(backend, "decided + logged + on-chain", whole),
        Row(backend, "sustained replay (bars/s)", n, None, None, rate),
    ]


def peer(template: Path, root: Path, bars: int, n: int) -> list[Row]:
    data_dir = root / "no-chain"
    copy_tree(template, data_dir)
    runtime = start(data_dir, "embedded", bars, chain=False)
    try:
        decided, _ = timed_ticks(runtime, n)
    finally:
        runtime.close()
    return [row("none (peer)", "decided + logged", decided)]


def row(backend: str, measure_name: str, values: list[float]) -> Row:
    return Row(
        backend,
        measure_name,
        len(values),
        percentile(values, 0.5) * 1000,
        percentile(values, 0.99) * 1000,
        len(values) / sum(values),
    )


def header() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"python {platform.python_version()}, web3 {web3.__version__}; "
        f"{os.cpu_count()} CPUs, load average {load}"
    )


def render(rows: list[Row]) -> str:
    lines = [
        f"{'backend':<12} {'measure':<30} {'count':>6} {'p50 ms':>9} {'p99 ms':>9} {'per s':>9}",
    ]

    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    for r in rows:
        lines.append(
            f"{r.backend:<12} {r.measure:<30} {r.count:>6} {fmt(r.p50_ms):>9} "
            f"{fmt(r.p99_ms):>9} {fmt(r.per_second):>9}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer bars (about 1/4)")
    parser.add_argument(
        "--backends", default="embedded,anvil", help="comma-separated: embedded, anvil"
    )
    args = parser.parse_args(argv)
    n = 50 if args.quick else 200
    bars = HISTORY_BARS + 2 * n + 1
    print(header())
    with tempfile.TemporaryDirectory(prefix="agora-bench-service-") as tmp:
        root = Path(tmp)
        template = root / "template"
        started = time.perf_counter()
        train_model(template, bars)
        print(
            f"trained a PPO model on {HISTORY_BARS} bars in {time.perf_counter() - started:.1f} s"
        )
        rows: list[Row] = []
        measures: list[Callable[[], list[Row]]] = [lambda: peer(template, root, bars, n)]
        for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
            measures.append(lambda b=backend: measure(template, root, b, bars, n))  # type: ignore[misc]
        for run in measures:
            rows.extend(run())
    print(render(rows))
    by: dict[tuple[str, str], Any] = {(r.backend, r.measure): r for r in rows}
    base = by.get(("none (peer)", "decided + logged"))
    for backend in args.backends.split(","):
        chain_row = by.get((backend.strip(), "decided + logged + on-chain"))
        if base is not None and chain_row is not None and base.p50_ms:
            print(
                f"{backend.strip()}: the chain adds {chain_row.p50_ms - base.p50_ms:.1f} ms per "
                f"bar (p50): a bar takes {chain_row.p50_ms / base.p50_ms:.1f}x the decision alone"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
