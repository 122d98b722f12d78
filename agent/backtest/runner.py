"""Run a scenario end to end: data, signals, policies, engine, metrics, outputs, store.

`run_scenario` is the library call behind `agora backtest`. It loads the candles, computes
features and every strategy's signal once (`agent.plugins.signals.compute_signals`), runs the
policy under test, every strategy alone and the baselines over the same bars with the same
costs, and returns a `BacktestRun`; `write_outputs` writes the results JSON and the HTML
report and records the run in the store.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from agent.backtest import engine, report
from agent.backtest.engine import BacktestConfig, BacktestResult, ModelPolicy, Policy
from agent.backtest.metrics import signal_correlation
from agent.backtest.onchain import OnChainRun
from agent.backtest.report import BacktestRun, RunMetadata
from agent.backtest.scenario import Scenario
from agent.compute import Backend
from agent.config import DexSettings, Settings
from agent.dex.pool import PoolConfig
from agent.env.trading_env import EnvConfig, MarketData
from agent.errors import ChainError, ConfigError, DataError, ModelError, UsageError
from agent.market.data import check_time_range
from agent.market.schema import (
    SeriesKey,
    bars_per_year,
    format_time_ms,
    parse_time_ms,
    timeframe_ms,
)
from agent.store import Store

ModelLoader = Callable[[str], ModelPolicy]
"""Model id (or 'live') -> the trained policy, ready to backtest."""
StageProgress = Callable[[str, int, int], None]
"""Called with (stage label, done, total)."""


@dataclass(frozen=True)
class PreparedData:
    """The market of a scenario, ready for the engine.

    Attributes:
        candles: the candles loaded (warm-up included).
        data: features and signals over those candles.
        key: the stored series, if the candles come from the store.
        label: a description of the data for reports.
        timeframe: bar length.
        start: first decision bar.
        end: final valuation bar.
        strategy_hashes: code hash of every strategy, by name.
        signal_failures: why a strategy has no signal, by name.
    """

    candles: pd.DataFrame
    data: MarketData
    key: SeriesKey | None
    label: str
    timeframe: str
    start: int
    end: int
    strategy_hashes: dict[str, str] = field(default_factory=dict)
    signal_failures: dict[str, str] = field(default_factory=dict)


def load_candles(
    scenario: Scenario, settings: Settings, store: Store | None
) -> tuple[pd.DataFrame, SeriesKey | None, str, str, dict[str, np.ndarray]]:
    """Return (candles, stored key, label, timeframe, hidden series) of a scenario's data."""
    spec = scenario.data
    hidden: dict[str, np.ndarray] = {}
    if spec.source == "synthetic":
        from agent.config import SyntheticSettings
        from agent.market.synthetic import generate

        params = SyntheticSettings.model_validate(
            {**settings.market.synthetic.model_dump(), **spec.synthetic}
        )
        timeframe = spec.timeframe or settings.market.timeframe
        market = generate(params, timeframe)
        hidden["planted"] = market.planted
        label = (
            f"synthetic {spec.symbol or settings.market.symbol} {timeframe} (seed {params.seed})"
        )
        return market.candles, None, label, timeframe, hidden
    if spec.source == "csv":
        from agent.market.csv_source import read_csv_candles
        from agent.market.quality import validate_candles

        assert spec.path is not None
        timeframe = spec.timeframe or settings.market.timeframe
        frame = read_csv_candles(spec.path).reset_index(drop=True)
        candles = validate_candles(frame, timeframe_ms(timeframe)).reset_index(drop=True)
        return candles, None, f"csv {spec.path.name} {timeframe}", timeframe, hidden
    from agent.market.data import default_key

    if spec.series:
        source, symbol, timeframe = spec.series.split(":")
        key = SeriesKey(source, symbol, timeframe)
    else:
        key = default_key(settings)
    if store is None:
        raise ConfigError("data.source is store but no store was given")
    candles = store.read_candles(key)  # all of it: data.end may lie past it (named then)
    if candles.empty:
        raise DataError(
            f"no candles stored for {key}: run `agora data synth` or `agora data import`"
        )
    return candles, key, str(key), key.timeframe, hidden


