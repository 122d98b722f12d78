"""The scheduler's jobs: explicit ids, coalescing, one instance, a grace that fits the bar."""

from __future__ import annotations

from pathlib import Path

import pytest
from apscheduler.triggers.interval import IntervalTrigger

from agent.config import Settings
from agent.service.feeds import bar_seconds, grace_seconds, poll_seconds
from agent.service.jobs import JOB_IDS
from agent.service.runtime import ServiceRuntime
from agent.service.scheduler import build_scheduler, job_settings
from tests.unit.service.fixtures import service_settings


def exchange_settings(tmp_path: Path, timeframe: str = "1h", **service: object) -> Settings:
    base = service_settings(tmp_path, feed="exchange", **service)
    market = base.market.model_copy(update={"source": "exchange", "timeframe": timeframe})
    return base.model_copy(update={"market": market})


def test_the_five_jobs_exist_with_their_ids_and_settings(tmp_path: Path) -> None:
    settings = service_settings(tmp_path, replay_speed=2.0, heartbeat_s=5.0)
    scheduler = build_scheduler(ServiceRuntime(settings))

    found = {job.id: job for job in scheduler.get_jobs()}

    assert set(found) == set(JOB_IDS) == {"tick", "chain", "retrain", "reward_epoch", "heartbeat"}
    for job in found.values():
        assert job.coalesce is True
        assert job.max_instances == 1
        assert job.misfire_grace_time == 1  # half a bar of 0.5 s, at least 1 s
        assert isinstance(job.trigger, IntervalTrigger)
    assert found["tick"].trigger.interval.total_seconds() == 0.5
    assert found["chain"].trigger.interval.total_seconds() == 0.5
    assert found["heartbeat"].trigger.interval.total_seconds() == 5.0
    assert found["retrain"].executor == "training"
    # the chain and the heartbeat have threads of their own: a hung node blocks neither the
    # decisions nor the health check
    assert found["chain"].executor == "chain" and found["heartbeat"].executor == "monitor"
    assert {found[j].executor for j in ("tick", "reward_epoch")} == {"default"}


def test_the_exchange_feed_ticks_within_each_bar_with_half_a_bar_of_grace(
    tmp_path: Path,
) -> None:
    settings = exchange_settings(tmp_path)
    specs = job_settings(settings)

    assert bar_seconds(settings) == 3_600
    assert grace_seconds(settings) == 1_800
    assert specs["tick"]["seconds"] == 60.0  # a tenth of a bar, at most a minute
    assert all(spec["misfire_grace_time"] == 1_800 for spec in specs.values())
    assert poll_seconds(exchange_settings(tmp_path, "1m")) == 6.0


@pytest.mark.parametrize(
    ("service", "tick_s", "grace_s"),
    [
        ({"replay_speed": 0.0}, 0.05, 1.0),
        ({"replay_speed": 1.0}, 1.0, 1.0),
        ({"replay_speed": 0.1}, 1.0, 5.0),
        ({"replay_speed": 1.0, "misfire_grace_s": 7.0}, 1.0, 7.0),
    ],
)
def test_replay_pace_and_grace(
    tmp_path: Path, service: dict[str, float], tick_s: float, grace_s: float
) -> None:
    settings = service_settings(tmp_path, **service)
    assert poll_seconds(settings) == tick_s
    assert grace_seconds(settings) == grace_s


def test_an_explicit_poll_interval_is_used_for_the_exchange(tmp_path: Path) -> None:
    assert poll_seconds(exchange_settings(tmp_path, poll_s=12.5)) == 12.5
