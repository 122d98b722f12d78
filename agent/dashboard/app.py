"""The Starlette application: routes, the token that guards actions, the decision stream.

Pages and reads answer anyone who can reach the port (127.0.0.1 by default); actions (verify
the trail, claim a reward) need `Authorization: Bearer <token>`, the token coming from
`AGORA_DASHBOARD_TOKEN`: without one configured they answer 403, with a wrong or missing
header 401. Each request opens its own connection to the store (read in a worker thread).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

from agent.config import Settings
from agent.dashboard import queries, views
from agent.errors import AgoraError
from agent.store import Store

TOKEN_ENV = "AGORA_DASHBOARD_TOKEN"
DISABLED = f"actions are disabled: set {TOKEN_ENV}"
POLL_S = 0.5
"""How often the event stream looks for new decisions in the store."""
KEEPALIVE_S = 15.0
STRATEGIES_TTL_S = 60.0


def token_from_env(environ: Any = None) -> str | None:
    """Return the actions' token from `AGORA_DASHBOARD_TOKEN` (None when unset or empty)."""
    value = (os.environ if environ is None else environ).get(TOKEN_ENV, "")
    return value or None


class Dashboard:
    """The state the routes share: settings, token, the running service, small caches."""

    def __init__(self, settings: Settings, runtime: Any, token: str | None) -> None:
        self.settings = settings
        self.runtime = runtime
        self.token = token
        self._strategies: tuple[float, list[dict[str, Any]]] | None = None
        self._equity: tuple[Any, Any] | None = None

    def store(self) -> Store:
        return Store(self.settings.data.database_path)

    def equity(self, store: Store) -> Any:
        """Return `service.equity.equity_since_start`, recomputed when a decision is added."""
        from agent.service.equity import equity_since_start

        key = queries.last_seq(store)
        if self._equity is None or self._equity[0] != key:
            self._equity = (key, equity_since_start(store, self.settings))
        return self._equity[1]

    def status(self, store: Store) -> dict[str, Any]:
        """Return `service.status.status` (as `agora status`), with this page's equity."""
        from agent.service.status import status

        return status(self.settings, equity=self.equity(store))

    def strategies(self, store: Store) -> list[dict[str, Any]]:
        """Return `plugins.registry.list_strategies` (as `agora strategies list`), cached."""
        now = time.monotonic()
        if self._strategies is None or now - self._strategies[0] > STRATEGIES_TTL_S:
            from agent.plugins.registry import list_strategies

            try:
                listed = [s.as_dict() for s in list_strategies(self.settings, store=store)]
            except AgoraError as err:
                listed = [{"name": "(plugins)", "status": "LOAD FAILED", "reason": str(err)}]
            self._strategies = (now, listed)
        return self._strategies[1]

    def authorise(self, request: Request) -> Response | None:
        """Return the refusal of an action, or None when its token is right."""
        if not self.token:
            return JSONResponse({"error": DISABLED}, status_code=403)
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        expected = self.token.encode()
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
            return JSONResponse(
                {"error": "a valid token is required: Authorization: Bearer <token>"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        return None


def _int(request: Request, name: str, default: int | None = None) -> int | None:
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        return default


def _app(request: Request) -> Dashboard:
    dashboard: Dashboard = request.app.state.dashboard
    return dashboard


# --- pages -------------------------------------------------------------------------------------
def live(request: Request) -> Response:
    dash = _app(request)
    with dash.store() as store:
        html = views.live_page(
            store,
            dash.settings,
            dash.status(store),
            dash.equity(store),
            before=_int(request, "before"),
            limit=queries.clamp_limit(_int(request, "limit")),
        )
    return HTMLResponse(html)


def decision(request: Request) -> Response:
    try:
        seq = int(request.path_params["seq"])
    except ValueError:
        return HTMLResponse("no such decision", status_code=404)
    with _app(request).store() as store:
        detail = queries.decision_detail(store, seq)
    if detail is None:
        return HTMLResponse(f"no decision {seq}", status_code=404)
    return HTMLResponse(views.decision_page(detail))


def audit(request: Request) -> Response:
    dash = _app(request)
    with dash.store() as store:
        return HTMLResponse(views.audit_page(store, bool(dash.token)))


def contributors(request: Request) -> Response:
    dash = _app(request)
    limit = queries.clamp_limit(_int(request, "limit"), 20)
    with dash.store() as store:
        html = views.contributors_page(
            store, queries.board(store), dash.strategies(store), _int(request, "before"), limit
        )
    return HTMLResponse(html)


def models(request: Request) -> Response:
    limit = queries.clamp_limit(_int(request, "limit"), 100)
    with _app(request).store() as store:
        return HTMLResponse(views.models_page(store, _int(request, "offset", 0) or 0, limit))


def backtests(request: Request) -> Response:
    limit = queries.clamp_limit(_int(request, "limit"), 20)
    with _app(request).store() as store:
        return HTMLResponse(views.backtests_page(store, _int(request, "offset", 0) or 0, limit))


def backtest_report(request: Request) -> Response:
    """Serve a run's HTML report: only the file the store records for that run."""
    with _app(request).store() as store:
        path = queries.report_path(store, str(request.path_params["run_id"]))
    if path is None or not Path(path).is_file():
        return HTMLResponse("no report for this run", status_code=404)
    return FileResponse(path, media_type="text/html")


def plotly_js(request: Request) -> Response:
    return Response(
        _plotly_source(),
        media_type="application/javascript",
        headers={"Cache-Control": "public, max-age=86400"},
    )


_PLOTLY: list[str] = []


def _plotly_source() -> str:
    if not _PLOTLY:
        from plotly.offline import get_plotlyjs

        _PLOTLY.append(get_plotlyjs())
    return _PLOTLY[0]


# --- service endpoints ---------------------------------------------------------------------------
def health(request: Request) -> Response:
    runtime = _app(request).runtime
    if runtime is None:
        return JSONResponse({"error": "not found"}, status_code=404)
    from agent.service.http import health_response

    code, body, content_type = health_response(runtime)
    return Response(body, status_code=code, media_type=content_type, headers=_NO_STORE)


def metrics(request: Request) -> Response:
    runtime = _app(request).runtime
    if runtime is None:
        return JSONResponse({"error": "not found"}, status_code=404)
    from agent.service.http import metrics_response

    code, body, content_type = metrics_response(runtime)
    return Response(body, status_code=code, headers={**_NO_STORE, "Content-Type": content_type})


_NO_STORE = {"Cache-Control": "no-store"}


# --- API -------------------------------------------------------------------------------------
def api_decisions(request: Request) -> Response:
    limit = queries.clamp_limit(_int(request, "limit"))
    with _app(request).store() as store:
        after = _int(request, "after")
        if after is not None:
            rows = queries.decisions_after(store, after, limit)
        else:
            rows = queries.decisions_before(store, _int(request, "before"), limit)
    return JSONResponse({"decisions": rows})


async def api_events(request: Request) -> Response:
    """Server-sent events: `decision` with a row's JSON for every new decision in the store.

    Starts after `?after=SEQ` (or the `Last-Event-ID` of a reconnecting browser; else the
    newest). `max_events` and `timeout_s` end the stream (for scripts and tests).
    """
    dash = _app(request)
    after = _int(request, "after")
    last_id = request.headers.get("last-event-id")
    if last_id and last_id.lstrip("-").isdigit():
        after = int(last_id)
    max_events = _int(request, "max_events")
    timeout = request.query_params.get("timeout_s")
    deadline = None if timeout is None else time.monotonic() + float(timeout)

    def read(since: int | None) -> tuple[int, list[dict[str, Any]]]:
        with Store(dash.settings.data.database_path) as store:
            if since is None:
                return queries.last_seq(store), []
            return since, queries.decisions_after(store, since, 100)

    async def stream() -> AsyncIterator[str]:
        since = after
        sent = 0
        quiet = time.monotonic()
        yield "retry: 1000\n\n"
        while True:
            since, rows = await asyncio.to_thread(read, since)
            for row in rows:
                yield f"id: {row['seq']}\nevent: decision\ndata: {json.dumps(row)}\n\n"
                since, sent, quiet = row["seq"], sent + 1, time.monotonic()
                if max_events is not None and sent >= max_events:
                    return
            if deadline is not None and time.monotonic() > deadline:
                return
            if time.monotonic() - quiet > KEEPALIVE_S:
                yield ": keep-alive\n\n"
                quiet = time.monotonic()
            if await request.is_disconnected():
                return
            await asyncio.sleep(POLL_S)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def api_verify(request: Request) -> Response:
    """Run `agora audit verify` for the configured chain; answer its report and verdict."""
    dash = _app(request)
    refused = dash.authorise(request)
    if refused is not None:
        return refused
    from agent.audit.trail import open_trail
    from agent.audit.verify import describe_report, verify

    notes: list[str] = []
    try:
        with (
            dash.store() as store,
            open_trail(dash.settings, store, progress=notes.append) as (
                backend,
                location,
            ),
        ):
            report = verify(store, backend, location.address)
    except AgoraError as err:
        return JSONResponse({"ok": False, "error": str(err), "lines": [str(err)]}, status_code=500)
    data = report.to_json_data()
    return JSONResponse(
        {
            **data,
            "chain_key": location.chain_key,
            "lines": describe_report(report, location.chain_key),
            "notes": notes,
        }
    )


async def api_claim(request: Request) -> Response:
    """Claim one strategy's allocation of an epoch (`agora rewards claim --contributor`)."""
    dash = _app(request)
    refused = dash.authorise(request)
    if refused is not None:
        return refused
    try:
        body = await request.json()
        epoch, strategy = int(body["epoch"]), str(body["strategy"])
    except (ValueError, KeyError, TypeError):
        return JSONResponse({"error": "expected JSON {epoch, strategy}"}, status_code=400)
    return await asyncio.to_thread(_claim, dash, epoch, strategy)


def _claim(dash: Dashboard, epoch: int, strategy: str) -> Response:
    from agent.chain.backends import connect
    from agent.chain.deploy import deploy_all
    from agent.rewards.epochs import claim_epoch
    from agent.rewards.ledger import require_epoch

    try:
        with dash.store() as store:
            record = require_epoch(store, epoch)
            accounts = [
                a.account for a in record.allocations if (a.strategy or "(remainder)") == strategy
            ]
            if not accounts:
                return JSONResponse(
                    {"error": f"epoch {epoch} has no allocation for {strategy}"}, status_code=404
                )
            with connect(dash.settings.chain, dash.settings.data.dir) as backend:
                deployment = deploy_all(backend, store, dash.settings)
                results = claim_epoch(store, backend, deployment, epoch, accounts=accounts)
    except AgoraError as err:
        return JSONResponse({"error": str(err)}, status_code=400 if err.exit_code == 2 else 500)
    return JSONResponse(
        {
            "claims": [
                {
                    "epoch": c.epoch,
                    "leaf_index": c.leaf_index,
                    "strategy": c.strategy,
                    "account": c.account,
                    "amount": str(c.amount),
                    "tx": c.tx,
                    "already_claimed": c.already_claimed,
                }
                for c in results
                if (c.strategy or "(remainder)") == strategy
            ]
        }
    )


def create_app(settings: Settings, *, runtime: Any = None, token: str | None = None) -> Starlette:
    """Return the dashboard over the data directory of `settings`.

    Args:
        settings: the configuration (its data directory's store is read; never rendered).
        runtime: the running service (`ServiceRuntime`): /health and /metrics answer from it,
            as `agent.service.http` does; 404 without one.
        token: the token actions require; None reads `AGORA_DASHBOARD_TOKEN` (unset or empty:
            actions are disabled, 403).
    """
    resolved = token if token is not None else token_from_env()
    routes = [
        Route("/", lambda request: RedirectResponse("/live", status_code=307)),
        Route("/live", live),
        Route("/decisions/{seq}", decision),
        Route("/audit", audit),
        Route("/contributors", contributors),
        Route("/models", models),
        Route("/backtests", backtests),
        Route("/backtests/{run_id}/report", backtest_report),
        Route("/static/plotly.min.js", plotly_js),
        Route("/health", health),
        Route("/metrics", metrics),
        Route("/api/decisions", api_decisions),
        Route("/api/events", api_events),
        Route("/api/audit/verify", api_verify, methods=["POST"]),
        Route("/api/rewards/claim", api_claim, methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    app.state.dashboard = Dashboard(settings, runtime, resolved or None)
    return app
