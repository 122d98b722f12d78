"""Reward epochs of the live service are attributed on what its agent saw, as it recorded it.

One real service run (a replay of the synthetic market on the embedded chain, a live model
installed without training): bars 300-349 are decided by a model observing three strategies
over 16 bars, one of them (bar 320) arrives too late and is skipped, and from bar 350 on a new
live model observes two of them, in another order, over 8 bars. Every test reads a copy of
that run's database, so tampering with one copy leaves the others intact.
"""

from __future__ import annotations

import io
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from agent.audit.record import observation_digest
from agent.env.spec import PolicySpec, observation_parts
from agent.errors import AuditError
from agent.market.schema import SeriesKey, format_time_ms
from agent.plugins.market_data import build_market_data
from agent.plugins.resolve import resolve_strategies
from agent.rewards.recorded import RecordedMarket, recorded_market
from agent.service import jobs, ledger
from agent.service.feeds import ReplayFeed, replay_source
from agent.service.policy import policy_cache_dir
from agent.service.runtime import ServiceRuntime
from agent.service.telemetry import ServiceLog
from agent.store import Store
from tests.unit.service.fixtures import LEVELS, STRATEGIES, install_model, service_settings

BARS, START, LATE, SWITCH = 400, 300, 320, 350
FIRST = PolicySpec(STRATEGIES, 16, "discrete", LEVELS)
SECOND = PolicySpec(("ts-momentum", "ma-crossover"), 8, "discrete", LEVELS)


class LateFeed(ReplayFeed):
    """A replay in which one bar arrives too late to be decided (its candle is stored)."""

    late_ms: int = -1

    def late_reason(self, open_ms: int) -> str | None:
        return "arrived late (test)" if open_ms == self.late_ms else None


@dataclass(frozen=True)
class Run:
    """A finished service run: its database and the series it decided on."""

    database: Path
    key: SeriesKey

    @property
    def market(self) -> str:
        return str(self.key)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    settings = service_settings(tmp_path_factory.mktemp("recorded") / "data", bars=BARS)
    with Store(settings.data.database_path) as store:
        install_model(store, settings, strategies=FIRST.strategies, lookback_bars=16)
        source, candles, hidden = replay_source(store, settings)
    feed = LateFeed(candles, source, start_bar=START, speed=0.0, hidden=hidden)
    feed.late_ms = int(candles["open_time"].iloc[LATE])
    runtime = ServiceRuntime(settings, feed=feed, log=ServiceLog(stream=io.StringIO()))
    try:
        runtime.start()
        assert jobs.tick(runtime, max_bars=SWITCH - START).detail == "49 decided, 1 skipped"
        install_model(
            runtime.require_store(), settings, strategies=SECOND.strategies, lookback_bars=8, seed=1
        )
        assert jobs.tick(runtime).detail == f"{BARS - SWITCH} decided, 0 skipped"
    finally:
        runtime.close()
    return Run(settings.data.database_path, feed.key)


@pytest.fixture
def store(run: Run, tmp_path: Path) -> Iterator[Store]:
    """A copy of the run's database, open."""
    copy = tmp_path / "agora.db"
    source, target = sqlite3.connect(run.database), sqlite3.connect(copy)
    source.backup(target)
    source.close()
    target.close()
    with Store(copy) as opened:
        yield opened


def open_times(store: Store, run: Run) -> np.ndarray:
    return store.read_candles(run.key)["open_time"].to_numpy(dtype=np.int64)


def recorded(
    store: Store, run: Run, end: int = BARS - 1, spec: PolicySpec = FIRST
) -> RecordedMarket:
    market = recorded_market(store, run.market, open_times(store, run), end, spec, spec.strategies)
    assert market is not None
    return market


def ticks(store: Store, run: Run) -> dict[int, ledger.TickRow]:
    """Return the decided bars by bar index."""
    index = {int(t): i for i, t in enumerate(open_times(store, run))}
    return {index[t.bar_time_ms]: t for t in ledger.decisions_after(store, run.market, None)}


def rewrite_tick(
    store: Store, run: Run, bar_ms: int, change: dict[str, object], remove: tuple[str, ...] = ()
) -> None:
    """Rewrite keys of a bar's stored intent (as someone with the database file could)."""
    (text,) = store.db.execute(
        "SELECT outcome FROM service_ticks WHERE market = ? AND bar_time_ms = ?",
        [run.market, bar_ms],
    ).fetchone()
    outcome = {**json.loads(text), **change}
    with store.transaction() as conn:
        conn.execute(
            "UPDATE service_ticks SET outcome = ? WHERE market = ? AND bar_time_ms = ?",
            [json.dumps({k: v for k, v in outcome.items() if k not in remove}), run.market, bar_ms],
        )


