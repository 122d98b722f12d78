"""`agora run` and `agora status`: the scheduled service and its state.

Both mirror `agent.service.run` / `agent.service.status`. `run` writes JSON lines (one per
decision and event) to stderr or `service.log_file` and stops cleanly on SIGTERM / SIGINT.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from agent.cli.common import ConfigOption, JsonOption, print_json, settings_for, stdout


def run(
    ctx: typer.Context,
    once: Annotated[
        bool,
        typer.Option(
            "--once",
            help="Run each job once (a replay reveals one bar; an exchange feed decides the "
            "newest closed bars), then stop: for cron and tests.",
        ),
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Run the service: decide every bar, replicate on-chain, retrain, pay epochs, until stopped."""
    from agent.service import run as run_service

    settings = settings_for(ctx, config)
    http_server = None
    if settings.service.dashboard:
        from agent.dashboard.server import service_server

        http_server = service_server(settings)
    code = run_service(settings, once=once, http_server=http_server)
    if code:
        raise typer.Exit(code)


def status(ctx: typer.Context, config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Show the service's state (running or stopped) from the store."""
    from agent.service import status as read_status

    settings = settings_for(ctx, config)
    state = read_status(settings)
    if as_json:
        print_json(state)
        return
    _print(state)


def _print(state: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title="agora service", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    pid = f" (pid {state['pid']})" if state.get("pid") else ""
    table.add_row("state", f"{state['state']}{pid}")
    if state["state"] == "never started":
        stdout.print(table)
        return
    rows = [
        ("started", state.get("started")),
        ("stopped", state.get("stopped")),
        ("error", state.get("error")),
        ("feed / chain", f"{state.get('feed')} / {state.get('chain')}"),
        ("endpoint", state.get("http")),
        ("market", state.get("market")),
        (
            "bars",
            f"{state['decided']} decided ({state['trades']} traded), {state['skipped']} skipped; "
            f"last {state.get('last_bar')}",
        ),
        ("live model", state.get("live_model")),
        ("trading", _policy_line(state.get("policy"))),
        (
            "audit trail",
            f"{state['decisions_stored']} decisions, {state['outbox_size']} not yet on-chain",
        ),
    ]
    decision = state.get("last_decision")
    if decision:
        rows.append(
            (
                "last decision",
                f"bar {decision['bar']}: exposure {decision['target_exposure']}, "
                f"{decision['side']}, value {decision['value_quote']:.2f}",
            )
        )
    equity = state.get("equity")
    if equity:
        rows.append(
            (
                "equity",
                f"live model {equity['live']}, buy-and-hold {equity['hold']}, flat "
                f"{equity['flat']} (since {equity['since']})",
            )
        )
    for chain in state.get("chains", [])[:1]:
        rows.append(("chain", f"{chain['chain_key']}: replicated to {chain['synced_bar']}"))
        failed = chain.get("failed_bar")
        if failed:
            rows.append(
                (
                    "failed bar",
                    f"{failed['bar']} ({failed['attempts']} attempts, tried again with the "
                    f"next bar): {failed['error']}",
                )
            )
    epoch = state.get("last_epoch")
    if epoch:
        rows.append(("last epoch", f"{epoch['epoch']} {epoch['status']}, {epoch['total']} units"))
    heartbeat = state.get("heartbeat") or {}
    if heartbeat:
        rows.append(
            ("heartbeat", f"{heartbeat.get('status')}, lag {heartbeat.get('lag_bars')} bars")
        )
    for skip in state.get("recent_skips", [])[:3]:
        rows.append(("skipped", f"{skip['bar']}: {skip['reason']}"))
    for job in state.get("jobs", []):
        rows.append((f"job {job['job']}", f"{job['runs']} runs, last {job['status']}"))
    for name, value in rows:
        if value is not None:
            table.add_row(name, str(value))
    stdout.print(table)


def _policy_line(policy: Any) -> str | None:
    """What the service trades: the live model, or a baseline and why."""
    if not policy:
        return None
    if policy.get("kind") == "baseline":
        return f"the baseline policy {policy['id']} ({policy.get('reason')})"
    return f"the live model {str(policy.get('id'))[:12]}"
