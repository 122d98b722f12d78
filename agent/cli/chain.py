"""`agora chain …`: the data directory's chain: show it, rebuild it from the store.

Both commands mirror `agent.chain.custody.chain_status` / `agent.service.recover.recover`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from agent.cli.common import ConfigOption, JsonOption, print_json, settings_for, stderr, stdout

app = typer.Typer(
    help="The chain: show its state, rebuild a lost chain (embedded or anvil) from the store.",
    no_args_is_help=True,
)


@app.command("status")
def status_cmd(
    ctx: typer.Context, config: ConfigOption = None, as_json: JsonOption = False
) -> None:
    """Show the chain: backend, chain file and size, node, head block, recorded contracts.

    While `agora run` runs, this is the service's chain (the command attaches to its node).
    """
    from agent.chain.custody import chain_status

    state = chain_status(settings_for(ctx, config))
    if as_json:
        print_json(state)
        return
    for name, value in state.items():
        if name == "contracts":
            for contract, address in value.items():
                stdout.print(f"{contract:>18}: {address}", markup=False, highlight=False)
        else:
            stdout.print(f"{name:>18}: {value}", markup=False, highlight=False)


@app.command("recover")
def recover_cmd(
    ctx: typer.Context,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Rebuild even a healthy chain that holds the store's records."
        ),
    ] = False,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Rebuild a lost, reset or corrupt chain from the store (the old state is kept aside).

    For the embedded chain file or anvil's state file: starts a fresh chain, deploys the
    contracts and replays the store onto it: the service's bars, the decision log and the
    reward epochs (and their claims). It proves the store is self-consistent (every record
    hashes to its log entry; the bars replay to the pool and balances the records imply); it
    cannot prove the decisions were published when they were made. Stop `agora run` first.
    """
    from agent.service.recover import recover

    report = recover(
        settings_for(ctx, config), force=force, progress=lambda m: stderr.print(f"note: {m}")
    )
    if as_json:
        print_json(report.to_json_data())
        return
    lines = [
        f"recovered the {report.backend} chain {report.chain_path} ({report.reason})",
        *(f"  kept the old file as {p}" for p in report.moved_aside),
        *(
            [f"  kept the records made on the lost chain under {report.retired_key}"]
            if report.retired_key
            else []
        ),
        f"  new chain {report.chain_key}: deployed {', '.join(report.deployed) or 'nothing'}",
        f"  replayed {report.bars_replayed} service bars, {report.decisions_replayed} decisions, "
        f"{report.epochs_replayed} reward epochs",
        f"PROVES: {report.proves}",
        f"CANNOT PROVE: {report.cannot_prove}",
    ]
    for line in lines:
        stdout.print(line, markup=False, highlight=False)
