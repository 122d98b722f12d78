"""Reward epochs: attribution -> payout -> Merkle tree -> store -> chain -> claims.

Epoch k covers the decisions at bars [k * epoch_bars, (k + 1) * epoch_bars) of the market data
(the first epoch starts after the policy's warm-up) and is valued at the close of bar
(k + 1) * epoch_bars, so it can run once that bar has closed. Crash-only, like the rest of
Agora: the epoch is written to the store (`computed`) before its root is sent, and running it
again never recomputes a recorded epoch; it only finishes what is missing: publishing the
root on the current chain (which also replays it onto a fresh embedded chain) and, when asked,
claiming. An epoch already published and claimed does nothing.

Epochs are computed in increasing order (one may be skipped, and then pays nothing): the
remainder an epoch carries goes to the next one computed, exactly once.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from eth_utils import is_address, keccak, to_checksum_address
from web3.exceptions import Web3Exception

from agent.chain.backends import ChainBackend
from agent.chain.deploy import Deployment
from agent.compute import Backend
from agent.config import RewardsSettings, Settings
from agent.env.trading_env import EnvConfig, MarketData
from agent.errors import ChainError, DataError, StoreError, UsageError
from agent.rewards.attribution import Attribution, Progress, shapley
from agent.rewards.game import EpochGame, Metric, evaluate_epoch
from agent.rewards.ledger import (
    COMPUTED,
    EMPTY,
    METADATA,
    PUBLISHED,
    REGISTRY,
    TREASURY,
    Allocation,
    EpochRecord,
    carry_into,
    mark_claimed,
    mark_published,
    now,
    previous_standings,
    read_epoch,
    require_epoch,
    write_epoch,
)
from agent.rewards.merkle import MerkleTree
from agent.rewards.payout import Payout, epoch_pool, profit_share, quote_to_units, split
from agent.rewards.scoring import Score, Standing, evidence_weights, released, score_epoch
from agent.store import Store

_ZERO_ROOT = bytes(32)
RECORDED, HISTORY = "recorded", "history"
"""Where an epoch's signals came from: the live service's decision records, or recomputed
from stored candles (look-ahead checked)."""


@dataclass(frozen=True)
class EpochWindow:
    """The decisions of an epoch: bars [start, end); `end`'s close values the epoch."""

    epoch: int
    start: int
    end: int


@dataclass(frozen=True)
class PayoutAccount:
    """Who is paid for a strategy, and where that address came from."""

    address: str
    source: str


@dataclass(frozen=True)
class ClaimResult:
    """One claim: sent now (`tx` set) or found already claimed on-chain."""

    epoch: int
    leaf_index: int
    strategy: str | None
    account: str
    amount: int
    tx: str | None
    already_claimed: bool


@dataclass(frozen=True)
class EpochRun:
    """What `run_epoch` did."""

    record: EpochRecord
    computed: bool
    published_tx: str | None
    claims: tuple[ClaimResult, ...] = ()


# --- epochs and payout addresses --------------------------------------------------------------


def epoch_window(epoch: int, epoch_bars: int, bars: int, first_bar: int = 0) -> EpochWindow:
    """Return the bars an epoch decides on.

    Raises:
        DataError: the epoch lies in the warm-up or is not complete in `bars` bars.
    """
    if epoch < 0:
        raise DataError(f"epoch {epoch}: epochs are numbered from 0")
    start, end = max(epoch * epoch_bars, first_bar), (epoch + 1) * epoch_bars
    if end <= first_bar:
        raise DataError(
            f"epoch {epoch} (bars {epoch * epoch_bars}-{end - 1}) lies in the warm-up: the first "
            f"decision is at bar {first_bar}, in epoch {first_bar // epoch_bars}"
        )
    if end > bars - 1:
        raise DataError(
            f"epoch {epoch} is not complete: it decides up to bar {end - 1} and is valued at the "
            f"close of bar {end}, but the data has {bars} bars (0-{bars - 1})"
        )
    return EpochWindow(epoch, start, end)


