"""`agora run`: the jobs on an APScheduler 3 background scheduler, until SIGTERM or SIGINT.

Jobs have explicit ids (`tick`, `chain`, `retrain`, `reward_epoch`, `heartbeat`), coalesce
missed runs into one, never run two instances at once, and may start up to `misfire_grace_s`
late (half a bar by default). The tick job runs at the replay pace or the exchange poll
interval and only decides; the chain job replicates at the same pace on a thread of its own, so
a node that hangs delays the chain, never a decision; retrain and reward_epoch check whether
they are due at least once a second; retrain has a thread of its own so training never holds
up a bar, and the heartbeat one too, so it is never queued behind a job waiting on the chain.

Stopping. SIGTERM or SIGINT asks the running job to stop after its current bar (and training,
the bootstrap model's included, at its next step); the scheduler starts nothing new; once the
current bar is done the outbox is flushed, the stop recorded and the chain released (anvil
writes its state file). All of it within `STOP_BUDGET_S`: what would take longer (a call to a
hung node, a node that does not stop) is left behind, and a watchdog ends the process if it is
still alive `STOP_DEADLINE_S` after the signal. Crash-only start-up makes that safe: the next
start recovers whatever was left. A fatal job error stops the service the same way and
`run_service` raises it (exit code 1, or 2 for a configuration error).
"""

from __future__ import annotations

import functools
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from agent.config import Settings
from agent.errors import AgoraError, TrainingInterrupted
from agent.service import jobs
from agent.service.feeds import grace_seconds, poll_seconds
from agent.service.runtime import ServiceRuntime

ROUTINE_SCHEDULER_MESSAGES = ("maximum number of running instances", "was missed by")
"""Runs skipped while the previous one is still going, or started late and coalesced: by
design (the tick decides every bar it finds), so counted in /metrics rather than logged."""
CHECK_EVERY_S = 1.0
"""The longest interval between two checks of whether retrain or reward_epoch is due."""
STOP_BUDGET_S = 7.0
"""How long a stop may wait for the running jobs, the final flush and the node to stop."""
STOP_DEADLINE_S = 9.0
"""After a stop signal, the watchdog ends the process if it is still alive this much later."""


def job_settings(settings: Settings) -> dict[str, Any]:
    """Return the scheduling of every job: trigger interval, grace and executor, by job id."""
    tick_s = poll_seconds(settings)
    check_s = max(tick_s, min(CHECK_EVERY_S, settings.service.heartbeat_s))
    grace = max(1, math.ceil(grace_seconds(settings)))
    return {
        "tick": {"seconds": tick_s, "misfire_grace_time": grace, "executor": "default"},
        "chain": {"seconds": tick_s, "misfire_grace_time": grace, "executor": "chain"},
        "retrain": {"seconds": check_s, "misfire_grace_time": grace, "executor": "training"},
        "reward_epoch": {"seconds": check_s, "misfire_grace_time": grace, "executor": "default"},
        "heartbeat": {
            "seconds": settings.service.heartbeat_s,
            "misfire_grace_time": grace,
            "executor": "monitor",
        },
    }


_JOB_FUNCTIONS: dict[str, Callable[[ServiceRuntime], jobs.JobResult]] = {
    "tick": functools.partial(jobs.tick, replicate=False),
    "chain": jobs.replicate,
    "retrain": jobs.retrain,
    "reward_epoch": jobs.reward_epoch,
    "heartbeat": jobs.heartbeat,
}


def build_scheduler(runtime: ServiceRuntime) -> BackgroundScheduler:
    """Return a (not yet started) scheduler with the five jobs of `runtime`."""
    scheduler = BackgroundScheduler(
        executors={
            "default": ThreadPoolExecutor(2),
            "chain": ThreadPoolExecutor(1),
            "training": ThreadPoolExecutor(1),
            "monitor": ThreadPoolExecutor(1),
        },
        job_defaults={"coalesce": True, "max_instances": 1},
        timezone=UTC,
    )
    now = datetime.now(UTC)
    for job_id, spec in job_settings(runtime.settings).items():
        first: dict[str, Any] = (
            {"next_run_time": now} if job_id in ("tick", "chain", "heartbeat") else {}
        )
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


