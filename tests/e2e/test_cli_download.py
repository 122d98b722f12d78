from __future__ import annotations

import json
from pathlib import Path

import yaml

from agent.market.schema import format_time_ms
from tests.e2e.conftest import Run
from tests.fakes.fake_exchange import DEFAULT_START_MS, FakeExchange

HOUR = 3_600_000


def test_download_through_the_cli_against_a_local_exchange(agora: Run, workdir: Path) -> None:
    with FakeExchange() as fake:
        exchange = fake.settings().model_dump(mode="json")
        (workdir / "config.yaml").write_text(
            yaml.safe_dump({"data": {"dir": "data"}, "market": {"exchange": exchange}})
        )
        since = format_time_ms(DEFAULT_START_MS)
        until = format_time_ms(DEFAULT_START_MS + 1_499 * HOUR)
        args = (
            "data",
            "download",
            "--symbol",
            "BTC/USDT",
            "--timeframe",
            "1h",
            "--since",
            since,
            "--until",
            until,
            "--json",
        )
        first = agora(*args)
        assert first.returncode == 0, first.stderr
        assert json.loads(first.stdout)["inserted"] == 1_500
        requests_after_first = len(fake.klines_requests())
        assert requests_after_first >= 2  # 1,500 bars arrive in pages of at most 1,000

        second = agora(*args)
        assert second.returncode == 0, second.stderr
        assert json.loads(second.stdout)["inserted"] == 0
        assert len(fake.klines_requests()) == requests_after_first  # resumed: nothing fetched

    check = agora("data", "check", "--source", "binance", "--symbol", "BTC/USDT", "--json")
    assert check.returncode == 0, check.stdout
    (report,) = json.loads(check.stdout)
    assert (report["bars"], report["first"], report["last"]) == (1_500, since, until)


def test_unreachable_exchange_is_one_clear_error(agora: Run, workdir: Path) -> None:
    with FakeExchange() as fake:
        exchange = fake.settings().model_dump(mode="json")
    # the server is stopped now: connections are refused
    (workdir / "config.yaml").write_text(yaml.safe_dump({"market": {"exchange": exchange}}))
    result = agora("data", "download", "--symbol", "BTC/USDT", "--since", "2024-01-01")
    assert result.returncode == 1
    assert result.stderr.startswith("error: ")
    assert "binance" in result.stderr and "Traceback" not in result.stderr
