"""`agora audit …`: check the decision trail against the DecisionLog, show one decision's proof.

Both commands mirror `agent.audit.verify.verify` / `prove`. The DecisionLog is the one
recorded for the configured chain (or `--address`). The embedded chain keeps its own file in
the data directory and is never rebuilt here: if it is missing while the store holds decisions
the command fails and names `agora chain recover`. Only on a chain that does not persist (anvil
without a state file) are the contracts deployed and the stored trail replayed first, which
leaves only the store's own hash chain to check (records, stored hashes and `prev_hash` links).
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
    open_store,
    print_json,
    settings_for,
    stderr,
    stdout,
)

app = typer.Typer(
    help="The audit trail: verify every decision against the DecisionLog, show one with its proof.",
    no_args_is_help=True,
)

AddressOption = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="DecisionLog address (default: the one recorded for the configured chain).",
    ),
]


@contextmanager
def _trail(ctx: typer.Context, config: Any, address: str | None) -> Iterator[tuple[Any, Any, Any]]:
    """Yield (store, backend, location) for the configured chain, closing both afterwards."""
    from agent.audit.trail import open_trail

    settings = settings_for(ctx, config)
    with (
        open_store(settings) as store,
        open_trail(
            settings, store, address=address, progress=lambda m: stderr.print(f"note: {m}")
        ) as (backend, location),
    ):
        yield store, backend, location


RunOption = Annotated[
    str | None,
    typer.Option(
        "--run",
        help="Verify an `--onchain` backtest run (id or unique prefix) against its own "
        "DecisionLog instead of the service's trail.",
    ),
]


def _verify_run(ctx: typer.Context, config: Any, run_id: str) -> tuple[Any, Any]:
    """Verify the decision records of an `--onchain` backtest against the log they went to."""
    from agent.audit.verify import verify_records
    from agent.backtest.report import logged_run
    from agent.chain.backends import connect
    from agent.chain.deploy import chain_key
    from agent.errors import ChainError

    settings = settings_for(ctx, config)
    with open_store(settings) as store:
        logged = logged_run(store, run_id)
    with connect(settings.chain, settings.data.dir) as backend:
        here = chain_key(backend)
        if here != logged.chain_key:
            raise ChainError(
                f"backtest run {logged.run_id} logged its decisions on {logged.chain_key}, "
                f"but the configured chain is {here}: verify it against that chain"
            )
        report = verify_records(backend, logged.address, logged.records)
    return report, here


@app.command("verify")
def verify_cmd(
    ctx: typer.Context,
    address: AddressOption = None,
    run: RunOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Recompute every decision hash and compare it with the DecisionLog; exit 1 on a mismatch.

    Without `--run` the service's trail (the decisions in the store) is verified; with
    `--run RUN` the decision records of an `--onchain` backtest, against the run's own log.
    """
    from agent.audit.verify import verify

    if run is not None:
        if address is not None:
            from agent.errors import UsageError

            raise UsageError("--run verifies against the run's own DecisionLog: drop --address")
        report, key = _verify_run(ctx, config, run)
    else:
        with _trail(ctx, config, address) as (store, backend, location):
            report = verify(store, backend, location.address)
        key = location.chain_key
    if as_json:
        print_json({**report.to_json_data(), "chain_key": key})
    else:
        from agent.audit.verify import describe_report

        for line in describe_report(report, key):
            stdout.print(line, markup=False, highlight=False)
    if not report.ok:
        raise typer.Exit(1)


@app.command("show")
def show_cmd(
    ctx: typer.Context,
    seq: Annotated[
        int, typer.Argument(min=0, max=MAX_STORED_INT, help="Sequence number of the decision.")
    ],
    address: AddressOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Print one decision record with its on-chain proof (entry, logging transaction, head)."""
    from agent.audit.verify import prove

    with _trail(ctx, config, address) as (store, backend, location):
        proof = prove(store, backend, location.address, seq)
    if as_json:
        print_json({**proof.to_json_data(), "chain_key": location.chain_key})
        return
    _print_proof(proof, location.chain_key)


def _print_proof(proof: Any, chain: str) -> None:
    from rich.table import Table

    table = Table(title=f"decision {proof.seq}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    record = proof.record
    if record is None:
        table.add_row("record", "(the stored record does not parse)")
    else:
        trade = record.trade
        strategies = ", ".join(
            f"{name}={signal:+.9f}" if mask else f"{name}=(masked)"
            for name, signal, mask in zip(
                record.strategy_names, record.signals, record.masks, strict=True
            )
        )
        rows = [
            ("bar time (ms)", str(record.bar_time_ms)),
            ("market", record.market),
            ("model id", record.model_id),
            ("config hash", record.config_hash),
            ("observation digest", record.observation_digest),
            ("signals", strategies or "(none)"),
            ("target exposure", f"{record.target_exposure:.9f}"),
            (
                "trade",
                f"{trade.side}: in {trade.amount_in}, out {trade.amount_out}, fee {trade.fee}, "
                f"gas {trade.gas_used}, tx {trade.tx_hash}",
            ),
            ("prev hash", record.prev_hash),
        ]
        for name, value in rows:
            table.add_row(name, value)
    table.add_row("stored hash", proof.stored_hash)
    table.add_row("recomputed hash", proof.recomputed_hash or "-")
    table.add_row("outbox status", proof.status)
    table.add_row("on-chain hash", proof.onchain_hash or "(no entry: the log is shorter)")
    table.add_row("logged in", _logged_in(proof))
    table.add_row("head after it", proof.head_after or "-")
    table.add_row(
        "log", f"{proof.decision_log} on {chain}: {proof.onchain_count} entries, head {proof.head}"
    )
    stdout.print(table)
    verdict = "MATCHES" if proof.matches else "DOES NOT MATCH"
    stdout.print(f"the record {verdict} its on-chain entry", markup=False, highlight=False)


def _logged_in(proof: Any) -> str:
    if proof.tx_hash is None:
        return "-"
    return f"tx {proof.tx_hash}, block {proof.block_number}"
