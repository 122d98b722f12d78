"""The five pages and a decision's page, as HTML bodies built from `queries`."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from agent.config import Settings
from agent.dashboard import queries
from agent.dashboard.pages import decision_table, e, equity_chart, layout, onchain_html, table
from agent.market.schema import format_time_ms
from agent.store import Store

PLOTLY = "/static/plotly.min.js"


def live_page(
    store: Store, settings: Settings, state: dict[str, Any], equity: Any, **page: Any
) -> str:
    """Equity against buy-and-hold and flat, exposure, the last decisions (paged, live)."""
    from agent.service.equity import format_value

    rows = queries.decisions_before(store, page.get("before"), page.get("limit") or 50)
    figures = (
        equity.figures() if equity is not None else {"live": "n/a", "hold": "n/a", "flat": "n/a"}
    )
    last = state.get("last_decision") or {}
    exposure = rows[0]["exposure"] if rows and page.get("before") is None else None
    value = last.get("value_quote")
    header = (
        f"<p>service: <b>{e(state.get('state'))}</b>; market {e(state.get('market'))}; live "
        f"model <code>{e(state.get('live_model'))}</code>; {e(state.get('decided', 0))} bars "
        f"decided ({e(state.get('trades', 0))} traded), {e(state.get('outbox_size', 0))} not yet "
        f"on-chain; last decision value {e(format_value(value) if value is not None else None)}"
        "</p>"
    )
    since = "" if equity is None or not equity.times_ms else format_time_ms(equity.times_ms[0])
    figs = (
        f'<p class=figures>since {e(since)}: <span>live model <b data-testid="equity-live">'
        f"{e(figures['live'])}</b></span><span>buy-and-hold <b "
        f'data-testid="equity-hold">{e(figures["hold"])}</b></span><span>flat <b '
        f'data-testid="equity-flat">{e(figures["flat"])}</b></span><span>exposure <b '
        f'data-testid="exposure">{"-" if exposure is None else f"{exposure:.4f}"}</b></span></p>'
    )
    older = ""
    if rows and rows[-1]["seq"] > 0:
        older = f'<p><a data-testid="older" href="/live?before={rows[-1]["seq"]}">older</a></p>'
    body = (
        header + figs + equity_chart(equity) + "<h2>Decisions</h2>" + decision_table(rows) + older
    )
    html = layout("Live", "/live", body, scripts=[PLOTLY])
    if page.get("before") is None:
        from agent.dashboard.pages import LIVE_SCRIPT

        newest = rows[0]["seq"] if rows else -1
        html = html.replace("<body>", f'<body data-last-seq="{newest}">', 1)
        html = html.replace("</main>", f"</main><script>{LIVE_SCRIPT}</script>", 1)
    return html


def decision_page(detail: queries.DecisionDetail) -> str:
    """One decision: canonical record, hash, prev hash, and where the DecisionLog holds it."""
    row = detail.row
    onchain = row["onchain"]
    inclusion = [
        ("chain", e(detail.chain_key)),
        ("DecisionLog", f"<code>{e(detail.decision_log)}</code>"),
        ("entry", f"seq {row['seq']} (the log's entry index)"),
        ("status", onchain_html(onchain)),
        ("transaction", f"<code>{e(row['tx_hash'])}</code>"),
        ("block", e(row["block_number"])),
        ("log index", "-"),
        ("swap transaction", f"<code>{e(detail.swap_tx)}</code>"),
    ]
    record = json.dumps(json.loads(detail.stored.record_json), indent=2, sort_keys=True)
    body = (
        f'<p>hash <code data-testid="decision-hash">{e(detail.stored.hash)}</code></p>'
        f'<p>prev hash <code data-testid="prev-hash">{e(detail.prev_hash)}</code></p>'
        + table(
            "inclusion", ("field", "value"), (({"data-field": k}, [k, v]) for k, v in inclusion)
        )
        + "<h2>Record (canonical JSON)</h2>"
        f'<pre data-testid="decision-record">{e(detail.stored.record_json)}</pre>'
        f"<details><summary>indented</summary><pre>{e(record)}</pre></details>"
    )
    return layout(f"Decision {row['seq']}", "/live", body)


AUDIT_SCRIPT = """
document.getElementById('verify').addEventListener('click', async () => {
  const out = document.querySelector('[data-testid="verify-result"]');
  out.textContent = 'verifying…';
  const token = document.getElementById('token').value;
  const headers = token ? {'Authorization': 'Bearer ' + token} : {};
  const response = await fetch('/api/audit/verify', {method: 'POST', headers});
  const data = await response.json();
  out.setAttribute('data-ok', String(data.ok));
  out.textContent = (data.lines || [data.error]).join('\\n');
  if (data.mismatch) {
    out.textContent += '\\nfirst mismatch: seq ' + data.mismatch.seq + ' (' + data.mismatch.kind
      + ')';
  }
  if (data.stored != null) out.textContent += '\\ndecisions checked: ' + data.stored;
});
"""


def audit_page(store: Store, actions_enabled: bool) -> str:
    """The DecisionLog's address and head, and a button running `audit verify`."""
    from agent.audit.outbox import stored_count, stored_head, unconfirmed_count

    chain = queries.current_chain(store)
    address = queries.decision_log_address(store, chain)
    confirmed = store.db.execute(
        "SELECT COUNT(*) FROM decisions WHERE status = 'confirmed'"
    ).fetchone()[0]
    head = stored_head(store, int(confirmed))
    note = (
        "actions need the token (AGORA_DASHBOARD_TOKEN)"
        if actions_enabled
        else "actions are disabled: set AGORA_DASHBOARD_TOKEN"
    )
    body = (
        table(
            "decision-log",
            ("field", "value"),
            (
                ({}, ["chain", e(chain)]),
                (
                    {},
                    [
                        "DecisionLog",
                        f'<code data-testid="decision-log-address">{e(address)}</code>',
                    ],
                ),
                ({}, ["decisions stored", e(stored_count(store))]),
                ({}, ["not yet on-chain", e(unconfirmed_count(store))]),
                ({}, ["head (store, confirmed)", f'<code data-testid="head">{e(head)}</code>']),
            ),
        )
        + f"<p class=muted>{e(note)}</p>"
        + '<p><input id=token type=password placeholder="token" autocomplete=off> '
        '<button id=verify data-testid="verify-button">Verify the trail</button></p>'
        '<pre data-testid="verify-result"></pre>'
        f"<script>{AUDIT_SCRIPT}</script>"
    )
    return layout("Audit", "/audit", body)


