"""Fixtures shared by every test directory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.ray_cluster import RayCluster, start_cluster


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    """One local Ray cluster (`ray start --head` on loopback) for the session's Ray tests.

    Tests using it are marked slow: they all run in the one pytest process of `make test`
    that runs the slow tests, so no other process starts or stops a Ray meanwhile.
    """
    cluster = start_cluster(num_cpus=2)
    try:
        yield cluster
    finally:
        cluster.stop()
