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
    MAX_STORED_INT,
    ConfigOption,
    JsonOption,
    ProgressBar,
    open_store,
    print_json,
    settings_for,
    stdout,
)
from agent.rewards.units import format_amount, format_units

app = typer.Typer(
    help="Contributor rewards: measure, publish and claim an epoch; show one; the leaderboard.",
    no_args_is_help=True,
)

EpochArgument = Annotated[
    int, typer.Argument(min=0, max=MAX_STORED_INT, help="Epoch number (bars k*epoch_bars …).")
]


@contextmanager
def _chain(settings: Any, store: Any) -> Iterator[tuple[Any, Any]]:
    from agent.chain.backends import connect
    from agent.chain.deploy import deploy_all

    with connect(settings.chain, settings.data.dir) as backend:
        yield backend, deploy_all(backend, store, settings)


SOURCES = {
    "recorded": "signals as recorded in the live service's decision records",
    "history": "signals recomputed from stored candles (look-ahead checked)",
}


def _print_record(record: Any) -> None:
    from rich.table import Table

    summary = record.attribution
    status = record.status + (f" on {record.chain_key}" if record.chain_key else "")
    method = summary.get("method", "?")
    source = summary.get("source", "history")
    stdout.print(
        f"epoch {record.epoch}: bars {record.start_bar}-{record.end_bar - 1}, model "
        f"{record.model_id or '-'}, {method} Shapley over {record.metric}, {status}"
    )
    stdout.print(f"source: {SOURCES.get(source, source)}")
    if summary.get("baseline"):
        stdout.print(summary.get("reason", ""))
    released = int(summary.get("released", record.carry_in if method == "none" else 0))
    stdout.print(
        f"v(all) {record.v_all:+.6f}, v(none) {record.v_empty:+.6f}; pool "
        f"{format_units(record.pool)} AGR = emission {format_units(record.emission)} + released "
        f"from the carried reserve {format_units(released)} + profit share "
        f"{format_units(record.profit_share)}"
    )
    stdout.print(
        f"paid {format_units(record.total)} AGR, carried on {format_units(record.carry_out)} "
        f"(reserve in {format_units(record.carry_in)})"
    )
    scores = {s["name"]: s for s in summary.get("scores", [])}
    significance = summary.get("significance")
    if significance is not None:
        stdout.print(
            f"paid only beyond {significance:g} standard errors of the accumulated contribution "
            f"(half-life {summary.get('decay_half_life_epochs', 0):g} epochs)"
        )
    table = Table("strategy", "contribution ± se", "accumulated ± se", "z", "verdict", "AGR")
    for a in record.allocations:
        score = scores.get(a.strategy or "", {})
        table.add_row(
            a.strategy or "(remainder)",
            "" if a.contribution is None else f"{a.contribution:+.4f} ± {a.std_error or 0:.4f}",
            f"{score['accumulated']:+.4f} ± {score['accumulated_se']:.4f}" if score else "",
            f"{score['z']:+.2f}" if score else "",
            score.get("verdict", ""),
            format_amount(a.amount),
        )
    stdout.print(table)
    grouped = summary.get("groups") or {}
    for name, info in grouped.items():
        by = ", ".join(f"{n} ({r2:.2f})" for n, r2 in info["explained_by"])
        stdout.print(
            f"{name}: {info['r2']:.0%} of its signal is explained by earlier strategies ({by}); "
            "credited only for the rest"
        )
    for a in record.allocations:
        if a.amount:
            claimed = "claimed" if a.claimed else "unclaimed"
            stdout.print(
                f"{a.strategy or '(remainder)'}: {format_units(a.amount)} AGR to {a.account} "
                f"({a.account_source}), leaf {a.leaf_index}, {claimed}"
            )
    if record.root:
        stdout.print(f"Merkle root {record.root}")


@app.command("run-epoch")
def run_epoch(
    ctx: typer.Context,
    epoch: EpochArgument,
    through: Annotated[
        int | None,
        typer.Option(
            "--through", min=0, max=MAX_STORED_INT, help="Run every epoch from N through this one."
        ),
    ] = None,
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
    """Measure each strategy's contribution to epoch N (through --through), record, publish.

    Epochs the live service decided are measured on the signals its decision records hold;
    others on signals recomputed from the stored candles. A recorded epoch is never
    recomputed: running it again only publishes (and claims) what the chain lacks. The
    coalitions run where `compute.backend` says (local processes, or Ray tasks).
    """
    from agent.compute import open_backend
    from agent.errors import UsageError
    from agent.rewards import epochs
    from agent.rewards.inputs import inputs_for_epoch, load_inputs
    from agent.rewards.ledger import read_epoch

    last = epoch if through is None else through
    if last < epoch:
        raise UsageError(f"--through {last} is before epoch {epoch}")
    settings = settings_for(ctx, config)
    runs = []
    with (
        open_backend(settings) as compute,
        open_store(settings) as store,
        _chain(settings, store) as (backend, deployment),
    ):
        inputs = None
        for number in range(epoch, last + 1):
            if read_epoch(store, number) is None and inputs is None:
                inputs = load_inputs(settings, store, model)
            chosen = (
                None
                if inputs is None or read_epoch(store, number) is not None
                else inputs_for_epoch(inputs, store, number, settings.rewards.epoch_bars)
            )
            with ProgressBar(f"epoch {number}: coalitions") as progress:
                runs.append(
                    epochs.run_epoch(
                        number,
                        store=store,
                        backend=backend,
                        deployment=deployment,
                        settings=settings,
                        **(chosen.run_arguments() if chosen else {}),
                        auto_claim=claim,
                        progress=progress,
                        compute=compute,
                    )
                )
    if as_json:
        documents = [
            {
                **run.record.to_dict(),
                "computed_now": run.computed,
                "publish_tx": run.published_tx,
                "claims": [_claim_dict(c) for c in run.claims],
            }
            for run in runs
        ]
        print_json(documents[0] if through is None else documents)
        return
    for run in runs:
        if not run.computed:
            stdout.print(f"epoch {run.record.epoch} was already recorded: nothing recomputed")
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
    """Leaderboard over every recorded epoch: standing, verdict, group, earned, claimed, carried."""
    from rich.table import Table

    from agent.rewards.ledger import leaderboard, list_epochs, totals

    settings = settings_for(ctx, config)
    with open_store(settings) as store:
        rows, epochs, books = leaderboard(store), list_epochs(store), totals(store)
    if as_json:
        amounts = ("earned", "claimed", "unclaimed")
        print_json(
            {
                "epochs": epochs,
                **{k: str(v) for k, v in books.items()},
                "contributors": [
                    {k: (str(v) if k in amounts else v) for k, v in row.items()} for row in rows
                ],
            }
        )
        return
    stdout.print(
        f"{len(epochs)} epoch(s) recorded: {format_units(books['emitted'])} AGR emitted = "
        f"{format_units(books['paid'])} paid + {format_units(books['carried'])} carried"
    )
    stdout.print("standing: the decayed sum of each strategy's contributions, ± its error")
    table = Table("strategy", "accumulated ± se", "z", "verdict", "group", "earned", "unclaimed")
    for row in rows:
        standing = (
            f"{row['accumulated']:+.4f} ± {row['accumulated_se']:.4f}"
            if row["accumulated"] is not None
            else ""
        )
        group = row["group"]
        table.add_row(
            row["strategy"],
            standing,
            "" if row["z"] is None else f"{row['z']:+.2f}",
            row["verdict"] or "",
            "" if group in (None, row["strategy"]) else group,
            format_amount(row["earned"]),
            format_amount(row["unclaimed"]),
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
