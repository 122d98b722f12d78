"""What a backtest run leaves behind: a results JSON, an offline HTML report and a store row.

Every output carries the run's metadata (config hash, data hash, model id, strategy code
hashes, seed, code version), so a run can be reproduced exactly. The HTML report is one
self-contained file: plotly.js is inlined, nothing is fetched, and it works offline.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent.backtest.engine import BacktestResult
from agent.backtest.metrics import Metrics, degenerate_warnings, drawdown, json_number
from agent.errors import StoreError, UsageError
from agent.market.schema import format_time_ms
from agent.store import Store

MAX_PLOT_POINTS = 4_000
"""Per trace; longer runs are thinned by a stride for the HTML (the JSON keeps every bar)."""
MAX_TRADE_MARKERS = 3_000
PALETTE: tuple[str, ...] = (
    "#7b3294",
    "#1f78b4",
    "#33a02c",
    "#e31a1c",
    "#ff7f00",
    "#6a3d9a",
    "#b15928",
    "#a6cee3",
    "#b2df8a",
    "#fb9a99",
    "#fdbf6f",
    "#cab2d6",
    "#444444",
    "#999999",
)
"""One colour per policy, the same in the equity and drawdown panels."""

TABLE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("total_return", "return", "pct"),
    ("cagr", "CAGR", "pct"),
    ("annual_volatility", "vol", "pct"),
    ("sharpe", "Sharpe", "num"),
    ("sortino", "Sortino", "num"),
    ("calmar", "Calmar", "num"),
    ("max_drawdown", "max DD", "pct"),
    ("max_drawdown_days", "DD days", "int"),
    ("trades", "trades", "int"),
    ("win_rate", "win", "pct"),
    ("profit_factor", "PF", "num"),
    ("expectancy", "expect.", "pct"),
    ("sqn", "SQN", "num"),
    ("exposure_time", "in mkt", "pct"),
    ("turnover", "turnover", "num"),
    ("fees_quote", "fees $", "money"),
    ("impact_quote", "impact $", "money"),
    ("gas_quote", "gas $", "money"),
    ("final_equity", "final $", "money"),
)
"""Metrics shown in the console and HTML tables: (key, header, format)."""


@dataclass(frozen=True)
class RunMetadata:
    """What identifies a run and lets it be reproduced.

    Attributes:
        run_id: unique id (UTC time and a short hash).
        created_at: ISO-8601 UTC time.
        name: the scenario's name.
        mode: 'single' or 'walkforward'.
        main_policy: the policy under test (model or strategy), or None for a comparison only.
        config_hash: hash of the scenario and the effective configuration.
        data_hash: sha256 of the candles used.
        model_id: the model tested, if any.
        strategy_hashes: code hash of every strategy that produced signals, by name.
        seed: the run's seed (random baseline, training).
        code_version: Agora's version and git commit.
        series: the candle series (source:symbol:timeframe) or a description of the data.
        timeframe: bar length.
        first_time: open time of the first decision bar (ISO 8601).
        last_time: open time of the final valuation bar (ISO 8601).
        bars: decisions per policy.
        execution: 'offchain' or 'onchain'.
        costs: the pool and cost settings.
    """

    run_id: str
    created_at: str
    name: str
    mode: str
    main_policy: str | None
    config_hash: str
    data_hash: str
    model_id: str | None
    strategy_hashes: dict[str, str]
    seed: int
    code_version: str
    series: str
    timeframe: str
    first_time: str
    last_time: str
    bars: int
    execution: str
    costs: dict[str, Any]


@dataclass(frozen=True)
class BacktestRun:
    """A finished run: every policy's result and metrics, ready to report and record."""

    metadata: RunMetadata
    results: tuple[BacktestResult, ...]
    metrics: dict[str, Metrics]
    warnings: dict[str, list[str]]
    scenario: dict[str, Any]
    signal_names: tuple[str, ...] = ()
    signal_correlation: np.ndarray | None = None
    windows: list[dict[str, Any]] = field(default_factory=list)
    onchain: Any = None
    """The `agent.backtest.onchain.OnChainRun` of an `--onchain` run (records, log address)."""

    def result(self, name: str) -> BacktestResult:
        """Return the result of the policy called `name`."""
        for result in self.results:
            if result.name == name:
                return result
        raise KeyError(name)


