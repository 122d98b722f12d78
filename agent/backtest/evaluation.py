"""`agora strategies evaluate`: a strategy's signal diagnostics on the market, and their report.

The strategy loads as `validate` loads it (a plugin file in the sandbox, or a name resolved as
every command resolves strategy specs), runs on the stored market of the configured series, or
on the reference data set (seeded synthetic candles) when the store holds none, and is measured
by `agent.rewards.diagnostics` against forward returns and against the registered strategies
(the shipped ones and those recorded as registered in the store). What it would add to the
agent is its masked re-run contribution on the validation window, measured as payouts measure
it (`agent.backtest.contribution`), with the live model, a named one, or a probe model.
"""

from __future__ import annotations

import html
import json
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from agent.backtest.contribution import Contribution, estimate_contribution
from agent.compute import Backend
from agent.config import Settings
from agent.errors import PluginError, UsageError
from agent.market.schema import CANDLE_COLUMNS
from agent.plugins.discovery import DiscoveredStrategy, discover_file
from agent.plugins.interface import HIDDEN_ATTR
from agent.plugins.sandbox import SandboxLimits
from agent.plugins.signals import compute_signals, hidden_refusal
from agent.plugins.validation import reference_candles
from agent.rewards.diagnostics import Overlap, SignalDiagnostics, overlap, signal_diagnostics
from agent.store import Store


@dataclass(frozen=True)
class Evaluation:
    """A strategy's figures on one market (see `agent.rewards.diagnostics`).

    Attributes:
        data: which market ("the stored market binance:BTC/USDT:1h", or the reference data).
        generated: whether that market is the generated reference data (nothing stored).
        open_time: the bars' open times (ms UTC); close: their closes.
        signal: the strategy's signal (NaN in its warm-up and where it has no value).
    """

    name: str
    origin: str
    code_hash: str | None
    data: str
    generated: bool
    open_time: np.ndarray
    close: np.ndarray
    signal: np.ndarray
    diagnostics: SignalDiagnostics
    overlap: Overlap
    contribution: Contribution

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "origin": self.origin,
            "code_hash": self.code_hash,
            "data": self.data,
            "generated": self.generated,
            **self.diagnostics.as_dict(),
            "overlap": {
                "r2": self.overlap.r2,
                "alone": dict(self.overlap.alone),
                "explained_by": list(self.overlap.explained_by),
                "threshold": self.overlap.threshold,
                "lags": self.overlap.lags,
                "above_threshold": self.overlap.above_threshold,
            },
            "contribution": self.contribution.as_dict(),
            "contribution_note": self.contribution.note,
        }


def _target(settings: Settings, target: str) -> DiscoveredStrategy:
    """Load a plugin file in the sandbox, or resolve a strategy spec as every command does."""
    from agent.errors import ConfigError
    from agent.plugins.resolve import resolve_strategies

    path = Path(target)
    if path.suffix == ".py" or path.is_file():
        if not path.is_file():
            raise UsageError(f"no such plugin file: {path}")
        items = discover_file(path, SandboxLimits.from_settings(settings.strategies))
        if len(items) != 1:
            names = ", ".join(repr(d.name) for d in items)
            raise UsageError(f"{path} defines {len(items)} strategies ({names}): name one")
        item = items[0]
    else:
        try:
            (item,) = resolve_strategies([target], settings, where="strategies evaluate")
        except ConfigError as e:
            raise UsageError(str(e)) from e
    if not item.ok:
        raise PluginError(f"strategy {item.name!r} ({item.origin}) is {item.status}: {item.error}")
    return item


def _market(settings: Settings, store: Store | None) -> tuple[str, bool, Any, pd.DataFrame]:
    """Return (label, generated, series key, candles with their hidden series)."""
    if store is not None:
        from agent.market.data import default_key

        key = default_key(settings)
        candles = store.read_candles(key)
        if len(candles) >= 2:
            from agent.market.synthetic import PLANTED_SERIES_NAME

            frame = candles[list(CANDLE_COLUMNS)].reset_index(drop=True)
            times = frame["open_time"].to_numpy(dtype="int64")
            planted = store.read_hidden_series(key, PLANTED_SERIES_NAME).reindex(times)
            hidden = {} if planted.isna().any() else {PLANTED_SERIES_NAME: planted.to_numpy()}
            frame.attrs = {HIDDEN_ATTR: hidden}  # a stored synthetic market's planted series
            return f"the stored market {key}", False, key, frame
    config = settings.strategies
    label = (
        f"generated synthetic data (no stored market): the reference data set, seed "
        f"{config.reference_seed}, {config.reference_bars} bars of 1h"
    )
    return label, True, None, reference_candles(config)


def _signals(
    items: list[DiscoveredStrategy], frame: pd.DataFrame, settings: Settings
) -> dict[str, np.ndarray]:
    matrix = compute_signals(
        items,
        frame,
        key=None,
        hidden=frame.attrs.get(HIDDEN_ATTR) or None,
        settings=settings.strategies,
        source="evaluation",
        lookahead=False,
    )
    out = {}
    for name in matrix.available:
        values, mask = matrix.column(name)
        out[name] = np.where(mask, values, np.nan)
    for name, reason in matrix.reasons.items():
        if name == items[0].name:
            raise PluginError(f"strategy {name!r} produced no signal: {reason}")
    return out


