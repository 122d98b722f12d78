"""Every case of the hostile plugin corpus is refused or contained with a specific reason, and
the process that asked for the signal is unharmed afterwards (the `healthy` fixture)."""

from __future__ import annotations

import importlib.util
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agent.config import StrategiesSettings
from agent.plugins.discovery import DiscoveredStrategy, StrategyStatus, discover_file
from agent.plugins.sandbox import SandboxLimits, run_trusted, scrubbed_environment
from agent.plugins.signals import compute_signals
from agent.plugins.validation import validate
from strategies import SHIPPED, MACrossover
from tests.integration.plugins.conftest import HOSTILE_DIR, MEMORY_MB, WALL_S

pytestmark = pytest.mark.usefixtures("healthy")


@dataclass(frozen=True)
class Outcome:
    reason: str | None
    values: np.ndarray
    mask: np.ndarray


def run(
    item: DiscoveredStrategy,
    candles: pd.DataFrame,
    limits: SandboxLimits,
    good_plugin: DiscoveredStrategy,
    **params: object,
) -> Outcome:
    """Compute the hostile strategy's signal next to a good plugin and a shipped strategy, in
    one `compute_signals` call, and check that the good ones were not disturbed."""
    assert item.ok, item.error
    matrix = compute_signals(
        [item.with_params(**params), good_plugin, MACrossover], candles, key=None, limits=limits
    )
    assert set(matrix.available) >= {"volume-momentum", "ma-crossover"}
    for name in ("volume-momentum", "ma-crossover"):
        values, mask = matrix.column(name)
        assert mask[40:].all() and np.all(np.abs(values) <= 1.0)
    values, mask = matrix.column(item.name)
    return Outcome(matrix.reasons.get(item.name), values, mask)


def test_infinite_loop_is_killed_at_the_wall_clock_deadline(
    corpus: dict[str, DiscoveredStrategy],
    candles: pd.DataFrame,
    limits: SandboxLimits,
    good_plugin: DiscoveredStrategy,
) -> None:
    started = time.monotonic()
    result = run(corpus["infinite-loop"], candles, limits, good_plugin)
    assert result.reason == f"timed out after {WALL_S:g} s"
    assert not result.mask.any() and not result.values.any()
    assert WALL_S <= time.monotonic() - started < WALL_S + 3


def test_infinite_loop_is_stopped_by_the_cpu_limit(
    corpus: dict[str, DiscoveredStrategy], candles: pd.DataFrame, good_plugin: DiscoveredStrategy
) -> None:
    limits = SandboxLimits(cpu_seconds=1, memory_mb=MEMORY_MB, wall_seconds=20)
    started = time.monotonic()
    result = run(corpus["infinite-loop"], candles, limits, good_plugin)
    assert result.reason == "exceeded the CPU-time limit of 1 s"
    assert time.monotonic() - started < 5


def test_ten_gigabyte_allocation_hits_the_memory_limit(
    corpus: dict[str, DiscoveredStrategy],
    candles: pd.DataFrame,
    limits: SandboxLimits,
    good_plugin: DiscoveredStrategy,
) -> None:
    result = run(corpus["huge-allocation"], candles, limits, good_plugin)
    assert result.reason is not None
    assert result.reason.startswith(f"exceeded the memory limit of {MEMORY_MB} MB")
    assert "10.0 GiB" in result.reason


