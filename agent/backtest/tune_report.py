"""The HTML report of an `agora tune` study: the search's progress, each parameter against the
score, every trial, and the chosen trial's test split beside buy-and-hold and flat.

Same page style as the backtest report (`agent.backtest.report.page_head`); plotly.js is
inlined once so the file opens offline.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

from agent.backtest.report import _html_table as html_table
from agent.backtest.report import page_head
from agent.market.schema import format_time_ms


def trial_rows(study: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The trials as a table (best score first; failed trials last), for the CLI and the page."""
    names = [key.removeprefix("agent.") for key in study["space"]["space"]]
    headers = ["trial", "id", *names, "score", "validation return", "trades", "model", "status"]
    ordered = sorted(
        study["trials"],
        key=lambda t: (t["score"] is None, -(t["score"] or 0.0), t["number"]),
    )
    rows = []
    for trial in ordered:
        validation = trial["validation"]
        mean_return = (
            sum(v["total_return"] for v in validation) / len(validation) if validation else None
        )
        trades = sum(int(v["trades"]) for v in validation) if validation else None
        chosen = trial["trial_id"] == study["chosen_trial"]
        rows.append(
            [
                str(trial["number"]),
                trial["trial_id"] + (" *" if chosen else ""),
                *(format_value(trial["params"].get(key)) for key in study["space"]["space"]),
                "" if trial["score"] is None else f"{trial['score']:+.5f}",
                "" if mean_return is None else f"{mean_return:+.2%}",
                "" if trades is None else str(trades),
                ", ".join(m[:12] for m in trial["model_ids"]),
                trial["status"] if trial["error"] is None else f"error: {trial['error']}",
            ]
        )
    return headers, rows


def best_settings_yaml(study: dict[str, Any]) -> str:
    """The chosen trial's values as the `agent:` block of a config.yaml."""
    lines = ["agent:"]
    for key, value in study["best_params"].items():
        lines.append(f"  {key.removeprefix('agent.')}: {json.dumps(value)}")
    return "\n".join(lines)


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return json.dumps(value) if isinstance(value, list) else str(value)


def progress_figure(study: dict[str, Any]) -> Any:
    """Score of every trial in the order they finished, and the best score so far."""
    import plotly.graph_objects as go

    done = sorted(
        (t for t in study["trials"] if t["score"] is not None),
        key=lambda t: (t["finished_ms"], t["number"]),
    )
    order = list(range(1, len(done) + 1))
    scores = [t["score"] for t in done]
    best, running = [], -math.inf
    for score in scores:
        running = max(running, score)
        best.append(running)
    figure = go.Figure()
    figure.add_trace(
        go.Scatter(
            x=order,
            y=scores,
            mode="markers",
            name="trial",
            text=[t["trial_id"] for t in done],
            hovertemplate="%{text}: %{y:.5f}<extra></extra>",
        )
    )
    figure.add_trace(go.Scatter(x=order, y=best, mode="lines", name="best so far", line_shape="hv"))
    figure.update_layout(
        title=f"Search progress: validation {study['space']['metric']} "
        f"({study['space']['objective']} over {study['space']['seeds_per_trial']} seed(s))",
        xaxis_title="trials finished",
        yaxis_title="score",
        height=380,
        margin={"l": 60, "r": 20, "t": 50, "b": 40},
    )
    return figure


def parameters_figure(study: dict[str, Any]) -> Any:
    """Each searched parameter against the score (one panel per parameter)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    keys = list(study["space"]["space"])
    done = [t for t in study["trials"] if t["score"] is not None]
    figure = make_subplots(rows=1, cols=len(keys), subplot_titles=[k[6:] for k in keys])
    for column, key in enumerate(keys, start=1):
        kind = next(iter(study["space"]["space"][key]))
        values = [t["params"].get(key) for t in done]
        shown = [format_value(v) for v in values] if kind == "choice" else values
        figure.add_trace(
            go.Scatter(x=shown, y=[t["score"] for t in done], mode="markers", showlegend=False),
            row=1,
            col=column,
        )
        if kind == "loguniform":
            figure.update_xaxes(type="log", nticks=4, row=1, col=column)
        elif kind == "choice":  # the options in the space's order, not the trials'
            options = [format_value(v) for v in study["space"]["space"][key]["choice"]]
            figure.update_xaxes(
                type="category", categoryorder="array", categoryarray=options, row=1, col=column
            )
    figure.update_layout(height=320, margin={"l": 60, "r": 20, "t": 50, "b": 40})
    return figure


def render_html(study: dict[str, Any]) -> str:
    """The self-contained page (see the module docstring)."""
    space = study["space"]
    ok = sum(t["status"] == "ok" for t in study["trials"])
    meta = [
        ["space file", study["space_path"]],
        ["searcher", f"{space['searcher']} (seed {space['seed']})"],
        ["trials", f"{len(study['trials'])} ({ok} ok)"],
        ["score", f"validation {space['metric']}, {space['objective']} over "
                  f"{space['seeds_per_trial']} seed(s)"],
        ["algorithm, steps per seed", f"{study['algorithm']}, {study['timesteps']}"],
        ["strategies", ", ".join(study["strategies"])],
        ["data hash", study["data_hash"]],
        ["ran on", study["backend"]],
        ["started", format_time_ms(study["started_ms"])],
        ["took", f"{study['seconds']:.0f} s"],
    ]  # fmt: skip
    parts = page_head(f"Tune study {space['name']} ({study['id']})")
    parts.append(html_table(["", ""], meta, "meta"))
    parts.append("<h2>Chosen on validation, tested once</h2>")
    parts.append(_chosen_box(study))
    figures = [
        ("progress-chart", progress_figure(study)),
        ("parameters-chart", parameters_figure(study)),
    ]
    for index, (div, figure) in enumerate(figures):
        parts.append(figure.to_html(full_html=False, include_plotlyjs=index == 0, div_id=div))
    headers, rows = trial_rows(study)
    parts.append("<h2>Trials</h2>")
    parts.append(f'<div class="scroll">{html_table(headers, rows, "metrics")}</div>')
    parts.append('<div id="render-errors"></div></body></html>')
    return "\n".join(parts)


def _chosen_box(study: dict[str, Any]) -> str:
    test = study["test"]
    if test is None:
        return "<p>No trial finished.</p>"
    baselines = study["baselines"]
    rows = [
        ["chosen trial", str(study["chosen_trial"])],
        ["model", str(study["chosen_model"])],
        ["test return", f"{test['total_return']:+.2%}"],
        ["test buy-and-hold", f"{baselines.get('test.buy_and_hold', float('nan')):+.2%}"],
        ["test flat", "+0.00%"],
        ["test costs", f"{test['cost_fraction']:.2%} of the starting value"],
        ["test trades", str(test["trades"])],
    ]
    yaml_block = html.escape(best_settings_yaml(study))
    return (
        html_table(["", ""], rows, "meta")
        + "<p>The chosen settings, as config.yaml lines:</p>"
        + f"<pre>{yaml_block}</pre>"
    )


def write_report(study: dict[str, Any], path: Path) -> Path:
    """Write the page to `path` (its directory is created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".partial")
    partial.write_text(render_html(study), encoding="utf-8")
    partial.replace(path)
    return path
