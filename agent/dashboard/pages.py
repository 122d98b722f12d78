"""The dashboard's HTML: one layout with the navigation, small tables, small inline scripts.

Everything shown goes through `html.escape`; nothing here reads settings wholesale (no page
ever shows a secret). The `data-testid` attributes are the contract the browser test relies on
(see docs/dashboard.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

NAV = (
    ("/live", "Live"),
    ("/audit", "Audit"),
    ("/contributors", "Contributors"),
    ("/models", "Models"),
    ("/backtests", "Backtests"),
)

_CSS = """
body{font-family:system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
nav{background:#1f2933;padding:.6em 1em}nav a{color:#e4e7eb;margin-right:1.2em;
text-decoration:none}nav a.here{color:#fff;font-weight:bold;border-bottom:2px solid #7bc}
main{padding:1em 1.5em}table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.9em}
th,td{border:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#eef}code{font-size:.85em;word-break:break-all}.ok{color:#080}.bad{color:#b00}
.figures span{display:inline-block;margin-right:2em}.muted{color:#777}
pre{background:#f3f3f3;padding:.6em;overflow:auto;max-width:100%;white-space:pre-wrap;
word-break:break-all}
"""


def e(value: Any) -> str:
    """Return a value as escaped text ('-' for None)."""
    return "-" if value is None else escape(str(value))


def layout(title: str, here: str, body: str, *, scripts: Sequence[str] = ()) -> str:
    """Return a whole page: head, the navigation to the five pages, the body, scripts."""
    links = "".join(
        f'<a href="{href}"{" class=here" if href == here else ""}>{name}</a>' for href, name in NAV
    )
    tags = "".join(f'<script src="{escape(src)}"></script>' for src in scripts)
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{escape(title)} · agora</title><style>{_CSS}</style>{tags}</head>"
        f'<body><nav data-testid="nav">{links}</nav><main><h1>{escape(title)}</h1>'
        f"{body}</main></body></html>"
    )


def table(
    testid: str,
    headers: Sequence[str],
    rows: Iterable[tuple[dict[str, str], Sequence[str]]],
    *,
    row_testid: str | None = None,
) -> str:
    """Return a table; each row is (extra attributes, cells already escaped as HTML)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for attrs, cells in rows:
        extra = "".join(f' {k}="{escape(v)}"' for k, v in attrs.items())
        rid = f' data-testid="{row_testid}"' if row_testid else ""
        body.append(f"<tr{rid}{extra}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return (
        f'<table data-testid="{testid}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


# --- live --------------------------------------------------------------------------------------
DECISION_HEADERS = (
    "seq",
    "bar",
    "target",
    "side",
    "traded",
    "fee",
    "impact (bps)",
    "gas (quote)",
    "on-chain",
)


def onchain_html(onchain: dict[str, Any]) -> str:
    """Return a decision's on-chain status: pending / confirmed (tx, block) / failed (why)."""
    state = onchain["state"]
    if state == "confirmed":
        return (
            f'<span class=ok data-state="confirmed">confirmed</span> tx '
            f"<code>{e(onchain.get('tx_hash'))}</code> block {e(onchain.get('block'))}"
        )
    if state == "failed":
        return f'<span class=bad data-state="failed">failed</span>: {e(onchain.get("reason"))}'
    reason = onchain.get("reason")
    why = f": {e(reason)}" if reason else ""
    return f'<span class=muted data-state="pending">pending</span>{why}'


def decision_cells(row: dict[str, Any]) -> list[str]:
    """Return the cells of one decision row (the live page's script builds the same)."""
    impact = row.get("impact_bps")
    gas = row.get("gas_quote")
    return [
        f'<a href="/decisions/{row["seq"]}">{row["seq"]}</a>',
        e(row["bar_time"]),
        f"{row['target']:.4f}",
        e(row["side"]),
        e(row["traded"]),
        e(row["fee_text"]),
        "-" if impact is None else f"{impact:.2f}",
        "-" if gas is None else f"{gas:.4f}",
        onchain_html(row["onchain"]),
    ]


def decision_table(rows: Sequence[dict[str, Any]]) -> str:
    return table(
        "decisions",
        DECISION_HEADERS,
        (({"data-seq": str(r["seq"])}, decision_cells(r)) for r in rows),
        row_testid="decision-row",
    )


LIVE_SCRIPT = """
(function(){
  const body = document.querySelector('[data-testid="decisions"] tbody');
  const esc = s => String(s ?? '-').replace(/[&<>"']/g,
    c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}[c]));
  function onchain(o){
    if (o.state === 'confirmed') return '<span class=ok data-state="confirmed">confirmed</span>'
      + ' tx <code>' + esc(o.tx_hash) + '</code> block ' + esc(o.block);
    if (o.state === 'failed') return '<span class=bad data-state="failed">failed</span>: '
      + esc(o.reason);
    return '<span class=muted data-state="pending">pending</span>'
      + (o.reason ? ': ' + esc(o.reason) : '');
  }
  function cells(r){
    return ['<a href="/decisions/' + r.seq + '">' + r.seq + '</a>', esc(r.bar_time),
      r.target.toFixed(4), esc(r.side), esc(r.traded), esc(r.fee_text),
      r.impact_bps == null ? '-' : r.impact_bps.toFixed(2),
      r.gas_quote == null ? '-' : r.gas_quote.toFixed(4), onchain(r.onchain)];
  }
  function show(r){
    const old = body.querySelector('tr[data-seq="' + r.seq + '"]');
    const tr = document.createElement('tr');
    tr.setAttribute('data-testid', 'decision-row');
    tr.setAttribute('data-seq', r.seq);
    tr.innerHTML = cells(r).map(c => '<td>' + c + '</td>').join('');
    if (old) { old.replaceWith(tr); } else { body.prepend(tr); }
    if (r.exposure != null) {
      document.querySelector('[data-testid="exposure"]').textContent = r.exposure.toFixed(4);
    }
    const chart = document.querySelector('[data-testid="equity-chart"]');
    if (window.Plotly && chart && chart.data && r.value_quote != null) {
      Plotly.extendTraces(chart, {x: [[r.bar_time]], y: [[r.value_quote]]}, [0]);
    }
  }
  const after = document.body.getAttribute('data-last-seq');
  const source = new EventSource('/api/events?after=' + after);
  source.addEventListener('decision', ev => show(JSON.parse(ev.data)));
})();
"""


def equity_chart(equity: Any) -> str:
    """Return the equity chart's div and the script that draws it with plotly."""
    if equity is None or not equity.times_ms:
        return '<div data-testid="equity-chart" class=muted>no decisions yet</div>'
    from agent.market.schema import format_time_ms

    times = [format_time_ms(t) for t in equity.times_ms]
    traces = [
        {"x": times, "y": list(equity.live), "name": "live model", "mode": "lines"},
        {"x": times, "y": list(equity.hold), "name": "buy-and-hold", "mode": "lines"},
        {
            "x": [times[0], times[-1]],
            "y": [equity.flat_value, equity.flat_value],
            "name": "flat",
            "mode": "lines",
        },
    ]
    chart_layout = {
        "margin": {"l": 60, "r": 20, "t": 20, "b": 40},
        "height": 360,
        "yaxis": {"title": {"text": "portfolio value (quote)"}},
    }
    data = json.dumps(traces).replace("</", "<\\/")
    return (
        '<div id="equity" data-testid="equity-chart"></div><script>'
        f"Plotly.newPlot('equity', {data}, {json.dumps(chart_layout)},"
        " {responsive: true, displaylogo: false});</script>"
    )