def test_secrets_in_the_environment_never_reach_the_plugin(
    corpus: dict[str, DiscoveredStrategy],
    candles: pd.DataFrame,
    limits: SandboxLimits,
    good_plugin: DiscoveredStrategy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AGORA_PRIVATE_KEY", "0x" + "11" * 32)
    monkeypatch.setenv("EXCHANGE_SECRET", "hunter2")
    monkeypatch.setenv("AGORA__chain__rpc_url", "http://secret.example")
    # Positive control: the same code, run in this process, does see them.
    spec = importlib.util.spec_from_file_location("reads_secrets", HOSTILE_DIR / "reads_secrets.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (control,) = run_trusted(module.ReadsSecrets, [candles])
    assert control.values is not None and control.values[0] == 1.0

    result = run(corpus["reads-secrets"], candles, limits, good_plugin)
    assert result.reason is None and result.mask.all()
    assert result.values[0] == -1.0, "the sandboxed plugin saw a secret-looking variable"
    visible = round(result.values[1] * 100)
    # PATH LANG HOME TMPDIR + 3 BLAS caps, and PWD, which bubblewrap sets
    assert visible == len(scrubbed_environment("/x")) + 1 == 8


def test_write_outside_its_directory_is_refused_and_named(
    corpus: dict[str, DiscoveredStrategy],
    candles: pd.DataFrame,
    limits: SandboxLimits,
    good_plugin: DiscoveredStrategy,
) -> None:
    target = Path("/var/tmp") / f"agora-pwned-{uuid.uuid4().hex}.txt"
    try:
        result = run(corpus["writes-outside"], candles, limits, good_plugin, target=str(target))
        # The plugin swallowed the error and returned zeros: the audit hook's record still
        # fails the run (defence in depth; the read-only mount is what stopped the write).
        assert not result.mask.any()
        assert result.reason == f"tried to write {target} outside its directory"
        assert not target.exists()
    finally:
        target.unlink(missing_ok=True)


def test_a_write_to_the_hosts_tmp_never_reaches_the_host(
    corpus: dict[str, DiscoveredStrategy],
    candles: pd.DataFrame,
    limits: SandboxLimits,
    good_plugin: DiscoveredStrategy,
    tmp_path: Path,
) -> None:
    target = tmp_path / "pwned.txt"  # under /tmp: read-only or absent inside the sandbox
    run(corpus["writes-outside"], candles, limits, good_plugin, target=str(target))
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_starting_a_process_is_refused(
    corpus: dict[str, DiscoveredStrategy],
    candles: pd.DataFrame,
    limits: SandboxLimits,
    good_plugin: DiscoveredStrategy,
    tmp_path: Path,
) -> None:
    target = tmp_path / "spawned.txt"
    result = run(corpus["spawns-process"], candles, limits, good_plugin, target=str(target))
    assert result.reason == "tried to start a process (os.system)"
    assert not target.exists()


def test_exception_is_reported_with_type_message_and_line(
    corpus: dict[str, DiscoveredStrategy],
    candles: pd.DataFrame,
    limits: SandboxLimits,
    good_plugin: DiscoveredStrategy,
) -> None:
    result = run(corpus["raises"], candles, limits, good_plugin)
    assert (
        result.reason == "raised ValueError: the strategy exploded on purpose (raises.py, line 13)"
    )


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        (
            "returns-nan",
            "strategy 'returns-nan' returned NaN at bar 50, after its warm-up of 10 bars",
        ),
        ("out-of-range", "strategy 'out-of-range' returned 2.5, outside [-1, 1]"),
        (
            "wrong-length",
            "strategy 'wrong-length' returned 299 values for 300 candles "
            "(one value per candle is required)",
        ),
    ],
)
def test_malformed_output_is_refused_by_the_parent(
    corpus: dict[str, DiscoveredStrategy],
    candles: pd.DataFrame,
    limits: SandboxLimits,
    good_plugin: DiscoveredStrategy,
    name: str,
    reason: str,
) -> None:
    result = run(corpus[name], candles, limits, good_plugin)
    assert result.reason == reason
    assert not result.mask.any()


