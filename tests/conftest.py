"""Fixtures shared by every test directory."""

from __future__ import annotations

from collections.abc import Generator, Iterator

import pytest

from tests.support.ray_cluster import RayCluster, start_cluster

_running: list[RayCluster] = []


def _uses_ray(item: pytest.Item | None) -> bool:
    return item is not None and "ray_cluster" in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the tests that use the Ray cluster one after another, where the first of them is,
    so the head is started once and stopped as soon as they are done: an idle head's services
    would take CPU from every later test of the session."""
    ray = [item for item in items if _uses_ray(item)]
    if ray:
        first = items.index(ray[0])
        rest = [item for item in items if not _uses_ray(item)]
        items[:] = rest[:first] + ray + rest[first:]


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    """One local Ray cluster (`ray start --head` on loopback) for the session's Ray tests,
    which run one after another (above); stopped after the last of them.

    Tests using it are marked slow: they all run in the one pytest process of `make test`
    that runs the slow tests, so no other process starts or stops a Ray meanwhile.
    """
    cluster = start_cluster(num_cpus=2)
    _running.append(cluster)
    try:
        yield cluster
    finally:
        _stop_cluster()


def _stop_cluster() -> None:
    while _running:
        _running.pop().stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None]:
    result = yield  # the item's fixtures are torn down first (a Ray connection among them)
    if not _uses_ray(nextitem):
        _stop_cluster()
    return result