def evaluate(
    results: Sequence[BacktestResult], bars_per_year: float, bar_days: float
) -> tuple[dict[str, Metrics], dict[str, list[str]]]:
    """Return the metrics and degenerate-agent warnings of every result, by policy name."""
    from agent.backtest.metrics import compute_metrics

    metrics: dict[str, Metrics] = {}
    warnings: dict[str, list[str]] = {}
    for r in results:
        m = compute_metrics(
            r.equity,
            r.exposure,
            r.traded_quote,
            r.fee_quote,
            r.impact_quote,
            r.gas_quote,
            r.swaps,
            bars_per_year,
            bar_days,
        )
        metrics[r.name] = m
        notes = degenerate_warnings(m, r.exposure) if r.kind != "baseline" else []
        if r.terminated:
            notes.append("ruined: the portfolio fell below 1 % of its start value")
        warnings[r.name] = notes
    return metrics, warnings


# --- JSON ---------------------------------------------------------------------------------


def results_document(run: BacktestRun) -> dict[str, Any]:
    """Return the run as JSON-ready data: metadata, scenario, per-policy metrics and curves."""
    first = run.results[0] if run.results else None
    policies = []
    for r in run.results:
        policies.append(
            {
                "name": r.name,
                "kind": r.kind,
                "metrics": run.metrics[r.name].as_dict(),
                "warnings": run.warnings.get(r.name, []),
                "fingerprint": r.fingerprint,
                "extra": r.extra,
                "equity": [round(float(v), 6) for v in r.equity],
                "exposure": [round(float(v), 6) for v in r.exposure],
            }
        )
    return {
        "metadata": asdict(run.metadata),
        "scenario": run.scenario,
        "open_time": [] if first is None else [int(t) for t in first.open_time],
        "close": [] if first is None else [float(v) for v in first.close],
        "policies": policies,
        "signal_correlation": _correlation_document(run),
        "windows": run.windows,
    }


def summary_document(run: BacktestRun) -> dict[str, Any]:
    """Return the compact summary kept in the store: metrics and warnings per policy."""
    return {
        "policies": [
            {
                "name": r.name,
                "kind": r.kind,
                "metrics": run.metrics[r.name].as_dict(),
                "warnings": run.warnings.get(r.name, []),
                "fingerprint": r.fingerprint,
                "extra": r.extra,
            }
            for r in run.results
        ],
        "windows": run.windows,
    }


def _correlation_document(run: BacktestRun) -> dict[str, Any] | None:
    if run.signal_correlation is None:
        return None
    matrix = [[json_number(float(v)) for v in row] for row in run.signal_correlation]
    return {"names": list(run.signal_names), "matrix": matrix}