def contributors_page(
    store: Store, board: Any, strategies: list[dict[str, Any]], before: int | None, limit: int
) -> str:
    """The leaderboard, each strategy's status, each epoch's root and claim proofs."""
    from agent.rewards.units import format_amount, format_units

    rows, books, recorded = board
    summary = (
        f"<p>{recorded} epoch(s) recorded: {e(format_units(books['emitted']))} AGR emitted = "
        f"{e(format_units(books['paid']))} paid + {e(format_units(books['carried']))} carried</p>"
    )
    leader = table(
        "leaderboard",
        (
            "strategy",
            "account",
            "epochs",
            "contribution",
            "accumulated ± se",
            "z",
            "verdict",
            "earned",
            "claimed",
            "unclaimed",
        ),
        (
            (
                {"data-strategy": r["strategy"]},
                [
                    e(r["strategy"]),
                    f"<code>{e(r['account'])}</code>",
                    e(r["epochs"]),
                    f"{r['contribution']:+.4f}",
                    ""
                    if r["accumulated"] is None
                    else f"{r['accumulated']:+.4f} ± {r['accumulated_se']:.4f}",
                    "" if r["z"] is None else f"{r['z']:+.2f}",
                    e(r["verdict"] or ""),
                    f'<span data-field="earned">{format_amount(r["earned"])}</span>',
                    f'<span data-field="claimed">{format_amount(r["claimed"])}</span>',
                    f'<span data-field="unclaimed">{format_amount(r["unclaimed"])}</span>',
                ],
            )
            for r in rows
        ),
        row_testid="leader-row",
    )
    strat = table(
        "strategies",
        ("name", "status", "why", "version", "code hash", "origin"),
        (
            (
                {"data-strategy": s["name"], "data-status": s["status"]},
                [
                    e(s["name"]),
                    e(s["status"]),
                    e(s.get("reason") or ""),
                    e(s.get("version")),
                    f"<code>{e(s.get('code_hash'))}</code>",
                    e(s.get("origin")),
                ],
            )
            for s in strategies
        ),
    )
    epochs = queries.epochs_page(store, before, limit)
    parts = []
    for record in epochs:
        allocs = []
        for a in record.allocations:
            proof = json.dumps(
                {
                    "epoch": record.epoch,
                    "index": a.leaf_index,
                    "account": a.account,
                    "amount": str(a.amount),
                    "proof": list(a.proof),
                }
            )
            copy = (
                f'<code data-testid="claim-proof">{e(proof)}</code> <button type=button '
                'onclick="navigator.clipboard.writeText(this.previousElementSibling.textContent)"'
                ">copy</button>"
                if a.leaf_index is not None
                else "-"
            )
            allocs.append(
                (
                    {"data-strategy": a.strategy or "(remainder)"},
                    [
                        e(a.strategy or "(remainder)"),
                        ""
                        if a.contribution is None
                        else f"{a.contribution:+.4f} ± {a.std_error or 0:.4f}",
                        format_amount(a.amount),
                        "claimed" if a.claimed else "unclaimed",
                        copy,
                    ],
                )
            )
        parts.append(
            f'<section data-testid="epoch" data-epoch="{record.epoch}"><h3>epoch {record.epoch}: '
            f"{e(record.status)}, paid {e(format_units(record.total))} AGR</h3>"
            f'<p>Merkle root <code data-testid="merkle-root">{e(record.root)}</code></p>'
            + table(
                "allocations", ("strategy", "contribution ± se", "AGR", "claim", "proof"), allocs
            )
            + "</section>"
        )
    more = ""
    if epochs and epochs[-1].epoch > 0:
        more = f'<p><a href="/contributors?before={epochs[-1].epoch}">older epochs</a></p>'
    body = (
        summary + leader + "<h2>Strategies</h2>" + strat + "<h2>Epochs</h2>"
        f'<div data-testid="epochs">{"".join(parts)}</div>' + more
    )
    return layout("Contributors", "/contributors", body)