def strategy_id(name: str) -> bytes:
    """Return a strategy's id in the StrategyRegistry: keccak256 of its name."""
    return bytes(keccak(text=name))


def payout_accounts(
    names: Sequence[str],
    metadata: Mapping[str, str | None],
    treasury: str,
    registry: Any = None,
    registry_names: Mapping[str, str] | None = None,
) -> dict[str, PayoutAccount]:
    """Return who is paid for each strategy: the registry, else the metadata, else the treasury.

    Args:
        names: the strategies (signal columns).
        metadata: each strategy's declared `payout_address` (None or missing: none).
        treasury: paid for strategies with no payout address (shipped ones, for instance).
        registry: the StrategyRegistry contract, if there is a chain to ask.
        registry_names: the name a column is registered under (default: the column name).
    """
    accounts: dict[str, PayoutAccount] = {}
    for name in names:
        if registry is not None:
            sid = strategy_id((registry_names or {}).get(name, name))
            if _call(registry.functions.statusOf(sid).call, f"read {name!r} in the registry"):
                payout = _call(registry.functions.get(sid).call, f"read {name!r}")[0]
                accounts[name] = PayoutAccount(to_checksum_address(payout), REGISTRY)
                continue
        declared = metadata.get(name)
        if declared and is_address(declared):
            accounts[name] = PayoutAccount(to_checksum_address(declared), METADATA)
        else:
            accounts[name] = PayoutAccount(to_checksum_address(treasury), TREASURY)
    return accounts


# --- computing an epoch (no I/O) ----------------------------------------------------------------


@dataclass(frozen=True)
class WindowMeasurement:
    """Every strategy's contribution to one window, as an epoch measures it.

    Attributes:
        game: the window's game (`agent.rewards.game`).
        attribution: the players' Shapley values with their standard errors.
        scores: every strategy's score, in `names` order (`agent.rewards.scoring`).
        active: the players: strategies neither quarantined nor without a signal in the window.
    """

    game: EpochGame
    attribution: Attribution
    scores: list[Score]
    active: list[str]


def measure_window(
    policy: Any,
    data: MarketData,
    start: int,
    end: int,
    names: Sequence[str],
    rewards: RewardsSettings,
    *,
    epoch: int = 0,
    env_config: EnvConfig | None = None,
    metric: Metric = "log_return",
    progress: Progress | None = None,
    quarantined: Collection[str] = (),
    previous: Mapping[str, Standing] | None = None,
    compute: Backend | None = None,
) -> WindowMeasurement:
    """Measure every strategy's contribution to the decisions at bars [start, end) and score it.

    The one measurement payouts use (`compute_epoch`) and contributors preview
    (`agora strategies evaluate`): the game over the active strategies in registration order,
    their Shapley values with block-bootstrap standard errors (seeded by `shapley_seed +
    epoch`), and their scores against `previous` standings.

    The coalitions run on `rewards.workers` local processes, or, with a `compute` backend other
    than the local one (`compute.backend: ray`), as its tasks in batches; the values are the
    same bit for bit either way.
    """
    in_window = data.mask[start:end]
    active = [
        n
        for n in names
        if n not in quarantined and in_window[:, data.strategy_names.index(n)].any()
    ]
    game = evaluate_epoch(
        policy,
        data,
        start,
        end,
        active,
        env_config=env_config,
        metric=metric,
        group_r2=rewards.group_r2,
        lags=rewards.neutralise_lags,
    )
    attribution = shapley(
        game,
        active,
        exact_max_players=rewards.shapley_exact_max_players,
        samples=rewards.shapley_samples,
        seed=rewards.shapley_seed,
        workers=rewards.workers,
        spreader=None if compute is None or compute.name == "local" else compute,
        progress=progress,
        bootstrap_samples=rewards.bootstrap_samples,
        bootstrap_block=rewards.bootstrap_block_bars,
        bootstrap_seed=rewards.shapley_seed + epoch,
        groups=game.partition(),
    )
    groups = {n: (g["group"], g["r2"]) for n, g in game.groups().items()}
    scores = score_epoch(
        epoch,
        names,
        attribution.by_name(),
        attribution.errors_by_name(),
        previous or {},
        significance=rewards.significance,
        half_life_epochs=rewards.decay_half_life_epochs,
        groups=groups,
        inactive=[n for n in names if n not in active and n not in quarantined],
        quarantined=[n for n in names if n in quarantined],
    )
    return WindowMeasurement(game, attribution, scores, active)


