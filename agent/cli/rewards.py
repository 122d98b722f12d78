"""`agora rewards …`: measure contributions, publish an epoch's rewards, claim, show, status.

Each command is a thin layer over `agent.rewards.epochs`. Commands that touch the chain open
the configured backend and find (or deploy) Agora's contracts; on a chain that does not keep
its state (anvil without a state file), a recorded epoch is published again before it is
claimed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from agent.cli.common import (
    ConfigOption,
    JsonOption,
    ProgressBar,
    open_store,
    print_json,
    settings_for,
    stdout,
)

app = typer.Typer(
    help="Contributor rewards: measure, publish and claim an epoch; show one; the leaderboard.",
    no_args_is_help=True,
)

EpochArgument = Annotated[int, typer.Argument(min=0, help="Epoch number (bars k*epoch_bars …).")]
TOKEN_DECIMALS = 18


def format_units(amount: int, decimals: int = TOKEN_DECIMALS) -> str:
    """Return token units as an exact decimal number of tokens (`1.5` for 1.5e18 units)."""
    whole, fraction = divmod(int(amount), 10**decimals)
    digits = f"{fraction:0{decimals}d}".rstrip("0")
    return f"{whole:,}.{digits}" if digits else f"{whole:,}"


@contextmanager
def _chain(settings: Any, store: Any) -> Iterator[tuple[Any, Any]]:
    from agent.chain.backends import connect
    from agent.chain.deploy import deploy_all

    with connect(settings.chain, settings.data.dir) as backend:
        yield backend, deploy_all(backend, store, settings)


def _print_record(record: Any) -> None:
    from rich.table import Table

    status = record.status + (f" on {record.chain_key}" if record.chain_key else "")
    method = record.attribution.get("method", "?")
    stdout.print(
        f"epoch {record.epoch}: bars {record.start_bar}-{record.end_bar - 1}, model "
        f"{record.model_id or '-'}, {method} Shapley over {record.metric}, {status}"
    )
    stdout.print(
        f"v(all) {record.v_all:+.6f}, v(none) {record.v_empty:+.6f}; pool "
        f"{format_units(record.pool)} AGR = emission {format_units(record.emission)} + carried "
        f"{format_units(record.carry_in)} + profit share {format_units(record.profit_share)}; "
        f"published {format_units(record.total)}, carried on {format_units(record.carry_out)}"
    )
    table = Table("strategy", "contribution", "± se", "AGR", "account", "source", "claimed")
    for a in record.allocations:
        table.add_row(
            a.strategy or "(remainder)",
            "" if a.contribution is None else f"{a.contribution:+.6f}",
            "" if not a.std_error else f"{a.std_error:.6f}",
            format_units(a.amount),
            a.account,
            a.account_source,
            "yes" if a.claimed else ("-" if a.leaf_index is None else "no"),
        )
    stdout.print(table)
    if record.root:
        stdout.print(f"Merkle root {record.root}")


@app.command("run-epoch")
def run_epoch(
    ctx: typer.Context,
    epoch: EpochArgument,
    model: Annotated[str, typer.Option("--model", help="Model id to measure.")] = "live",
    claim: Annotated[
        bool | None,
        typer.Option(
            "--claim/--no-claim",
            help="Claim every allocation after publishing (default: rewards.auto_claim).",
        ),
    ] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Measure each strategy's contribution to epoch N, record it, publish its Merkle root."""
    from agent.rewards import epochs
    from agent.rewards.ledger import read_epoch

    settings = settings_for(ctx, config)
    with open_store(settings) as store, _chain(settings, store) as (backend, deployment):
        inputs = None
        if read_epoch(store, epoch) is None:
            inputs = epochs.load_inputs(settings, store, model)
        with ProgressBar(f"epoch {epoch}: coalitions") as progress:
            run = epochs.run_epoch(
                epoch,
                store=store,
                backend=backend,
                deployment=deployment,
                settings=settings,
                policy=inputs.policy if inputs else None,
                data=inputs.data if inputs else None,
                metadata=inputs.metadata if inputs else None,
                registry_names=inputs.registry_names if inputs else None,
                model_id=inputs.model_id if inputs else None,
                env_config=inputs.env_config if inputs else None,
                quarantined=inputs.quarantined if inputs else (),
                auto_claim=claim,
                progress=progress,
            )
    if as_json:
        print_json(
            {
                **run.record.to_dict(),
                "computed_now": run.computed,
                "publish_tx": run.published_tx,
                "claims": [_claim_dict(c) for c in run.claims],
            }
        )
        return
    if not run.computed:
        stdout.print(f"epoch {epoch} was already recorded: nothing recomputed")
    _print_record(run.record)
    if run.claims:
        stdout.print(f"{sum(1 for c in run.claims if c.tx)} claim(s) sent")


