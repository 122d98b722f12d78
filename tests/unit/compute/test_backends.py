"""The compute backends' contract, without starting Ray (the fast tests never do)."""

from __future__ import annotations

import socket

import pytest
from pydantic import ValidationError

from agent.compute import LocalBackend, chunks, open_backend
from agent.config import ComputeSettings, Settings
from agent.errors import ConfigError


def _add(shared: int, item: int) -> int:
    return shared + item


def test_the_local_backend_returns_results_in_the_items_order_and_reports_progress() -> None:
    seen: list[tuple[int, int]] = []
    results = LocalBackend().map(
        _add, 10, [3, 1, 2], label="t", progress=lambda d, n: seen.append((d, n))
    )
    assert results == [13, 11, 12]
    assert seen == [(1, 3), (2, 3), (3, 3)]


def test_the_default_configuration_is_the_local_backend() -> None:
    with open_backend(Settings()) as backend:
        assert isinstance(backend, LocalBackend) and backend.workers == 1


@pytest.mark.parametrize(("n", "parts"), [(10, 3), (3, 8), (1, 1), (16, 4), (0, 2)])
def test_chunks_keep_every_item_once_in_order_in_at_most_parts_nonempty_lists(
    n: int, parts: int
) -> None:
    split = chunks(list(range(n)), parts)
    assert [x for part in split for x in part] == list(range(n))
    assert len(split) <= parts and all(split)
    if split:
        assert max(map(len, split)) - min(map(len, split)) <= 1


@pytest.mark.parametrize("address", [None, "auto", "10.0.0.5:6379", "ray://head.local:10001"])
def test_addresses_a_user_would_write_are_accepted(address: str | None) -> None:
    assert ComputeSettings(address=address).address == address


@pytest.mark.parametrize("address", ["head", "ray://head", "head:port", "head:70000", ":6379"])
def test_a_malformed_address_is_refused(address: str) -> None:
    with pytest.raises(ValidationError, match="host:port"):
        ComputeSettings(address=address)


def test_where_work_runs_does_not_change_the_configuration_hash() -> None:
    ray = Settings(compute=ComputeSettings(backend="ray", address="auto", cpus_per_task=2))
    assert ray.config_hash() == Settings().config_hash()
    other = Settings.model_validate({"agent": {"gamma": 0.9}})
    assert other.config_hash() != Settings().config_hash()


def test_an_address_nothing_listens_on_fails_at_once_naming_it() -> None:
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = Settings(compute=ComputeSettings(backend="ray", address=f"127.0.0.1:{port}"))
    expected = f"nothing accepts connections at '127.0.0.1:{port}'"
    with pytest.raises(ConfigError, match=expected), open_backend(settings):
        pass