def evaluate_strategy(
    settings: Settings,
    target: str,
    *,
    store: Store | None = None,
    model: str = "live",
    probe_timesteps: int = 0,
    compute: Backend | None = None,
) -> Evaluation:
    """Measure a strategy's signal on the market: IC, consistency, decay, overlap.

    Args:
        settings: the configuration (data directory, strategies, rewards' significance).
        target: a plugin file (PATH.py) or a strategy spec (`name` or `name:param=value`).
        store: the store to read the market, the registrations and the models from
            (default: the configured one, when it exists).
        model: the model its contribution is measured with: `live` or a model id.
        probe_timesteps: when that model does not observe the strategy, train a probe model
            that does for this many timesteps (0: leave the contribution not estimated).
        compute: where the contribution's coalitions run (default: local processes).

    Raises:
        UsageError: no such file or strategy.
        PluginError: the strategy failed to load or produced no signal.
        ModelNotFound: `model` names no registered model.
    """
    from agent.plugins.registry import comparison_pool
    from agent.plugins.validation import _comparable

    item = _target(settings, target)
    refusal = hidden_refusal(item, settings.strategies.fixtures)
    if refusal is not None:
        raise PluginError(f"strategy {item.name!r} {refusal}")
    with ExitStack() as stack:
        if store is None and Path(settings.data.database_path).exists():
            store = stack.enter_context(Store(settings.data.database_path))
        label, generated, _key, frame = _market(settings, store)
        contribution = estimate_contribution(
            settings, store, item, model=model, probe_timesteps=probe_timesteps, compute=compute
        )
        # the shipped and registered strategies only: the rest of the plugin directory is
        # never run (the same pool `validate` compares a file with)
        pool = comparison_pool(settings, item, store=store)
    comparable = _comparable(item, pool)
    signals = _signals([item, *comparable.values()], frame, settings)
    signal = signals[item.name]
    if item.info is not None:
        signal[: item.info.warmup_bars] = np.nan
    registered = {
        label_: signals[other.name] for label_, other in comparable.items() if other.name in signals
    }
    rewards, strategies = settings.rewards, settings.strategies
    close = frame["close"].to_numpy(dtype="float64")
    return Evaluation(
        name=item.name,
        origin=item.origin,
        code_hash=item.code_hash,
        data=label,
        generated=generated,
        open_time=frame["open_time"].to_numpy(dtype="int64"),
        close=close,
        signal=signal,
        diagnostics=signal_diagnostics(
            signal,
            close,
            significance=rewards.significance,
            bootstrap_samples=rewards.bootstrap_samples,
            bootstrap_block_bars=rewards.bootstrap_block_bars,
        ),
        overlap=overlap(
            signal,
            registered,
            threshold=strategies.originality_max_r2,
            lags=strategies.originality_lags,
        ),
        contribution=contribution,
    )