def write_results(run: BacktestRun, path: Path) -> Path:
    """Write the results JSON to `path` and return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results_document(run), indent=1, default=str), encoding="utf-8")
    return path


# --- HTML ---------------------------------------------------------------------------------


def _stride(n: int) -> int:
    return max(1, math.ceil(n / MAX_PLOT_POINTS))


def _times(result: BacktestResult) -> list[str]:
    return [format_time_ms(int(t)) for t in result.open_time]


def main_result(run: BacktestRun) -> BacktestResult:
    """Return the result of the policy under test (the first result if there is none)."""
    if run.metadata.main_policy:
        return run.result(run.metadata.main_policy)
    return run.results[0]


def equity_figure(run: BacktestRun) -> Any:
    """Return the main figure: price with trades, equity, drawdown and exposure, stacked."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    main = main_result(run)
    times = _times(main)
    step = _stride(len(times))
    fig = make_subplots(
        rows=4,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.03,
        row_heights=[0.3, 0.34, 0.18, 0.18],
        subplot_titles=(
            f"price and trades of {main.name}",
            "equity (quote currency)",
            "drawdown",
            "exposure",
        ),
    )
    fig.add_trace(
        go.Scatter(
            x=times[::step], y=main.close[::step], name="close", line={"color": "#555", "width": 1}
        ),
        row=1,
        col=1,
    )
    for side, symbol, color in ((1, "triangle-up", "#1a9850"), (-1, "triangle-down", "#d73027")):
        at = np.flatnonzero(main.side == side)[:MAX_TRADE_MARKERS]
        fig.add_trace(
            go.Scatter(
                x=[times[i] for i in at],
                y=main.close[at],
                mode="markers",
                name="buy" if side == 1 else "sell",
                marker={"symbol": symbol, "color": color, "size": 8},
            ),
            row=1,
            col=1,
        )
    for number, r in enumerate(run.results):
        emphasis = r.name == main.name
        width = 2.5 if emphasis else 1.2
        dash = "dot" if r.kind == "baseline" else None
        color = PALETTE[number % len(PALETTE)]
        fig.add_trace(
            go.Scatter(
                x=times[::step],
                y=r.equity[::step],
                name=r.name,
                legendgroup=r.name,
                line={"width": width, "dash": dash, "color": color},
            ),
            row=2,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=times[::step],
                y=drawdown(r.equity)[::step],
                name=r.name,
                legendgroup=r.name,
                showlegend=False,
                line={"width": width, "dash": dash, "color": color},
            ),
            row=3,
            col=1,
        )
    exposure: np.ndarray = (
        np.concatenate([main.exposure, main.exposure[-1:]]) if main.decisions else np.zeros(0)
    )
    fig.add_trace(
        go.Scatter(
            x=times[::step],
            y=np.asarray(exposure)[::step],
            name=f"exposure of {main.name}",
            line={"shape": "hv", "color": "#4575b4"},
            fill="tozeroy",
        ),
        row=4,
        col=1,
    )
    fig.update_yaxes(tickformat=".0%", row=3, col=1)
    fig.update_yaxes(tickformat=".0%", range=[0, 1.05], row=4, col=1)
    fig.update_layout(height=1100, margin={"l": 60, "r": 20, "t": 40, "b": 30}, hovermode="x")
    return fig


def correlation_figure(run: BacktestRun) -> Any | None:
    """Return the heat map of pairwise correlations between strategy signals, if any."""
    import plotly.graph_objects as go

    if run.signal_correlation is None or len(run.signal_names) < 1:
        return None
    names = list(run.signal_names)
    matrix = np.asarray(run.signal_correlation, dtype="float64")
    fig = go.Figure(
        go.Heatmap(
            z=matrix,
            x=names,
            y=names,
            zmin=-1,
            zmax=1,
            colorscale="RdBu",
            text=[[("" if math.isnan(v) else f"{v:.2f}") for v in row] for row in matrix],
            texttemplate="%{text}",
        )
    )
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(
        title="correlation of strategy signals (bars where both are available)",
        height=420 + 20 * len(names),
        margin={"l": 120, "r": 20, "t": 50, "b": 80},
    )
    return fig


def format_cell(value: Any, kind: str) -> str:
    if value is None:
        return "–"
    if isinstance(value, str):
        return "∞" if value == "inf" else value
    if kind == "pct":
        return f"{value:.2%}"
    if kind == "int":
        return f"{value:,.0f}"
    if kind == "money":
        return f"{value:,.2f}"
    return f"{value:.2f}"


def table_rows(run: BacktestRun) -> list[list[str]]:
    """Return the comparison table as text cells: policy, kind, then `TABLE_COLUMNS`."""
    return comparison_rows((r.name, r.kind, run.metrics[r.name].as_dict()) for r in run.results)


def summary_rows(summary: dict[str, Any]) -> list[list[str]]:
    """Return the comparison table of a stored run (its `summary_document`), as `table_rows`."""
    return comparison_rows((p["name"], p["kind"], p["metrics"]) for p in summary["policies"])


def comparison_rows(policies: Iterable[tuple[str, str, dict[str, Any]]]) -> list[list[str]]:
    """Return comparison table cells from (policy, kind, metrics) triples."""
    return [
        [name, kind, *(format_cell(values.get(key), fmt) for key, _, fmt in TABLE_COLUMNS)]
        for name, kind, values in policies
    ]