def compute_epoch(
    epoch: int,
    policy: Any,
    data: MarketData,
    rewards: RewardsSettings,
    accounts: Mapping[str, PayoutAccount],
    treasury: str,
    *,
    carry_in: int = 0,
    model_id: str | None = None,
    names: Sequence[str] | None = None,
    env_config: EnvConfig | None = None,
    metric: Metric = "log_return",
    progress: Progress | None = None,
    baseline: str | None = None,
    quarantined: Collection[str] = (),
    previous: Mapping[str, Standing] | None = None,
    source: str = HISTORY,
    first_bar: int | None = None,
    source_detail: Mapping[str, Any] | None = None,
    compute: Backend | None = None,
) -> EpochRecord:
    """Measure every strategy's contribution to an epoch and split its pool; write nothing.

    The contributions are Shapley values of the epoch's game (`agent.rewards.game`: later
    strategies neutralised against earlier ones), with block-bootstrap standard errors; they
    accumulate with the strategies' `previous` standings, and the pool is split by the evidence
    (`agent.rewards.scoring`). What is not paid is carried (or goes to the treasury).

    An epoch traded by a baseline policy (`baseline`: no model passed the gate) is not
    attributed: no agent, no attribution. Its whole pool is carried to the next epoch.

    Strategies with no available signal anywhere in the epoch cannot change an action: they
    get 0 without being part of the game (halving its size each). Quarantined strategies
    (caught looking ahead, see `agent.plugins.lookahead`) are never part of the game and are
    never paid, whatever their signal: their signal is masked, their standing is forfeited.

    Args:
        epoch: the epoch number.
        policy: observation -> action, or an object with `predict` and `env_config`.
        data: the market and every strategy's signal, bar 0 being bar 0 of the epochs.
        rewards: emission, profit share, remainder policy, Shapley and scoring settings.
        accounts: the payout account of every strategy in `names`.
        treasury: paid the remainder under the `treasury` policy.
        carry_in: units carried from the previous epoch (the reserve).
        model_id: the model measured, for the record.
        names: the strategies competing, in registration order, the earliest first
            (default: every strategy of `data`, in column order).
        env_config: the environment to run the policy in (default: the policy's).
        metric: what a coalition's value measures.
        progress: called with (evaluations done, to do).
        baseline: the baseline policy that traded the epoch (its pool is carried).
        quarantined: strategies caught looking ahead: contribution 0, amount 0.
        previous: each strategy's standing after the earlier epochs.
        source: where the signals came from: `recorded` (the live service's decision records)
            or `history` (recomputed from stored candles, look-ahead checked).
        first_bar: the first bar that may be decided (default: the environment's).
        source_detail: what the source says about itself (recorded: bars decided, skipped,
            verified), kept in the record.
        compute: where the coalitions run (default: `rewards.workers` local processes; see
            `measure_window`).
    """
    if baseline is not None:
        return _baseline_epoch(epoch, data, rewards, names, carry_in, model_id, baseline, source)
    base = env_config or getattr(policy, "env_config", None) or EnvConfig()
    start_bar = base.first_bar if first_bar is None else max(base.first_bar, first_bar)
    window = epoch_window(epoch, rewards.epoch_bars, data.bars, start_bar)
    names = tuple(data.strategy_names if names is None else names)
    unknown = [n for n in names if n not in data.strategy_names]
    if unknown:
        raise UsageError(f"strategies {unknown} are not in the data {list(data.strategy_names)}")
    missing = [n for n in names if n not in accounts]
    if missing:
        raise UsageError(f"no payout account for strategies {missing}")
    measured = measure_window(
        policy,
        data,
        window.start,
        window.end,
        names,
        rewards,
        epoch=epoch,
        env_config=base,
        metric=metric,
        progress=progress,
        quarantined=quarantined,
        previous=previous,
        compute=compute,
    )
    game, attribution, scores, active = (
        measured.game,
        measured.attribution,
        measured.scores,
        measured.active,
    )
    profit = 0
    if rewards.profit_share_bps:
        outcome = game.outcome(frozenset(range(len(active))))
        profit = quote_to_units(outcome.value_end - outcome.value_start)
    release = released(carry_in, rewards.carry_release)
    pool = epoch_pool(rewards.emission_per_epoch, release, profit, rewards.profit_share_bps)
    weights, denominator = evidence_weights(scores, rewards.significance)
    payout = split(pool, weights, rewards.remainder_policy, denominator)
    rows = [
        Allocation(
            i, s.name, accounts[s.name].address, accounts[s.name].source, s.contribution,
            s.std_error, a,
        )
        for i, (s, a) in enumerate(zip(scores, payout.amounts, strict=True))
    ]  # fmt: skip
    if payout.treasury_amount:
        address = to_checksum_address(treasury)
        rows.append(Allocation(len(rows), None, address, TREASURY, None, None, payout.remainder))
    rows, root = _with_leaves(epoch, rows)
    summary = attribution.to_dict()
    summary.update(
        source=source,
        source_detail=dict(source_detail or {}),
        inactive=[n for n in names if n not in active and n not in quarantined],
        quarantined=[n for n in names if n in quarantined],
        groups=game.groups(),
        scores=[s.to_dict() for s in scores],
        significance=rewards.significance,
        decay_half_life_epochs=rewards.decay_half_life_epochs,
        released=release,
        evidence_denominator=float(denominator),
    )
    return _epoch_record(
        epoch,
        window,
        data,
        rewards,
        carry_in,
        model_id,
        metric,
        (attribution.v_all, attribution.v_empty),
        profit_share(profit, rewards.profit_share_bps),
        payout,
        root,
        summary,
        tuple(rows),
        reserve=carry_in - release,
    )