@pytest.mark.parametrize("name", ["lookahead-shift", "lookahead-centered"])
def test_look_ahead_is_caught_and_the_first_peeking_bar_named(
    corpus: dict[str, DiscoveredStrategy], hostile_settings: StrategiesSettings, name: str
) -> None:
    report = validate(corpus[name], hostile_settings)
    assert not report.passed
    assert [c.name for c in report.failures] == ["causality"]
    message = report.check("causality").message
    warmup = corpus[name].info.warmup_bars  # type: ignore[union-attr]
    first_cut = max(warmup, 1)
    # shift(-1) peeks one bar ahead: the first cut's own bar changes; a centred 21-bar window
    # peeks 10 bars ahead: the first bar within 10 of the first cut changes.
    bar = first_cut if name == "lookahead-shift" else first_cut - 9
    assert message.startswith(
        f"looks ahead: its signal at bar {bar} changed when the candles after bar {first_cut} "
        "were removed"
    ), message


def test_renamed_copy_of_a_shipped_strategy_is_refused_as_a_copy(
    corpus: dict[str, DiscoveredStrategy], hostile_settings: StrategiesSettings
) -> None:
    report = validate(corpus["totally-original-trend"], hostile_settings, registered=SHIPPED)
    assert [c.name for c in report.failures] == ["originality"]
    message = report.check("originality").message
    assert message.startswith(
        "its signal is explained by the registered strategies (R² 1.000 on the reference data, "
        "limit 0.8, lags 0-3): ma-crossover (1.000 alone), "
    ), message
    assert message.endswith(": refused as a copy")


def test_module_that_fails_to_import_is_listed_as_load_failed(
    corpus: dict[str, DiscoveredStrategy], candles: pd.DataFrame
) -> None:
    item = corpus["import_error"]
    assert item.status is StrategyStatus.LOAD_FAILED
    source = (HOSTILE_DIR / "import_error.py").read_text().splitlines()
    line = source.index("import agora_nonexistent_dependency  # noqa: F401") + 1
    assert item.error is not None and item.error.startswith(
        "failed to import: ModuleNotFoundError: No module named 'agora_nonexistent_dependency' "
        f"(import_error.py, line {line}); the sandbox sees only the plugin's own file or package"
    )
    matrix = compute_signals([item], candles, key=None)
    assert not matrix.mask.any()
    assert matrix.reasons["import_error"].startswith("LOAD FAILED: failed to import")


def test_module_with_a_syntax_error_is_listed_as_load_failed(tmp_path: Path) -> None:
    path = tmp_path / "broken_syntax.py"
    path.write_text(
        "from agent.plugins import Strategy\n\n\nclass Broken(Strategy)\n    name = 'broken'\n"
    )
    (item,) = discover_file(path)
    assert item.status is StrategyStatus.LOAD_FAILED
    assert item.error == f"failed to import: SyntaxError: expected ':' ({path}, line 4)"


def test_a_mixed_batch_masks_every_hostile_strategy_and_keeps_the_good_ones(
    corpus: dict[str, DiscoveredStrategy],
    good_plugin: DiscoveredStrategy,
    candles: pd.DataFrame,
    limits: SandboxLimits,
) -> None:
    hostile = [item for item in corpus.values() if item.name != "reads-secrets"]
    started = time.monotonic()
    matrix = compute_signals([MACrossover, good_plugin, *hostile], candles, key=None, limits=limits)
    assert time.monotonic() - started < WALL_S + 8
    assert set(matrix.available) == {
        "ma-crossover",
        "volume-momentum",
        "totally-original-trend",
    }
    assert set(matrix.reasons) == {item.name for item in hostile} - set(matrix.available)
    for name in ("lookahead-shift", "lookahead-centered"):  # valid output, but caught peeking
        assert matrix.reasons[name].startswith("quarantined: looks ahead: its signal at bar ")
    for name in matrix.reasons:
        values, mask = matrix.column(name)
        assert not mask.any() and not values.any()
    assert matrix.reasons["infinite-loop"] == f"timed out after {WALL_S:g} s"
    good_values, good_mask = matrix.column("volume-momentum")
    assert good_mask[12:].all() and not good_mask[:12].any()
    assert np.all(np.abs(good_values) <= 1.0)