HttpServerFactory = Callable[[ServiceRuntime, str, int], Any]
"""Builds the loopback endpoint of a runtime on (host, port): an object with `host`, `port`
and `close()`, serving at least /health and /metrics (`HealthServer`, or the dashboard's
`agent.dashboard.server.DashboardServer`, which the command line passes in)."""


def run_service(
    settings: Settings,
    *,
    once: bool = False,
    runtime: ServiceRuntime | None = None,
    http_server: HttpServerFactory | None = None,
) -> int:
    """Run the service until SIGTERM or SIGINT (or a fatal error); return the exit code.

    Args:
        settings: the configuration.
        once: run every job once (a replay reveals a single bar), then stop.
        runtime: a prepared runtime (tests); built from `settings` when None.
        http_server: builds the endpoint (default: `HealthServer`, /health and /metrics).

    Raises:
        AgoraError: start-up failed, or a job failed fatally (after a clean stop).
    """
    from agent.service.http import HealthServer

    runtime = runtime or ServiceRuntime(settings)
    stop = threading.Event()
    previous = _install_signal_handlers(runtime, stop)
    interrupted = False
    runtime.log.capture(
        "apscheduler",
        expected=ROUTINE_SCHEDULER_MESSAGES,
        on_expected=lambda: runtime.metrics.inc("agora_scheduler_coalesced_total"),
    )
    server: Any = None
    serve = http_server or HealthServer
    scheduler: BackgroundScheduler | None = None
    try:
        try:
            runtime.start()
        except TrainingInterrupted as e:
            if not runtime.stopping.is_set():
                runtime.fatal = e
                raise
            interrupted = True  # SIGTERM during the bootstrap training: a clean stop
            runtime.log.event("bootstrap_interrupted", note="the next start trains again")
        except AgoraError as e:
            runtime.fatal = e
            raise
        if once and not interrupted:
            run_once(runtime)
        elif not stop.is_set() and not interrupted:
            server = serve(runtime, settings.service.host, settings.service.port)
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
        deadline = time.monotonic() + STOP_BUDGET_S
        if scheduler is not None:
            scheduler.shutdown(wait=False)
        if server is not None:
            server.close()
        code = 0 if runtime.fatal is None else runtime.fatal.exit_code
        clean = runtime.close(exit_code=code, deadline=deadline)
        _restore_signal_handlers(previous)
    if runtime.fatal is not None:
        if not clean:
            print(f"error: {runtime.fatal}".splitlines()[0], file=sys.stderr)
            _exit_now(runtime, runtime.fatal.exit_code)
        raise runtime.fatal
    if runtime.training.is_set():
        runtime.log.event("retrain_abandoned", note="the next start retrains if still due")
    if not clean or runtime.training.is_set() or _jobs_still_running(scheduler):
        _exit_now(runtime, 0)  # a job still waits on I/O: nothing it does is needed any more
    return 0


def _jobs_still_running(scheduler: BackgroundScheduler | None) -> bool:
    """Return whether a job is still running (its thread would hold up the interpreter's exit)."""
    if scheduler is None:
        return False
    executors = getattr(scheduler, "_executors", {})
    return any(
        any(count > 0 for count in getattr(executor, "_instances", {}).values())
        for executor in executors.values()
    )


def _exit_now(runtime: ServiceRuntime, code: int) -> None:
    """End the process at once (threads still waiting on I/O would hold up a normal exit)."""
    runtime.log.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _install_signal_handlers(runtime: ServiceRuntime, stop: threading.Event) -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}

    def handle(signum: int, frame: Any) -> None:
        if not stop.is_set():
            runtime.log.event("stopping", signal=signal.Signals(signum).name)
            _arm_watchdog(runtime, STOP_DEADLINE_S)
        stop.set()
        runtime.request_stop()

    previous: dict[int, Any] = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.signal(signum, handle)
    return previous


def _arm_watchdog(runtime: ServiceRuntime, after_s: float) -> None:
    """End the process `after_s` from now if it is still running (a stop that got stuck)."""

    def expire() -> None:
        runtime.log.warning(
            "stop_forced",
            after_s=after_s,
            note="the stop did not finish in time; the next start recovers what was left",
        )
        code = 0 if runtime.fatal is None else runtime.fatal.exit_code
        _exit_now(runtime, code)

    timer = threading.Timer(after_s, expire)
    timer.daemon = True
    timer.name = "agora-stop-watchdog"
    timer.start()


def _restore_signal_handlers(previous: dict[int, Any]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)