DATE_NAMES = ("data.start", "data.end")
"""What a scenario (and `agora backtest --start/--end`, which set them) calls its range."""


def _date_range(scenario: Scenario) -> tuple[int | None, int | None]:
    spec = scenario.data
    start_ms = parse_time_ms(spec.start, what="data.start") if spec.start else None
    end_ms = parse_time_ms(spec.end, what="data.end") if spec.end else None
    return start_ms, end_ms


def _slice_window(
    candles: pd.DataFrame, scenario: Scenario, warmup: int, label: str
) -> tuple[pd.DataFrame, int, int]:
    """Cut the candles to warm-up + traded range; return (candles, start, end) indexes.

    Raises:
        UsageError: data.start/data.end are reversed, miss the candles or leave too few bars
            (naming the candles' range).
        DataError: there are too few candles for the warm-up, with no range given.
    """
    times = candles["open_time"].to_numpy(dtype="int64")
    start_ms, end_ms = _date_range(scenario)
    first_ms, last_ms = int(times[0]), int(times[-1])
    check_time_range(
        start_ms, end_ms, first_ms=first_ms, last_ms=last_ms, series=label, names=DATE_NAMES
    )
    first = warmup
    if start_ms is not None:
        first = max(warmup, int(np.searchsorted(times, start_ms)))
    last = len(times) - 1
    if end_ms is not None:
        last = int(np.searchsorted(times, end_ms, "right")) - 1
    if last - first < 2:
        message = (
            f"the data range leaves {max(0, last - first)} bars to trade after a warm-up of "
            f"{warmup} bars ({len(times)} candles loaded)"
        )
        if start_ms is None and end_ms is None:
            raise DataError(f"{message}: too few candles")
        held = f"{format_time_ms(first_ms)} to {format_time_ms(last_ms)}"
        raise UsageError(f"{message}: widen data.start/data.end; {label} holds candles from {held}")
    # The whole history before the first decision stays: a signal at bar t must be the same
    # number wherever it is computed (training computes it over the whole series too).
    frame = candles.iloc[: last + 1].reset_index(drop=True)
    return frame, first, last


def prepare(
    scenario: Scenario,
    settings: Settings,
    store: Store | None = None,
    *,
    strategies: list[Any] | None = None,
    min_warmup: int = 0,
) -> PreparedData:
    """Load a scenario's candles and compute features and every strategy's signal.

    Args:
        scenario: what to load.
        settings: the configuration (default series, synthetic settings, plugin directory).
        store: the store (for `data.source: store`, and to cache signals).
        strategies: strategy classes or discovered strategies to use instead of discovering.
        min_warmup: bars the policy under test needs before its first decision.
    """
    from agent.plugins.market_data import build_market_data
    from agent.plugins.resolve import check_params, resolve_strategies
    from agent.plugins.signals import as_discovered

    if strategies is not None:
        items = [as_discovered(s) for s in strategies]
    else:
        items = resolve_strategies(scenario.strategies, settings, where="strategies")
    for item in items:
        given = scenario.strategy_params.get(item.name, {})
        check_params(item, given, spec=item.name, where="strategy_params")
    items = [item.with_params(**scenario.strategy_params.get(item.name, {})) for item in items]
    candles, key, label, timeframe, hidden = load_candles(scenario, settings, store)
    needed = max([i.info.warmup_bars + 1 for i in items if i.info] + [0])
    warmup = scenario.data.warmup_bars or max(EnvConfig().first_bar, needed, min_warmup)
    candles, start, end = _slice_window(candles, scenario, warmup, label)
    data, reasons = build_market_data(
        candles,
        items,
        key=key,
        store=store,  # without a stored series (key None) it caches nothing, records quarantines
        hidden=hidden or None,
        settings=settings.strategies,
        source="backtest",
    )
    hashes = {i.name: i.code_hash or "unknown" for i in items}
    return PreparedData(candles, data, key, label, timeframe, start, end, hashes, reasons)


def code_version() -> str:
    """Return Agora's version plus the git commit of the source tree, when there is one."""
    from agent import __version__

    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{commit}{'.dirty' if dirty else ''}" if commit else __version__


