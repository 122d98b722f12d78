"""`agora run`: the jobs on an APScheduler 3 background scheduler, until SIGTERM or SIGINT.

Jobs have explicit ids (`tick`, `retrain`, `reward_epoch`, `heartbeat`), coalesce missed runs
into one, never run two instances at once, and may start up to `misfire_grace_s` late (half a
bar by default). The tick job runs at the replay pace or the exchange poll interval; retrain
and reward_epoch check whether they are due at least once a second; retrain has a thread of
its own so training never holds up a bar.

Stopping. SIGTERM or SIGINT asks the running job to stop after its current bar; the scheduler
starts nothing new; once the current bar is done the outbox is flushed, the stop recorded and
the chain released (anvil writes its state file). A retrain still running is abandoned (it has
recorded nothing; the next start retrains). A fatal job error stops the service the same way
and `run_service` raises it (exit code 1, or 2 for a configuration error).
"""

from __future__ import annotations

import functools
import math
import os
import signal
import sys
import threading
from datetime import UTC, datetime
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from agent.config import Settings
from agent.errors import AgoraError
from agent.service import jobs
from agent.service.feeds import grace_seconds, poll_seconds
from agent.service.runtime import ServiceRuntime

ROUTINE_SCHEDULER_MESSAGES = ("maximum number of running instances", "was missed by")
"""Runs skipped while the previous one is still going, or started late and coalesced: by
design (the tick decides every bar it finds), so counted in /metrics rather than logged."""
CHECK_EVERY_S = 1.0
"""The longest interval between two checks of whether retrain or reward_epoch is due."""


def job_settings(settings: Settings) -> dict[str, Any]:
    """Return the scheduling of every job: trigger interval, grace and executor, by job id."""
    tick_s = poll_seconds(settings)
    check_s = max(tick_s, min(CHECK_EVERY_S, settings.service.heartbeat_s))
    grace = max(1, math.ceil(grace_seconds(settings)))
    return {
        "tick": {"seconds": tick_s, "misfire_grace_time": grace, "executor": "default"},
        "retrain": {"seconds": check_s, "misfire_grace_time": grace, "executor": "training"},
        "reward_epoch": {"seconds": check_s, "misfire_grace_time": grace, "executor": "default"},
        "heartbeat": {
            "seconds": settings.service.heartbeat_s,
            "misfire_grace_time": grace,
            "executor": "default",
        },
    }


_JOB_FUNCTIONS = {
    "tick": jobs.tick,
    "retrain": jobs.retrain,
    "reward_epoch": jobs.reward_epoch,
    "heartbeat": jobs.heartbeat,
}


def build_scheduler(runtime: ServiceRuntime) -> BackgroundScheduler:
    """Return a (not yet started) scheduler with the four jobs of `runtime`."""
    scheduler = BackgroundScheduler(
        executors={"default": ThreadPoolExecutor(2), "training": ThreadPoolExecutor(1)},
        job_defaults={"coalesce": True, "max_instances": 1},
        timezone=UTC,
    )
    now = datetime.now(UTC)
    for job_id, spec in job_settings(runtime.settings).items():
        first: dict[str, Any] = {"next_run_time": now} if job_id in ("tick", "heartbeat") else {}
        scheduler.add_job(
            functools.partial(jobs.run_job, runtime, job_id, _JOB_FUNCTIONS[job_id]),
            IntervalTrigger(seconds=spec["seconds"], timezone=UTC),
            id=job_id,
            name=f"agora {job_id}",
            executor=spec["executor"],
            coalesce=True,
            max_instances=1,
            misfire_grace_time=spec["misfire_grace_time"],
            replace_existing=True,
            **first,
        )
    return scheduler


def run_once(runtime: ServiceRuntime) -> list[jobs.JobResult]:
    """Run the jobs once, in order (for cron users and tests): a replay reveals one bar."""
    max_bars = 1 if runtime.settings.service.feed == "replay" else None
    results = [
        jobs.run_job(runtime, "tick", functools.partial(jobs.tick, max_bars=max_bars)),
        jobs.run_job(runtime, "reward_epoch", jobs.reward_epoch),
        jobs.run_job(runtime, "retrain", jobs.retrain),
        jobs.run_job(runtime, "heartbeat", jobs.heartbeat),
    ]
    return results


def run_service(
    settings: Settings, *, once: bool = False, runtime: ServiceRuntime | None = None
) -> int:
    """Run the service until SIGTERM or SIGINT (or a fatal error); return the exit code.

    Args:
        settings: the configuration.
        once: run every job once (a replay reveals a single bar), then stop.
        runtime: a prepared runtime (tests); built from `settings` when None.

    Raises:
        AgoraError: start-up failed, or a job failed fatally (after a clean stop).
    """
    from agent.service.http import HealthServer

    runtime = runtime or ServiceRuntime(settings)
    stop = threading.Event()
    previous = _install_signal_handlers(runtime, stop)
    runtime.log.capture(
        "apscheduler",
        expected=ROUTINE_SCHEDULER_MESSAGES,
        on_expected=lambda: runtime.metrics.inc("agora_scheduler_coalesced_total"),
    )
    server: HealthServer | None = None
    scheduler: BackgroundScheduler | None = None
    try:
        try:
            runtime.start()
        except AgoraError as e:
            runtime.fatal = e
            raise
        if once:
            run_once(runtime)
        elif not stop.is_set():
            server = HealthServer(runtime, settings.service.host, settings.service.port)
            runtime.http_port = server.port
            with runtime.lock:
                runtime.record_run("running")
            runtime.log.event("listening", url=f"http://{server.host}:{server.port}")
            scheduler = build_scheduler(runtime)
            scheduler.start()
            while not stop.wait(0.2):
                if runtime.fatal is not None:
                    break
    finally:
        runtime.request_stop()
        if scheduler is not None:
            scheduler.shutdown(wait=False)
        with runtime.lock:
            pass  # the running job has finished its current bar
        if server is not None:
            server.close()
        code = 0 if runtime.fatal is None else runtime.fatal.exit_code
        runtime.close(exit_code=code)
        _restore_signal_handlers(previous)
    if runtime.fatal is not None:
        raise runtime.fatal
    if runtime.training.is_set():
        runtime.log.event("retrain_abandoned", note="the next start retrains if still due")
        runtime.log.flush()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)  # a training thread cannot be interrupted; nothing of it was recorded
    return 0


def _install_signal_handlers(runtime: ServiceRuntime, stop: threading.Event) -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}

    def handle(signum: int, frame: Any) -> None:
        if not stop.is_set():
            runtime.log.event("stopping", signal=signal.Signals(signum).name)
        stop.set()
        runtime.request_stop()

    previous: dict[int, Any] = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.signal(signum, handle)
    return previous


def _restore_signal_handlers(previous: dict[int, Any]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)