def _epoch_record(
    epoch: int,
    window: EpochWindow,
    data: MarketData,
    rewards: RewardsSettings,
    carry_in: int,
    model_id: str | None,
    metric: str,
    values: tuple[float, float],
    shared_profit: int,
    payout: Payout,
    root: str | None,
    summary: dict[str, Any],
    allocations: tuple[Allocation, ...],
    reserve: int = 0,
) -> EpochRecord:
    """Return the record; `reserve` is the carried reserve not released into this pool."""
    return EpochRecord(
        epoch=epoch,
        start_bar=window.start,
        end_bar=window.end,
        start_ms=int(data.open_time[window.start]),
        end_ms=int(data.open_time[window.end]),
        model_id=model_id,
        metric=metric,
        v_all=values[0],
        v_empty=values[1],
        emission=rewards.emission_per_epoch,
        carry_in=carry_in,
        profit_share=shared_profit,
        pool=payout.pool,
        total=payout.paid,
        remainder=payout.remainder,
        remainder_policy=payout.remainder_policy,
        carry_out=payout.carry_out + reserve,
        root=root,
        status=COMPUTED if payout.paid else EMPTY,
        attribution=summary,
        created_at=now(),
        allocations=allocations,
    )


def _baseline_epoch(
    epoch: int,
    data: MarketData,
    rewards: RewardsSettings,
    names: Sequence[str] | None,
    carry_in: int,
    model_id: str | None,
    baseline: str,
    source: str,
) -> EpochRecord:
    """Return the record of an epoch a baseline traded: nothing attributed, everything carried."""
    window = epoch_window(epoch, rewards.epoch_bars, data.bars, EnvConfig().first_bar)
    pool = epoch_pool(rewards.emission_per_epoch, carry_in, 0, rewards.profit_share_bps)
    names = tuple(data.strategy_names if names is None else names)
    summary = {
        "method": "none",
        "source": source,
        "baseline": baseline,
        "reason": f"traded by the baseline policy {baseline}: no agent, no attribution; "
        "the pool is carried",
        "players": [{"name": n, "value": 0.0, "std_error": 0.0} for n in names],
    }
    payout = split(pool, [], "carry")
    return _epoch_record(
        epoch, window, data, rewards, carry_in, model_id, "none", (0.0, 0.0), 0, payout, None,
        summary, (),
    )  # fmt: skip