def default_model_loader(settings: Settings, store: Store | None) -> ModelLoader:
    """Return a loader of registered models (id, unique prefix or `live`): `load_policy`.

    The model observes through its own spec (look-back, action kind, exposure levels and
    strategies, from the model file's metadata), evaluated with `NumpyPolicy`.
    """

    def load(model_id: str) -> ModelPolicy:
        from agent.learn.policy import load_policy

        if store is None:
            raise ModelError(f"cannot load model {model_id!r}: no store to look it up in")
        return load_policy(store, model_id).as_model_policy()

    return load


def model_strategies(model: ModelPolicy, settings: Settings) -> list[Any] | None:
    """Return the strategies a model observes, resolved from its specs (None if unknown)."""
    if model.strategy_names is None:
        return None
    from agent.plugins.resolve import resolve_strategies

    return resolve_strategies(list(model.strategy_names), settings)


def build_policies(
    scenario: Scenario, prepared: PreparedData, model: ModelPolicy | None
) -> list[Policy]:
    """Return the policy under test first, then every strategy alone, then the baselines."""
    data = prepared.data
    mapping = engine.SignalMapping(**scenario.policy.mapping.model_dump())
    policies: list[Policy] = []
    if model is not None:
        policies.append(model)
    main_strategy = scenario.policy.strategy
    if main_strategy:
        policies.append(engine.strategy_policy(data, main_strategy, mapping))
    if scenario.compare_strategies:
        for name in data.strategy_names:
            if name != main_strategy and name not in prepared.signal_failures:
                policies.append(engine.strategy_policy(data, name, mapping))
    for baseline in scenario.baselines:
        if baseline == "buy-and-hold":
            policies.append(engine.buy_and_hold(data))
        elif baseline == "flat":
            policies.append(engine.flat(data))
        else:
            spec = scenario.random
            policies.append(engine.random_policy(data, scenario.seed, spec.levels, spec.hold_bars))
    return policies


def backtest_config(scenario: Scenario, settings: Settings, start: int, end: int) -> BacktestConfig:
    """Return the engine configuration of a scenario (costs over the `dex` settings)."""
    costs = scenario.costs.resolve(settings.dex)
    return BacktestConfig(
        pool=PoolConfig.from_settings(settings.dex, **costs),
        initial_value_quote=scenario.initial_value_quote,
        start=start,
        end=end,
    )


def run_scenario(
    scenario: Scenario,
    settings: Settings,
    *,
    store: Store | None = None,
    model_loader: ModelLoader | None = None,
    trainer: Any = None,
    strategies: list[Any] | None = None,
    progress: StageProgress | None = None,
    backend: Backend | None = None,
) -> BacktestRun:
    """Run a scenario and return every policy's results and metrics (nothing is written).

    Args:
        scenario: the backtest.
        settings: the configuration.
        store: the store (stored candles, signal cache; `--onchain` records nothing in it).
        model_loader: loads `policy.model`; default: the model registry.
        trainer: walk-forward trainer; default: `walkforward.learn_trainer` (agent.learn).
        strategies: strategies to use instead of discovering them (tests, embedding).
        progress: optional (stage, done, total) callback.
        backend: where the walk-forward windows train (`agent.compute`); default: here.
    """
    model: ModelPolicy | None = None
    if scenario.policy.model:
        loader = model_loader or default_model_loader(settings, store)
        model = loader(scenario.policy.model)
    min_warmup = model.env_config.lookback_bars - 1 if model else 0
    if model is not None and strategies is None and scenario.strategies is None:
        strategies = model_strategies(model, settings)
    prepared = prepare(scenario, settings, store, strategies=strategies, min_warmup=min_warmup)
    if model is not None and prepared.data.n_strategies:
        model = _align_model(model, prepared)
    config = backtest_config(scenario, settings, prepared.start, prepared.end)
    per_year = bars_per_year(prepared.timeframe, scenario.days_per_year)
    bar_days = timeframe_ms(prepared.timeframe) / 86_400_000
    results: list[BacktestResult] = []
    windows: list[dict[str, Any]] = []
    if scenario.walkforward is not None:
        from agent.backtest import walkforward as wf

        spec = scenario.walkforward
        plan = wf.make_windows(prepared.start, prepared.end, spec.train_bars, spec.test_bars)
        fit = trainer or wf.learn_trainer(settings, spec.timesteps, spec.algorithm)
        outcome = wf.run_walkforward(
            prepared.data,
            plan,
            fit,
            config,
            seed=scenario.seed,
            bars_per_year=per_year,
            bar_days=bar_days,
            progress=_stage(progress, "walk-forward"),
            backend=backend,
        )
        results.append(outcome.stitched)
        windows = outcome.windows
        config = replace(config, start=plan[0].test_start)
    policies = build_policies(scenario, prepared, model)
    for policy in policies:
        results.append(
            engine.run_backtest(
                prepared.data, policy, config, progress=_stage(progress, policy.name)
            )
        )
    main = _main_policy(scenario, model)
    onchain = None
    if scenario.execution == "onchain":
        results, onchain = _onchain(results, main, policies, prepared, config, settings, progress)
    metrics, warnings = report.evaluate(results, per_year, bar_days)
    for name, reason in prepared.signal_failures.items():
        warnings.setdefault(name, []).append(f"no signal: {reason}")
    window_values = prepared.data.signals[config.start : config.end]
    window_mask = prepared.data.mask[config.start : config.end]
    metadata = _metadata(scenario, settings, prepared, model, main, results, config)
    return BacktestRun(
        metadata=metadata,
        results=tuple(results),
        metrics=metrics,
        warnings=warnings,
        scenario=scenario.as_data(),
        signal_names=prepared.data.strategy_names,
        signal_correlation=signal_correlation(window_values, window_mask)
        if prepared.data.n_strategies
        else None,
        windows=windows,
        onchain=onchain,
    )