def test_every_decided_bar_observes_bit_for_bit_what_the_service_recorded(
    store: Store, run: Run
) -> None:
    decided = ticks(store, run)
    assert sorted(decided) == [b for b in range(START, BARS) if b != LATE]
    for spec, bars in ((FIRST, range(START, SWITCH)), (SECOND, range(SWITCH, BARS))):
        market = recorded(store, run, spec=spec)
        assert market.first_bar == START and market.data.strategy_names == spec.strategies
        data = market.data
        for t in (b for b in bars if b in decided):
            outcome = decided[t].outcome
            assert outcome is not None and outcome.observation is not None
            assert outcome.fields is not None and outcome.fields.strategy_names == spec.strategies
            seen = spec.observe(data.features, data.signals, data.mask, t, outcome.exposure_before)
            assert seen.tobytes() == np.asarray(outcome.observation, np.float32).tobytes(), t
            assert data.close[t] == outcome.price


def test_a_model_change_mid_run_matches_the_signals_by_strategy_name(
    store: Store, run: Run
) -> None:
    first, second = recorded(store, run, spec=FIRST).data, recorded(store, run, spec=SECOND).data
    assert first.digest() != second.digest()
    later = slice(SWITCH, BARS)
    assert not first.mask[later, 1].any()  # rsi-reversion: the second model does not see it
    np.testing.assert_array_equal(first.mask[later][:, [2, 0]], second.mask[later])
    np.testing.assert_array_equal(first.signals[later][:, [2, 0]], second.signals[later])
    np.testing.assert_array_equal(first.features, second.features)
    assert first.mask[START:SWITCH].any(axis=0).tolist() == [True, True, True]


def test_a_skipped_bar_carries_the_bar_before_and_closes_at_its_candle(
    store: Store, run: Run
) -> None:
    market = recorded(store, run)
    data, decided = market.data, ticks(store, run)
    assert market.skipped == (LATE,)
    assert (market.first_bar, market.decided, market.verified) == (START, 99, 99)
    np.testing.assert_array_equal(data.signals[LATE], data.signals[LATE - 1])
    np.testing.assert_array_equal(data.mask[LATE], data.mask[LATE - 1])
    after = decided[LATE + 1].outcome
    assert after is not None and after.observation is not None
    window = observation_parts(after.observation, len(STRATEGIES)).window
    np.testing.assert_array_equal(data.features[LATE], window[-2])  # as the next bar saw it
    stored = store.read_candles(run.key)["close"].to_numpy()
    assert data.close[LATE] == stored[LATE]
    assert not data.mask[:START].any() and (data.close[:START] == data.close[START]).all()
    assert len(data.close) == BARS and data.open_time[-1] == open_times(store, run)[-1]


def test_rewritten_candles_and_strategies_do_not_change_the_recorded_market(
    store: Store, run: Run
) -> None:
    before_skip, whole = recorded(store, run, end=LATE - 1), recorded(store, run)
    candles = store.read_candles(run.key)
    history, _ = build_market_data(candles, resolve_strategies(STRATEGIES))
    with store.transaction() as conn:
        conn.execute("UPDATE candles SET close = close * 1.5, volume = volume * 3")
    rewritten, _ = build_market_data(store.read_candles(run.key), resolve_strategies(STRATEGIES))
    assert rewritten.digest() != history.digest()  # the history path would pay differently

    assert recorded(store, run, end=LATE - 1).data.digest() == before_skip.data.digest()
    now = recorded(store, run).data
    for name in ("open_time", "features", "signals", "mask"):
        np.testing.assert_array_equal(getattr(now, name), getattr(whole.data, name))
    moved = np.flatnonzero(now.close != whole.data.close).tolist()
    assert moved == [LATE]  # only the skipped bar has no recorded price

    names = ("ts-momentum", "noise:seed=3", "ma-crossover")
    other = recorded_market(store, run.market, open_times(store, run), BARS - 1, FIRST, names)
    assert other is not None and other.data.strategy_names == names
    np.testing.assert_array_equal(other.data.signals[:, [0, 2]], now.signals[:, [2, 0]])
    assert not other.data.mask[:, 1].any()


def test_a_tampered_observation_raises_an_audit_error_naming_the_bar(
    store: Store, run: Run
) -> None:
    bar, tick = 310, ticks(store, run)[310]
    assert tick.outcome is not None and tick.outcome.observation is not None
    observation = list(tick.outcome.observation)
    observation[3] += 0.25
    rewrite_tick(store, run, tick.bar_time_ms, {"observation": observation})
    where = f"bar {format_time_ms(tick.bar_time_ms)} \\(seq {tick.seq}\\)"
    with pytest.raises(AuditError, match=f"{where}.*digest"):
        recorded(store, run)
    # the intent's own digest rewritten to match: the audit trail still disagrees
    (text,) = store.db.execute(
        "SELECT outcome FROM service_ticks WHERE market = ? AND bar_time_ms = ?",
        [run.market, tick.bar_time_ms],
    ).fetchone()
    stored = json.loads(text)
    stored["fields"]["observation_digest"] = observation_digest(np.float32(observation))
    rewrite_tick(store, run, tick.bar_time_ms, {"fields": stored["fields"]})
    with pytest.raises(AuditError, match=f"{where}.*differs from the decision record"):
        recorded(store, run, end=bar)


