"""Fixtures shared by the integration tests: the fake exchange on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.fake_exchange import FakeExchange


@pytest.fixture
def fake_exchange() -> Iterator[FakeExchange]:
    """A fake Binance spot API on a free local port: 2,500 closed 1h bars of BTC/USDT."""
    with FakeExchange() as fake:
        yield fake