def _stage(progress: StageProgress | None, label: str) -> engine.Progress | None:
    if progress is None:
        return None
    return lambda done, total: progress(label, done, total)


def _main_policy(scenario: Scenario, model: ModelPolicy | None) -> str | None:
    if scenario.walkforward is not None:
        return "walk-forward"
    if model is not None:
        return model.name
    return scenario.policy.strategy


def _align_model(model: ModelPolicy, prepared: PreparedData) -> ModelPolicy:
    """Check the data offers the signals the model was trained with, in its order."""
    expected = model.strategy_names
    if expected is not None and tuple(expected) != prepared.data.strategy_names:
        raise ModelError(
            f"model {model.name!r} was trained on strategies {list(expected)}, the data has "
            f"{list(prepared.data.strategy_names)}; set `strategies:` in the scenario"
        )
    return model


def _onchain(
    results: list[BacktestResult],
    main: str | None,
    policies: list[Policy],
    prepared: PreparedData,
    config: BacktestConfig,
    settings: Settings,
    progress: StageProgress | None,
) -> tuple[list[BacktestResult], OnChainRun]:
    """Run the policy under test again through the pool contract; it must equal the off-chain run.

    The rerun is the same rollout with every trade sent on-chain and every decision written as
    a DecisionRecord and logged in the run's own DecisionLog (`agent.backtest.onchain`).
    """
    from agent.audit.record import config_digest, text_id
    from agent.backtest.onchain import RecordContext, open_onchain_venue, run_onchain
    from agent.chain.backends import connect
    from agent.chain.deploy import chain_key, deploy_all

    target = next((r for r in results if r.name == main), results[0])
    policy = next((p for p in policies if p.name == target.name), None)
    if policy is None:
        raise ConfigError(
            f"{target.name} cannot run on-chain: on-chain execution reruns one policy "
            "(a walk-forward stitches several models)"
        )
    pool = config.pool
    dex = settings.dex.model_copy(update={k: getattr(pool, k) for k in DEX_KEYS})
    chain_settings = settings.model_copy(update={"dex": dex})
    price = float(prepared.data.close[config.start or 0])
    model_id = getattr(policy, "model_id", None)
    context = RecordContext(
        market=f"{prepared.key}" if prepared.key is not None else prepared.label,
        model_id="0x" + model_id if model_id else text_id(f"{target.kind}:{target.name}"),
        config_hash=config_digest(settings),
    )
    with (
        tempfile.TemporaryDirectory(prefix="agora-onchain-") as tmp,
        Store(Path(tmp) / "deployments.db") as scratch,
        connect(settings.chain, settings.data.dir) as backend,
    ):
        deployment = deploy_all(backend, scratch, chain_settings, initial_price=price)
        venue = open_onchain_venue(backend, deployment)
        run = run_onchain(
            prepared.data, policy, config, venue, context, progress=_stage(progress, "on-chain")
        )
        run = replace(run, chain_key=chain_key(backend))
    mirror = engine.run_backtest(prepared.data, policy, config, exact=True)
    if not engine.same_run(run.result, mirror):
        raise ChainError(
            f"parity broken: the on-chain run of {target.name} differs from the exact mirror's"
        )
    if not engine.same_trades(target, mirror):
        raise ChainError(
            f"parity broken: the kernel's run of {target.name} trades unlike the exact mirror"
        )
    onchain = replace(target, extra={**target.extra, **run.result.extra})
    return [onchain if r is target else r for r in results], run