def test_a_decision_not_yet_in_the_audit_trail_is_refused(store: Store, run: Run) -> None:
    bar_ms = int(open_times(store, run)[BARS - 1])
    with store.transaction() as conn:
        conn.execute(
            "UPDATE service_ticks SET status = 'intent', seq = NULL WHERE bar_time_ms = ?",
            [bar_ms],
        )
    with pytest.raises(AuditError, match=f"bar {format_time_ms(bar_ms)} .* not yet in the audit"):
        recorded(store, run)
    assert recorded(store, run, end=BARS - 2).verified == 98


def test_a_decision_recorded_without_an_observation_is_carried_at_its_recorded_price(
    store: Store, run: Run
) -> None:
    bar, tick = 330, ticks(store, run)[330]
    assert tick.outcome is not None
    rewrite_tick(
        store, run, tick.bar_time_ms, {}, remove=("observation",)
    )  # an older version's row
    market = recorded(store, run)
    assert market.skipped == (LATE, bar) and (market.decided, market.verified) == (99, 98)
    np.testing.assert_array_equal(market.data.signals[bar], market.data.signals[bar - 1])
    assert market.data.close[bar] == tick.outcome.price


def test_a_store_without_service_decisions_gives_none(store: Store, run: Run) -> None:
    times = open_times(store, run)
    assert recorded_market(store, run.market, times, START - 1, FIRST, STRATEGIES) is None
    assert recorded_market(store, "csv:SYN/USD:1h", times, BARS - 1, FIRST, STRATEGIES) is None
    with store.transaction() as conn:
        conn.execute("DELETE FROM service_ticks")
    assert recorded_market(store, run.market, times, BARS - 1, FIRST, STRATEGIES) is None


def test_a_service_epoch_is_paid_on_what_was_recorded_not_on_what_is_stored_now(
    store: Store, run: Run, tmp_path: Path
) -> None:
    """The epoch's payout comes from the recorded signals: rewriting the stored candles, or a
    plugin now computing something else, changes nothing; on history it would."""
    from dataclasses import replace

    from agent.rewards.epochs import PayoutAccount, compute_epoch
    from agent.rewards.inputs import inputs_for_epoch, load_inputs

    settings = service_settings(run.database.parent, bars=BARS)  # the run's models
    rewards = settings.rewards.model_copy(update={"significance": 0.0, "group_r2": 1.0})
    epoch = SWITCH // rewards.epoch_bars + 1  # bars 360-379, decided by the second model

    def pay(inputs):  # type: ignore[no-untyped-def]
        accounts = {
            n: PayoutAccount("0x" + f"{i + 1:040x}", "test")
            for i, n in enumerate(inputs.data.strategy_names)
        }
        arguments = inputs.run_arguments()
        for key in ("metadata", "registry_names"):
            arguments.pop(key)
        return compute_epoch(
            epoch, data=arguments.pop("data"), policy=arguments.pop("policy"),
            rewards=rewards, accounts=accounts, treasury="0x" + "ee" * 20, **arguments,
        )  # fmt: skip

    from agent.learn.policy import load_policy

    loaded = load_policy(store, "live", cache_dir=policy_cache_dir(settings))
    history = load_inputs(settings, store, policy=loaded)
    assert history.spec == SECOND and history.source == "history"
    live = inputs_for_epoch(history, store, epoch, rewards.epoch_bars)
    assert live.source == "recorded" and live.source_detail is not None
    assert live.source_detail["verified"] >= rewards.epoch_bars
    before = pay(live)
    assert before.attribution["source"] == "recorded"
    on_history = pay(history)

    with store.transaction() as conn:
        conn.execute("UPDATE candles SET close = close * 1.5, volume = volume * 3")
    rewritten = load_inputs(settings, store, policy=loaded)
    changed_code = replace(
        rewritten,
        data=replace(
            rewritten.data,
            signals=np.random.default_rng(0).uniform(-1, 1, rewritten.data.signals.shape),
        ),
    )  # a plugin that now returns something else
    after = pay(inputs_for_epoch(changed_code, store, epoch, rewards.epoch_bars))
    assert after.attribution["scores"] == before.attribution["scores"]
    assert [a.amount for a in after.allocations] == [a.amount for a in before.allocations]
    assert (after.v_all, after.v_empty) == (before.v_all, before.v_empty)
    again_on_history = pay(changed_code)
    assert (again_on_history.v_all, again_on_history.attribution["scores"]) != (
        on_history.v_all,
        on_history.attribution["scores"],
    )
