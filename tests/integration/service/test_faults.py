"""Faults that must not stop the service, and faults that must.

A third-party strategy that fails (in its sandbox) is masked in every observation and record
and reported; the service goes on. A bad candle in a replay is refused and reported, and the
bars after it are decided. A corrupt model file, at start-up or when a new model goes live,
stops the service with a clear error rather than letting it trade blind.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agent.audit.outbox import read_decisions, stored_count
from agent.errors import ModelError
from agent.learn.registry import live_model
from agent.service import jobs
from agent.service.feeds import ReplayFeed, replay_source
from agent.store import Store
from tests.integration.service.conftest import StartRuntime
from tests.unit.service.fixtures import install_model, service_settings

HOSTILE = Path(__file__).parents[2] / "data" / "hostile_plugins"


def test_a_failing_strategy_is_masked_and_reported_and_the_service_goes_on(
    tmp_path: Path, start_runtime: StartRuntime
) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    shutil.copy(HOSTILE / "raises.py", plugins / "raises.py")
    settings = service_settings(tmp_path / "data")
    limits = settings.strategies.model_copy(update={"plugin_dir": plugins, "wall_seconds": 20.0})
    settings = settings.model_copy(update={"strategies": limits})
    started = start_runtime(settings, model={"strategies": ("ma-crossover", "raises")})
    runtime = started.runtime

    assert jobs.tick(runtime, max_bars=2).bars == 2

    records = [d.record() for d in read_decisions(runtime.require_store())]
    assert [r.strategy_names for r in records] == [("ma-crossover", "raises")] * 2
    assert all(r.masks == (True, False) and r.signals_e9[1] == 0 for r in records)
    failures = started.events("strategy_failed")
    assert [f["strategy"] for f in failures] == ["raises", "raises"]
    assert "exploded on purpose" in failures[0]["reason"]
    assert all(d["masked"] == ["raises"] for d in started.events("decision"))
    assert runtime.metrics.get("agora_strategy_failures_total", strategy="raises") == 2
    runtime.replica.verify()  # type: ignore[union-attr]


def test_a_bad_candle_in_a_replay_is_refused_and_the_next_bars_are_decided(
    tmp_path: Path, start_runtime: StartRuntime
) -> None:
    settings = service_settings(tmp_path / "data")
    with Store(settings.data.database_path) as store:
        key, candles, hidden = replay_source(store, settings)
    bad = candles.copy()
    bad.loc[302, "low"] = bad.loc[302, "high"] * 1.01  # low above high
    feed = ReplayFeed(bad, key, start_bar=300, speed=0.0, hidden=hidden)
    started = start_runtime(settings, feed=feed)
    runtime = started.runtime

    assert jobs.tick(runtime, max_bars=4).status == "ok"

    bars = [d.record().bar_time_ms for d in read_decisions(runtime.require_store())]
    times = candles["open_time"].tolist()
    assert bars == [times[300], times[301], times[303]]
    (skip,) = started.events("bar_skipped")
    assert skip["reason"].startswith("bad candle:") and "low" in skip["reason"]
    stored = runtime.require_store().read_candles(runtime.key)["open_time"].tolist()
    assert times[302] not in stored and times[303] in stored


def test_a_corrupt_model_file_stops_the_start_with_a_clear_error(
    tmp_path: Path, start_runtime: StartRuntime
) -> None:
    settings = service_settings(tmp_path / "data")
    with Store(settings.data.database_path) as store:
        install_model(store, settings)
        record = live_model(store)
        assert record is not None
    path = Path(record.path)
    path.write_bytes(path.read_bytes() + b"\0")

    with pytest.raises(ModelError, match=r"is corrupt.*will not trade blind"):
        start_runtime(settings, model=False)


def test_a_corrupt_new_live_model_stops_the_service_before_it_trades(
    settings: object, start_runtime: StartRuntime
) -> None:
    started = start_runtime(settings)
    runtime = started.runtime
    jobs.tick(runtime, max_bars=1)
    store = runtime.require_store()
    new_id = install_model(store, runtime.settings, seed=9)  # a retrain promoted a new model
    record = live_model(store)
    assert record is not None and record.id == new_id
    Path(record.path).write_bytes(b"truncated")

    result = jobs.run_job(runtime, "tick", jobs.tick)

    assert result.status == "fatal" and isinstance(runtime.fatal, ModelError)
    assert stored_count(store) == 1  # nothing decided with a model it could not check
    (fatal,) = started.events("fatal")
    assert "corrupt" in fatal["error"]
