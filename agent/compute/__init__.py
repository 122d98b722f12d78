"""Where work that fans out runs: in this process (`local`) or on a Ray cluster (`ray`).

Three kinds of work are a list of independent tasks over one large, shared input: the seeds
of `agora train` (over the data set), the trials of `agora tune`, the windows of a walk-forward
and the coalitions of a Shapley attribution (over the epoch's game). A `Backend` runs
`fn(shared, item)` for every item and returns the results in the items' order:

- `LocalBackend` calls them one after the other in this process (what Agora did before);
- `RayBackend` (`agent.compute.ray_backend`, the optional `agora[ray]` extra) puts `shared`
  into Ray's object store once, runs each item as a Ray task with the configured resources
  and retries, and gathers the results on the driver. Nothing assumes a shared filesystem:
  inputs and results travel through the object store, and only the driver writes the store.

`open_backend(settings)` chooses from the `compute` section of the configuration. Without Ray
installed, `compute.backend: ray` is a `ConfigError` naming `pip install 'agora[ray]'`.

    AgoraError
    └── ConfigError     compute.backend is ray but Ray is not installed, or a bad address
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

from agent.config import Settings
from agent.errors import ConfigError

S = TypeVar("S")
T = TypeVar("T")
R = TypeVar("R")

Task = Callable[[Any, Any], Any]
"""fn(shared, item) -> result: a module-level function, so a worker can import it."""
Progress = Callable[[int, int], None]
"""Called on the driver with (tasks done, tasks) as results arrive."""

INSTALL_HINT = "pip install 'agora[ray]'"


class Backend(Protocol):
    """Runs independent tasks over one shared input, returning results in the items' order."""

    name: str
    workers: int
    """How many tasks can run at once (1 for the local backend)."""

    def map(
        self,
        fn: Callable[[S, T], R],
        shared: S,
        items: Sequence[T],
        *,
        label: str,
        progress: Progress | None = None,
    ) -> list[R]:
        """Return [fn(shared, item) for item in items], however the tasks are spread."""
        ...


class LocalBackend:
    """Every task in this process, one after the other."""

    name = "local"
    workers = 1

    def map(
        self,
        fn: Callable[[S, T], R],
        shared: S,
        items: Sequence[T],
        *,
        label: str,
        progress: Progress | None = None,
    ) -> list[R]:
        results = []
        for done, item in enumerate(items, start=1):
            results.append(fn(shared, item))
            if progress is not None:
                progress(done, len(items))
        return results


@contextmanager
def open_backend(settings: Settings) -> Iterator[Backend]:
    """Yield the configured backend; a Ray started here is shut down on exit.

    Raises:
        ConfigError: `compute.backend` is ray and Ray is not installed (one line naming
            `pip install 'agora[ray]'`), or Ray cannot reach `compute.address`.
    """
    if settings.compute.backend == "local":
        yield LocalBackend()
        return
    require_ray()
    from agent.compute.ray_backend import connected

    with connected(settings.compute) as backend:
        yield backend


def require_ray(what: str = "compute.backend: ray") -> None:
    """Raise the one-line ConfigError when Ray (the `agora[ray]` extra) is not installed."""
    try:
        import ray  # noqa: F401
    except ImportError as e:
        raise ConfigError(f"{what} needs Ray, which is not installed: {INSTALL_HINT}") from e


def chunks(items: Sequence[T], parts: int) -> list[list[T]]:
    """Split items into at most `parts` contiguous, nearly equal, non-empty lists."""
    parts = max(1, min(parts, len(items)))
    size, extra = divmod(len(items), parts)
    out, start = [], 0
    for index in range(parts):
        end = start + size + (1 if index < extra else 0)
        out.append(list(items[start:end]))
        start = end
    return [c for c in out if c]