@app.command()
def show(
    ctx: typer.Context,
    epoch: EpochArgument,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a recorded epoch: contributions, amounts, accounts, proofs' root, claims."""
    from agent.errors import UsageError
    from agent.rewards.ledger import read_epoch

    settings = settings_for(ctx, config)
    with open_store(settings) as store:
        record = read_epoch(store, epoch)
    if record is None:
        raise UsageError(f"reward epoch {epoch} is not recorded: run `agora rewards run-epoch`")
    if as_json:
        print_json(record.to_dict())
    else:
        _print_record(record)


@app.command()
def claim(
    ctx: typer.Context,
    epoch: EpochArgument,
    claim_all: Annotated[bool, typer.Option("--all", help="Claim every allocation.")] = False,
    contributor: Annotated[
        list[str] | None,
        typer.Option("--contributor", help="Claim this account's allocations (repeatable)."),
    ] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Claim epoch N's rewards on the contributors' behalf; the tokens go to each leaf's account."""
    from agent.errors import UsageError
    from agent.rewards.epochs import claim_epoch

    if claim_all == bool(contributor):
        raise UsageError("give either --all or at least one --contributor ADDRESS")
    settings = settings_for(ctx, config)
    with open_store(settings) as store, _chain(settings, store) as (backend, deployment):
        results = claim_epoch(
            store, backend, deployment, epoch, accounts=None if claim_all else contributor
        )
    if as_json:
        print_json([_claim_dict(c) for c in results])
        return
    if not results:
        stdout.print(f"epoch {epoch}: nothing to claim")
    for c in results:
        what = "already claimed" if c.already_claimed else f"claimed in {c.tx}"
        stdout.print(
            f"epoch {epoch} leaf {c.leaf_index} ({c.strategy or 'remainder'}): "
            f"{format_units(c.amount)} AGR to {c.account}, {what}"
        )


@app.command()
def status(ctx: typer.Context, config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Leaderboard over every recorded epoch: contribution, earned, claimed, unclaimed."""
    from rich.table import Table

    from agent.rewards.ledger import leaderboard, list_epochs

    settings = settings_for(ctx, config)
    with open_store(settings) as store:
        rows, epochs = leaderboard(store), list_epochs(store)
    if as_json:
        amounts = ("earned", "claimed", "unclaimed")
        print_json(
            {
                "epochs": epochs,
                "contributors": [
                    {k: (str(v) if k in amounts else v) for k, v in row.items()} for row in rows
                ],
            }
        )
        return
    stdout.print(f"{len(epochs)} epoch(s) recorded")
    table = Table(
        "strategy",
        "account",
        "epochs",
        "contribution",
        "earned AGR",
        "claimed AGR",
        "unclaimed AGR",
    )
    for row in rows:
        table.add_row(
            row["strategy"],
            row["account"],
            str(row["epochs"]),
            f"{row['contribution']:+.6f}",
            format_units(row["earned"]),
            format_units(row["claimed"]),
            format_units(row["unclaimed"]),
        )
    stdout.print(table)


def _claim_dict(claim: Any) -> dict[str, Any]:
    return {
        "epoch": claim.epoch,
        "leaf_index": claim.leaf_index,
        "strategy": claim.strategy,
        "account": claim.account,
        "amount": str(claim.amount),
        "tx": claim.tx,
        "already_claimed": claim.already_claimed,
    }