DEX_KEYS = tuple(f.name for f in fields(PoolConfig) if f.name in DexSettings.model_fields)
"""The `dex` settings a scenario's costs may override (the pool's configurable fields)."""


def _metadata(
    scenario: Scenario,
    settings: Settings,
    prepared: PreparedData,
    model: ModelPolicy | None,
    main: str | None,
    results: list[BacktestResult],
    config: BacktestConfig,
) -> RunMetadata:
    now = datetime.now(UTC)
    blob = json.dumps(
        {"scenario": scenario.as_data(), "settings": settings.config_hash()},
        sort_keys=True,
        default=str,
    )
    config_hash = hashlib.sha256(blob.encode()).hexdigest()[:16]
    candles_hash = prepared.data.digest()
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    suffix = hashlib.sha256(f"{config_hash}{candles_hash}{now.isoformat()}".encode()).hexdigest()
    first = results[0]
    start = config.start or 0
    return RunMetadata(
        run_id=f"{stamp}-{suffix[:6]}",
        created_at=now.isoformat(timespec="seconds"),
        name=scenario.name,
        mode="walkforward" if scenario.walkforward is not None else "single",
        main_policy=main,
        config_hash=config_hash,
        data_hash=candles_hash[:16],
        model_id=model.model_id if model else None,
        strategy_hashes={k: v[:16] for k, v in prepared.strategy_hashes.items()},
        seed=scenario.seed,
        code_version=code_version(),
        series=prepared.label,
        timeframe=prepared.timeframe,
        first_time=format_time_ms(int(prepared.data.open_time[start])),
        last_time=format_time_ms(int(first.open_time[-1])),
        bars=first.decisions,
        execution=scenario.execution,
        costs={k: getattr(config.pool, k) for k in DEX_KEYS}
        | {"initial_value_quote": config.initial_value_quote},
    )


@dataclass(frozen=True)
class Outputs:
    """Where a run's outputs went."""

    results_path: Path | None
    report_path: Path | None


def output_dir(scenario: Scenario, out_dir: Path | None = None) -> Path:
    """Create and return the folder a run's outputs go under (`--out`, else report.dir).

    Raises:
        UsageError: it cannot be created.
    """
    folder = out_dir or scenario.report.dir
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create the report folder {folder}: {e.strerror}") from e
    return folder


def write_outputs(
    run: BacktestRun, scenario: Scenario, store: Store | None, out_dir: Path | None = None
) -> Outputs:
    """Write the results JSON and HTML report of a run, and record it in the store.

    Raises:
        UsageError: the output folder cannot be written.
    """
    folder = output_dir(scenario, out_dir) / run.metadata.run_id
    try:
        results_path = (
            report.write_results(run, folder / "results.json") if scenario.report.json_ else None
        )
        report_path = (
            report.write_report(run, folder / "report.html") if scenario.report.html else None
        )
    except OSError as e:
        raise UsageError(f"cannot write the backtest report in {folder}: {e.strerror}") from e
    if store is not None:
        report.record_run(store, run, results_path, report_path)
    return Outputs(results_path, report_path)