def _with_leaves(epoch: int, rows: list[Allocation]) -> tuple[list[Allocation], str | None]:
    """Give every paid row a leaf index, leaf hash and proof; return the rows and the root."""
    paid = [r for r in rows if r.amount > 0]
    if not paid:
        return rows, None
    leaves = [(index, r.account, r.amount) for index, r in enumerate(paid)]
    tree = MerkleTree(leaves)
    by_position = {r.position: index for index, r in enumerate(paid)}
    out = []
    for row in rows:
        index = by_position.get(row.position)
        if index is None:
            out.append(row)
            continue
        proof = tuple("0x" + p.hex() for p in tree.proof(index))
        out.append(replace(row, leaf_index=index, leaf="0x" + tree.leaf(index).hex(), proof=proof))
    return out, "0x" + tree.root.hex()


# --- the chain ----------------------------------------------------------------------------------


def publish_epoch(
    store: Store, backend: ChainBackend, deployment: Deployment, epoch: int
) -> tuple[EpochRecord, str | None]:
    """Make sure a recorded epoch's root is on the current chain; return (record, tx sent).

    Raises:
        UsageError: the epoch is not recorded.
        ChainError: the chain holds a different root or total for this epoch, or a transaction
            failed.
    """
    record = require_epoch(store, epoch)
    if record.status == EMPTY or record.root is None:
        return record, None
    distributor = deployment.contract(backend.w3, "reward_distributor")
    root = bytes.fromhex(record.root.removeprefix("0x"))
    key = deployment.chain_key
    on_chain = bytes(_call(distributor.functions.epochRoot(epoch).call, "read an epoch root"))
    tx: str | None = None
    if on_chain == _ZERO_ROOT:
        receipt = backend.transact(distributor.functions.publishEpoch(epoch, root, record.total))
        tx = "0x" + bytes(receipt["transactionHash"]).hex()
    else:
        total = int(_call(distributor.functions.epochTotal(epoch).call, "read an epoch total"))
        if on_chain != root or total != record.total:
            raise ChainError(
                f"epoch {epoch} on {key} has root 0x{on_chain.hex()} and total {total}, but the "
                f"store has {record.root} and {record.total}: the chain was published by "
                "another database"
            )
    if tx is not None or record.chain_key != key or record.status != PUBLISHED:
        previous = record.publish_tx if record.chain_key == key else None
        mark_published(store, epoch, key, tx or previous)
        record = require_epoch(store, epoch)
    return record, tx


def claim_epoch(
    store: Store,
    backend: ChainBackend,
    deployment: Deployment,
    epoch: int,
    *,
    accounts: Iterable[str] | None = None,
    sender: str | None = None,
) -> list[ClaimResult]:
    """Claim an epoch's allocations on their owners' behalf (the tokens go to each leaf's account).

    Publishes the epoch first if this chain lacks it. Leaves already claimed on-chain (by
    anyone) are recorded as claimed and not sent again.

    Args:
        accounts: claim only the leaves of these accounts (default: every leaf).
        sender: the account that sends the claims and pays the gas (default: the operator).
    """
    record, _ = publish_epoch(store, backend, deployment, epoch)
    wanted = None if accounts is None else {to_checksum_address(a) for a in accounts}
    distributor = deployment.contract(backend.w3, "reward_distributor")
    key = deployment.chain_key
    results = []
    for a in record.allocations:
        if a.leaf_index is None or (wanted is not None and a.account not in wanted):
            continue
        done = _call(distributor.functions.isClaimed(epoch, a.leaf_index).call, "read a claim")
        tx = None
        if not done:
            proof = [bytes.fromhex(p.removeprefix("0x")) for p in a.proof]
            call = distributor.functions.claim(epoch, a.leaf_index, a.account, a.amount, proof)
            receipt = backend.transact(call, sender=sender)
            tx = "0x" + bytes(receipt["transactionHash"]).hex()
        if tx is not None or a.claimed_chain_key != key:
            mark_claimed(store, epoch, a.position, key, tx)
        results.append(
            ClaimResult(epoch, a.leaf_index, a.strategy, a.account, a.amount, tx, bool(done))
        )
    return results


