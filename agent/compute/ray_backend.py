"""The Ray backend: tasks on a local Ray or a cluster, inputs and results via the object store.

`connected(compute)` joins the cluster at `compute.address` (`auto`, `host:port` or
`ray://host:port`), or starts Ray on this machine when the address is null, and shuts down
only a Ray it started. `RayBackend.map` puts the shared input into the object store once
(every task reads it from there, zero-copy for numpy arrays on the same node), runs one task
per item with `compute.cpus_per_task` CPUs and `compute.memory_mb_per_task`, and gathers the
results in the items' order. A task whose worker dies is rerun by Ray up to
`compute.max_retries` times; tasks are pure, so a rerun gives the same result. If the driver
is interrupted (SIGINT) or a task raises, every task still pending is cancelled before the
exception propagates, so nothing keeps running for a run that has ended.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import ray

from agent.compute import Progress
from agent.config import ComputeSettings
from agent.errors import AgoraError, ComputeError, ConfigError

S = TypeVar("S")
T = TypeVar("T")
R = TypeVar("R")


@ray.remote
def _run(fn: Callable[[Any, Any], Any], shared: Any, item: Any) -> Any:
    """One task: Ray resolves `shared` from the object store before the call."""
    return fn(shared, item)


class RayBackend:
    """Every task a Ray task (see the module docstring)."""

    name = "ray"

    def __init__(self, compute: ComputeSettings) -> None:
        self.compute = compute
        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        self.workers = max(1, int(cpus // compute.cpus_per_task))

    def options(self, label: str) -> dict[str, Any]:
        """Return the Ray task options every task of this backend runs with."""
        options: dict[str, Any] = {
            "name": label,
            "num_cpus": self.compute.cpus_per_task,
            "max_retries": self.compute.max_retries,
            "retry_exceptions": False,  # a task that raises is a bug or bad input: not retried
        }
        if self.compute.memory_mb_per_task is not None:
            options["memory"] = self.compute.memory_mb_per_task * 1024 * 1024
        return options

    def map(
        self,
        fn: Callable[[S, T], R],
        shared: S,
        items: Sequence[T],
        *,
        label: str,
        progress: Progress | None = None,
    ) -> list[R]:
        if not items:
            return []
        shared_ref = ray.put(shared)
        task = _run.options(**self.options(label))
        refs = [task.remote(fn, shared_ref, item) for item in items]
        return gather(refs, label, progress)


def gather(refs: Sequence[Any], label: str, progress: Progress | None = None) -> list[Any]:
    """Return the results of `refs` in order; on any exception cancel what is still pending.

    Raises:
        AgoraError: a task raised it (re-raised as itself on the driver).
        ComputeError: a task failed otherwise, or its worker died more often than retried.
    """
    position = {ref: index for index, ref in enumerate(refs)}
    results: list[Any] = [None] * len(refs)
    pending = list(refs)
    try:
        with exit_on_interrupt():
            _wait_all(pending, refs, results, position, progress)
    except ray.exceptions.RayTaskError as e:
        cancel(pending)
        cause = e.cause
        if isinstance(cause, AgoraError):
            raise cause from None
        raise ComputeError(f"{label}: a Ray task failed: {_brief(cause)}") from e
    except ray.exceptions.RayError as e:
        cancel(pending)
        raise ComputeError(f"{label}: {_brief(e)}") from e
    except BaseException:
        cancel(pending)
        raise
    return results


def _wait_all(
    pending: list[Any],
    refs: Sequence[Any],
    results: list[Any],
    position: dict[Any, int],
    progress: Progress | None,
) -> None:
    """Fill `results` as tasks finish (`pending` shrinks in place, for the caller to cancel)."""
    while pending:
        ready, rest = ray.wait(pending, num_returns=1)
        pending[:] = rest
        for ref in ready:
            results[position[ref]] = ray.get(ref)
            if progress is not None:
                progress(len(refs) - len(pending), len(refs))


@contextlib.contextmanager
def exit_on_interrupt(cleanup: Callable[[], None] | None = None) -> Iterator[None]:
    """While Ray works for the driver, SIGINT ends the command at once with exit code 130.

    A KeyboardInterrupt raised inside Ray's waits can be lost (seen under load: Ctrl-C
    during `ray.wait`, and the run went on to the end; Tune's loop swallows it too). While
    the tasks run nothing has been written to the store or the models directory (the driver
    writes only after), so exiting leaves both as they were. A Ray this command started dies
    with it (Ray's fate sharing); a cluster drops the tasks of a driver that is gone.
    Outside the main thread (where signals cannot be caught) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        print("interrupted", file=sys.__stderr__, flush=True)
        if cleanup is not None:
            cleanup()
        os._exit(130)

    previous = signal.signal(signal.SIGINT, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _brief(error: BaseException) -> str:
    """One short line for an error from a worker (Ray's carry whole remote tracebacks)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = f"{type(error).__name__}: {lines[-1] if lines else ''}"[:300]
    if "Can't get attribute" in str(error) or "No module named 'agent" in str(error):
        text += " (every node needs the same Agora version as the driver: docs/scale-out.md)"
    return text


def cancel(refs: Sequence[Any]) -> None:
    """Cancel tasks (killing their workers if they run), ignoring ones already finished."""
    for ref in refs:  # one already done, or whose owner is gone, has nothing left to stop
        with contextlib.suppress(Exception):
            ray.cancel(ref, force=True)


@contextmanager
def connected(compute: ComputeSettings) -> Iterator[RayBackend]:
    """Yield a RayBackend on the configured cluster (see the module docstring).

    Raises:
        ConfigError: Ray cannot start or reach `compute.address`.
    """
    started = False
    if not ray.is_initialized():
        _check_reachable(compute.address)
        try:
            if compute.address is None:
                ray.init(
                    address="local",  # a new Ray of our own, never one `ray start` left running
                    num_cpus=compute.num_cpus,
                    include_dashboard=False,
                    log_to_driver=False,
                    logging_level=logging.WARNING,
                )
            else:
                ray.init(
                    address=compute.address,
                    log_to_driver=False,
                    logging_level=logging.WARNING,
                )
        except (ConnectionError, RuntimeError, ValueError, ray.exceptions.AuthenticationError) as e:
            where = "a local Ray" if compute.address is None else repr(compute.address)
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConfigError(f"compute.address: cannot start or join {where}: {first}") from e
        started = True
    try:
        # Ray prints what its raylets report (a worker that died, a task retried) on the
        # driver's stdout, from a thread; results go there, so it prints on stderr meanwhile
        with contextlib.redirect_stdout(sys.stderr):
            yield RayBackend(compute)
    finally:
        if started:
            ray.shutdown()


def _check_reachable(address: str | None, timeout_s: float = 5.0) -> None:
    """Fail fast on a cluster address nothing listens on (Ray itself retries for minutes).

    Raises:
        ConfigError: `host:port` (or `ray://host:port`) does not accept a connection.
    """
    if address is None or address == "auto":
        return  # Ray looks the cluster up itself, and says at once when there is none
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise ConfigError(
            f"compute.address: nothing accepts connections at {address!r} ({e.strerror or e}); "
            "start the head with `ray start --head` or fix the address"
        ) from e