# --- the HTML report ------------------------------------------------------------------------
def _figures(evaluation: Evaluation) -> list[tuple[str, str, Any]]:
    """Return (div id, heading, plotly figure): IC by window, signal and price, overlap."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from agent.backtest.report import MAX_PLOT_POINTS

    d = evaluation.diagnostics
    windows = [w for w in d.windows if w.ic is not None]
    by_window = go.Figure(
        go.Bar(
            x=[f"{w.first_bar}-{w.last_bar}" for w in windows],
            y=[w.ic for w in windows],
            marker_color=["#1a9850" if (w.ic or 0) > 0 else "#d73027" for w in windows],
        )
    )
    overall = d.ic[0].ic
    if overall is not None:
        by_window.add_hline(y=overall, line_dash="dash", annotation_text=f"overall {overall:.3f}")
    by_window.update_layout(
        height=360, xaxis_title="window (bars)", yaxis_title=f"IC, h = {d.ic[0].horizon_bars}"
    )

    step = max(1, -(-len(evaluation.close) // MAX_PLOT_POINTS))
    times = pd.to_datetime(evaluation.open_time[::step], unit="ms", utc=True)
    price = make_subplots(
        rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.05, subplot_titles=("close", "signal")
    )
    price.add_trace(go.Scatter(x=times, y=evaluation.close[::step], name="close"), row=1, col=1)
    shown = [None if not np.isfinite(v) else float(v) for v in evaluation.signal[::step]]
    price.add_trace(go.Scatter(x=times, y=shown, name=evaluation.name), row=2, col=1)
    price.update_layout(height=520, showlegend=False)

    o = evaluation.overlap
    names = [name for name, _ in o.alone] + ["joint (all, with lags)"]
    values = [r2 for _, r2 in o.alone] + [o.r2]
    bars = go.Figure(go.Bar(x=names, y=values, marker_color="#4575b4"))
    bars.add_hline(y=o.threshold, line_dash="dash", annotation_text=f"limit {o.threshold:g}")
    bars.update_layout(height=360, yaxis_title="R²", yaxis_range=[0, 1])
    return [
        ("window-chart", "IC by window", by_window),
        ("signal-chart", "Signal against the price", price),
        ("overlap-chart", "R² against the registered strategies", bars),
    ]


def render_html(evaluation: Evaluation, table: list[list[str]]) -> str:
    """Return the self-contained HTML report (plotly.js inlined once; works offline)."""
    from agent.backtest.report import _html_table, page_head

    charts = []
    for i, (div_id, heading, figure) in enumerate(_figures(evaluation)):
        chart = figure.to_html(
            full_html=False,
            include_plotlyjs=i == 0,
            div_id=div_id,
            config={"displaylogo": False, "responsive": True},
        )
        charts += [f"<h2>{html.escape(heading)}</h2>", chart]
    title = f"Agora strategy evaluation: {evaluation.name}"
    document = json.dumps(evaluation.as_dict(), indent=1, allow_nan=False, default=str)
    return "\n".join(
        [
            *page_head(title),
            f"<div>{html.escape(evaluation.origin)}, on {html.escape(evaluation.data)}</div>",
            _contribution_box(evaluation.contribution),
            '<div id="render-errors"></div>',
            "<h2>Figures</h2>",
            _html_table(["figure", "value", "reading"], table, "metrics"),
            *charts,
            "<h2>Every figure</h2>",
            f"<pre>{html.escape(document)}</pre>",
            "<p>Definitions: docs/contributing-strategies.md, “Evaluate it”.</p>",
            "</body></html>",
        ]
    )


def _contribution_box(contribution: Contribution) -> str:
    """The estimated contribution to the agent, in one box under the title."""
    _, value, reading = contribution_row(contribution)
    return (
        '<div id="contribution" style="border:1px solid #999;padding:0.5em;margin:0.5em 0">'
        f"<b>Estimated contribution to the agent: {html.escape(value)}</b><br>"
        f"{html.escape(reading)}</div>"
    )


def write_report(evaluation: Evaluation, table: list[list[str]], path: Path) -> Path:
    """Write the HTML report to `path` and return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(evaluation, table), encoding="utf-8")
    return path


def summary_rows(evaluation: Evaluation) -> list[list[str]]:
    """Return (figure, value, reading) rows, for the terminal table and the report alike."""
    d, o = evaluation.diagnostics, evaluation.overlap
    rows = []
    for ic in d.ic:
        if ic.ic is None:
            rows.append([f"IC h={ic.horizon_bars}", "-", f"too few pairs ({ic.pairs})"])
            continue
        t = "-" if ic.t_stat is None else f"{ic.t_stat:.2f}"
        verdict = "significant" if ic.significant else "not significant"
        rows.append(
            [
                f"IC h={ic.horizon_bars}",
                f"{ic.ic:+.4f} ± {ic.se:.4f}",
                f"t {t}: {verdict} (needs |t| > {d.significance:g})",
            ]
        )
    measured = [w for w in d.windows if w.ic is not None]
    share = "-" if d.consistency is None else f"{d.consistency:.0%}"
    rows.append(
        [
            "consistency",
            share,
            f"windows of {d.window_bars} bars with the overall IC's sign ({len(measured)} windows)",
        ]
    )
    half = "-" if d.half_life_bars is None else f"{d.half_life_bars:.1f} bars"
    rows.append(["IC half-life", half, "horizon where |IC| falls to half its h=1 value"])
    rows.append(["turnover", _num(d.turnover), "mean |Δsignal| per bar"])
    for lag, value in d.autocorrelation.items():
        rows.append([f"autocorrelation lag {lag}", _num(value), ""])
    by = ", ".join(f"{n} ({r2:.3f})" for n, r2 in o.alone if n in o.explained_by) or "none"
    verdict = (
        f"at or above the limit {o.threshold:g}: submitting it would be refused as a copy"
        if o.above_threshold
        else f"below the limit {o.threshold:g}"
    )
    rows.append(["R² vs registered", f"{o.r2:.3f}", f"{verdict}; explained by {by}"])
    rows.append(contribution_row(evaluation.contribution))
    return rows


def contribution_row(c: Contribution) -> list[str]:
    """Return the (figure, value, reading) row of the estimated contribution to the agent."""
    if not c.estimated:
        reason = c.note.removeprefix("not estimated: ")
        return ["contribution to the agent", "not estimated", reason]
    assert c.value is not None and c.se is not None and c.window is not None
    model = f"{'probe ' if c.probe else ''}model {(c.model_id or '')[:12]}"
    where = f"{c.window['series']} validation bars {c.window['start']}-{c.window['end'] - 1}"
    grouped = "" if c.group is None else f"; neutralised against {c.group['group']}"
    return [
        "contribution to the agent",
        f"{c.value:+.4f} ± {c.se:.4f}",
        f"log return, {model}, {where}{grouped}; {c.note}",
    ]


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