def run_epoch(
    epoch: int,
    *,
    store: Store,
    backend: ChainBackend,
    deployment: Deployment,
    settings: Settings,
    policy: Any = None,
    data: MarketData | None = None,
    metadata: Mapping[str, str | None] | None = None,
    registry_names: Mapping[str, str] | None = None,
    model_id: str | None = None,
    names: Sequence[str] | None = None,
    env_config: EnvConfig | None = None,
    auto_claim: bool | None = None,
    progress: Progress | None = None,
    baseline: str | None = None,
    quarantined: Collection[str] = (),
    source: str = HISTORY,
    first_bar: int | None = None,
    source_detail: Mapping[str, Any] | None = None,
    compute: Backend | None = None,
) -> EpochRun:
    """Compute (if not recorded), record, publish and optionally claim one epoch.

    Re-running a finished epoch does nothing: a recorded epoch is never recomputed, a
    published root is not sent again and claimed leaves are not claimed again.

    Args:
        policy: as in `compute_epoch`; needed only when the epoch is not recorded yet.
        data: as in `compute_epoch`; needed only when the epoch is not recorded yet.
        metadata: each strategy's declared payout address (used when the registry has none).
        registry_names: the name each strategy is registered under (default: its own).
        auto_claim: claim every leaf after publishing (default: `rewards.auto_claim`).
        compute: where the coalitions run (`backend` is the chain); as in `compute_epoch`.
        The rest as in `compute_epoch`.
    """
    record = read_epoch(store, epoch)
    computed = record is None
    if record is None:
        if (policy is None and baseline is None) or data is None:
            raise UsageError(f"reward epoch {epoch} is not recorded: give a policy and data")
        carry_in = carry_into(store, epoch)
        treasury = settings.rewards.treasury_address or backend.operator
        names = tuple(data.strategy_names if names is None else names)
        registry = deployment.contract(backend.w3, "strategy_registry")
        accounts = payout_accounts(names, metadata or {}, treasury, registry, registry_names)
        record = compute_epoch(
            epoch,
            policy,
            data,
            settings.rewards,
            accounts,
            treasury,
            carry_in=carry_in,
            model_id=model_id,
            names=names,
            env_config=env_config,
            progress=progress,
            baseline=baseline,
            quarantined=quarantined,
            previous=previous_standings(store, epoch),
            source=source,
            first_bar=first_bar,
            source_detail=source_detail,
            compute=compute,
        )
        try:
            write_epoch(store, record)
        except StoreError:
            if read_epoch(store, epoch) is None:
                raise
            computed = False  # another run recorded it first: its record is the truth
    record, tx = publish_epoch(store, backend, deployment, epoch)
    claims: list[ClaimResult] = []
    if settings.rewards.auto_claim if auto_claim is None else auto_claim:
        claims = claim_epoch(store, backend, deployment, epoch)
        record = require_epoch(store, epoch)
    return EpochRun(record, computed, tx, tuple(claims))


# --- helpers -----------------------------------------------------------------------------------


def _call(fn: Callable[[], Any], what: str) -> Any:
    try:
        return fn()
    except (OSError, Web3Exception, ValueError) as e:
        raise ChainError(f"cannot {what}: {e}") from e