def models_page(store: Store, offset: int, limit: int) -> str:
    """The registry (as `agora models list`), which model is live, the promotion history."""
    from agent.learn.registry import format_return, list_models, live_model, summary

    live = live_model(store)
    models = [summary(r) for r in list_models(store)][offset : offset + limit]
    registry = table(
        "models",
        ("id", "status", "algorithm", "seed", "created", "validation", "test"),
        (
            (
                {"data-model": m["id"], "data-status": m["status"]},
                [
                    f"<code>{e(m['id'][:12])}</code>",
                    e(m["status"]),
                    e(m["algorithm"]),
                    e(",".join(str(s) for s in m["seeds"])),
                    e(format_time_ms(m["created_ms"])),
                    format_return(m["validation_return"]),
                    format_return(m["test_return"]),
                ],
            )
            for m in models
        ),
    )
    promos = table(
        "promotions",
        ("at", "model", "previous", "promoted", "forced", "candidate", "live", "reason"),
        (
            (
                {},
                [
                    e(format_time_ms(p["at_ms"])),
                    f"<code>{e(p['model_id'][:12])}</code>",
                    f"<code>{e((p['previous_id'] or '-')[:12])}</code>",
                    "yes" if p["promoted"] else "no",
                    "yes" if p["forced"] else "no",
                    e(p["candidate"]),
                    e(p["live"]),
                    e(p["reason"]),
                ],
            )
            for p in queries.promotions(store, offset, limit)
        ),
    )
    live_text = "none" if live is None else live.id
    body = (
        f'<p>live model: <code data-testid="live-model">{e(live_text)}</code></p>'
        + registry
        + "<h2>Promotions</h2>"
        + promos
    )
    return layout("Models", "/models", body)


def backtests_page(store: Store, offset: int, limit: int) -> str:
    """Recorded runs with their comparison tables and their HTML reports."""
    from agent.backtest.report import TABLE_COLUMNS, summary_rows

    headers = ("policy", "kind", *(title for _, title, _ in TABLE_COLUMNS))
    parts = []
    for run in queries.backtest_runs(store, offset, limit):
        link = (
            f' <a data-testid="report-link" href="/backtests/{quote(run["run_id"])}/report">'
            "report</a>"
            if run.get("report_path")
            else ""
        )
        cells = [[e(c) for c in row] for row in summary_rows(run["summary"])]
        parts.append(
            f'<section data-testid="backtest" data-run="{e(run["run_id"])}"><h3>'
            f"{e(run['name'])} <code>{e(run['run_id'])}</code> ({e(run['mode'])}, "
            f"{e(run['created_at'])}){link}</h3>"
            + table("comparison", headers, (({}, c) for c in cells))
            + "</section>"
        )
    more = (
        f'<p><a href="/backtests?offset={offset + limit}">older runs</a></p>'
        if len(parts) == limit
        else ""
    )
    body = f'<div data-testid="backtests">{"".join(parts) or "no runs yet"}</div>' + more
    return layout("Backtests", "/backtests", body)