def _html_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], css: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px}
table{border-collapse:collapse;font-size:13px} td,th{padding:4px 8px;border-bottom:1px solid #ddd}
th{background:#f4f4f4;text-align:left} table.metrics td{text-align:right}
table.metrics td:first-child,table.metrics td:nth-child(2){text-align:left}
.scroll{overflow-x:auto} .warn{color:#a50026} .meta td:first-child{color:#666}
#render-errors{color:#a50026}
"""

_ERROR_HOOK = """<script>
window.__reportErrors = [];
function __reportError(message) {
  window.__reportErrors.push(String(message));
  var box = document.getElementById('render-errors');
  if (box) { box.textContent = 'This report failed to render: ' + message; }
}
window.addEventListener('error', function (e) { __reportError(e.message); });
(function () {
  var original = console.error;
  console.error = function () {
    __reportError(Array.prototype.join.call(arguments, ' '));
    return original.apply(console, arguments);
  };
})();
</script>"""
"""Shows any script error or console error in the page itself (and lets tests see it)."""


def render_html(run: BacktestRun) -> str:
    """Return the self-contained HTML report of a run (plotly.js inlined once)."""
    meta = run.metadata
    figure = equity_figure(run)
    charts = [
        figure.to_html(
            full_html=False,
            include_plotlyjs=True,
            div_id="equity-chart",
            config={"displaylogo": False, "responsive": True},
        )
    ]
    correlation = correlation_figure(run)
    if correlation is not None:
        charts.append(
            correlation.to_html(
                full_html=False,
                include_plotlyjs=False,
                div_id="correlation-chart",
                config={"displaylogo": False},
            )
        )
    headers = ["policy", "kind", *(header for _, header, _ in TABLE_COLUMNS)]
    metrics_table = f'<div class="scroll">{_html_table(headers, table_rows(run), "metrics")}</div>'
    meta_rows = [
        [key, value if not isinstance(value, dict) else json.dumps(value, sort_keys=True)]
        for key, value in asdict(meta).items()
    ]
    warnings = [
        f"<li><b>{html.escape(name)}</b>: {html.escape(note)}</li>"
        for name, notes in run.warnings.items()
        for note in notes
    ]
    windows = ""
    if run.windows:
        keys = list(run.windows[0].keys())
        windows = "<h2>Walk-forward windows</h2>" + _html_table(
            keys, [[_cell(w[k]) for k in keys] for w in run.windows], "metrics"
        )
    title = f"Agora backtest: {meta.name}"
    return "\n".join(
        [
            *page_head(title),
            f"<div>{html.escape(meta.series)}, {meta.first_time} → {meta.last_time}, "
            f"{meta.bars:,} bars, {html.escape(meta.execution)} execution; run "
            f"<code>{html.escape(meta.run_id)}</code></div>",
            '<div id="render-errors"></div>',
            "<h2>Metrics</h2>",
            metrics_table,
            f'<ul class="warn">{"".join(warnings)}</ul>' if warnings else "",
            windows,
            "<h2>Equity, drawdown, exposure and trades</h2>",
            charts[0],
            *(["<h2>Strategy signals</h2>", *charts[1:]] if len(charts) > 1 else []),
            "<h2>Run metadata</h2>",
            _html_table(["key", "value"], meta_rows, "meta"),
            "<p>Formulas: docs/metrics.md. Timing and costs: docs/backtesting.md.</p>",
            "</body></html>",
        ]
    )


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "–" if value is None else str(value)


def write_report(run: BacktestRun, path: Path) -> Path:
    """Write the HTML report to `path` and return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(run), encoding="utf-8")
    return path


# --- the store ----------------------------------------------------------------------------


def record_run(
    store: Store, run: BacktestRun, results_path: Path | None, report_path: Path | None
) -> None:
    """Record a run in the `backtest_runs` table."""
    meta = run.metadata
    row = [
        meta.run_id,
        meta.created_at,
        meta.name,
        meta.mode,
        meta.main_policy,
        meta.config_hash,
        meta.data_hash,
        meta.model_id,
        json.dumps(meta.strategy_hashes, sort_keys=True),
        meta.seed,
        meta.code_version,
        json.dumps(run.scenario, sort_keys=True, default=str),
        json.dumps({"metadata": asdict(meta), **summary_document(run)}, default=str),
        None if results_path is None else str(results_path),
        None if report_path is None else str(report_path),
    ]
    with store.transaction() as conn:
        conn.execute(
            "INSERT INTO backtest_runs (run_id, created_at, name, mode, main_policy, config_hash,"
            " data_hash, model_id, strategy_hashes, seed, code_version, scenario, summary,"
            " results_path, report_path) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            row,
        )
        onchain = run.onchain
        if onchain is not None:
            from agent.audit.record import canonical_json

            conn.execute(
                "INSERT INTO backtest_logs (run_id, chain_key, address, head, decisions) "
                "VALUES (?, ?, ?, ?, ?)",
                [
                    meta.run_id,
                    onchain.chain_key,
                    onchain.log_address,
                    onchain.head,
                    len(onchain.records),
                ],
            )
            conn.executemany(
                "INSERT INTO backtest_decisions (run_id, seq, record, hash) VALUES (?, ?, ?, ?)",
                [
                    (meta.run_id, r.seq, canonical_json(r), h)
                    for r, h in zip(onchain.records, onchain.hashes, strict=True)
                ],
            )


@dataclass(frozen=True)
class LoggedRun:
    """An `--onchain` backtest's decision records and the DecisionLog they were logged in."""

    run_id: str
    chain_key: str
    address: str
    head: str
    records: tuple[Any, ...]


def logged_run(store: Store, run_id: str) -> LoggedRun:
    """Return the decision records and DecisionLog of an `--onchain` run (id or prefix).

    Raises:
        UsageError: no such run, or it did not run on-chain.
    """
    from agent.audit.record import record_from_json

    run = get_run(store, run_id)
    row = store.db.execute(
        "SELECT chain_key, address, head FROM backtest_logs WHERE run_id = ?", [run["run_id"]]
    ).fetchone()
    if row is None:
        raise UsageError(
            f"backtest run {run['run_id']} did not run on-chain: it has no DecisionLog "
            "(run it with --onchain)"
        )
    records = tuple(
        record_from_json(text)
        for (text,) in store.db.execute(
            "SELECT record FROM backtest_decisions WHERE run_id = ? ORDER BY seq", [run["run_id"]]
        ).fetchall()
    )
    return LoggedRun(run["run_id"], row[0], row[1], row[2], records)


_LIST_COLUMNS = (
    "run_id, created_at, name, mode, main_policy, config_hash, data_hash, model_id, seed, "
    "code_version, results_path, report_path"
)


def list_runs(store: Store, limit: int = 50) -> list[dict[str, Any]]:
    """Return the most recent runs, newest first."""
    cursor = store.db.execute(
        f"SELECT {_LIST_COLUMNS} FROM backtest_runs ORDER BY created_at DESC, run_id DESC LIMIT ?",
        [limit],
    )
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def get_run(store: Store, run_id: str) -> dict[str, Any]:
    """Return one run (by id or a unique prefix) with its scenario and summary.

    Raises:
        UsageError: no run, or more than one, matches.
    """
    try:
        cursor = store.db.execute(
            f"SELECT {_LIST_COLUMNS}, strategy_hashes, scenario, summary FROM backtest_runs "
            "WHERE run_id LIKE ? ORDER BY run_id LIMIT 3",
            [run_id.replace("%", "") + "%"],
        )
    except Exception as e:  # sqlite3.Error through sqlite-utils
        raise StoreError(f"cannot read backtest runs from {store.path}: {e}") from e
    names = [d[0] for d in cursor.description]
    rows = cursor.fetchall()
    if not rows:
        raise UsageError(f"no backtest run {run_id!r} (see `agora backtest list`)")
    if len(rows) > 1 and rows[0][0] != run_id:
        raise UsageError(f"{run_id!r} matches several runs; give more of the id")
    record = dict(zip(names, rows[0], strict=True))
    for key in ("strategy_hashes", "scenario", "summary"):
        record[key] = json.loads(record[key])
    return record


def page_head(title: str) -> list[str]:
    """Return the opening lines of a report page: doctype, head (style, error hook), title."""
    return [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style>",
        _ERROR_HOOK,
        "</head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
