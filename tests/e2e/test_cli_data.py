from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.e2e.conftest import Run

CORPUS = Path(__file__).parents[1] / "data" / "csv_corpus"


def test_synth_50000_bars_is_clean_and_identical_when_repeated(agora: Run, workdir: Path) -> None:
    first = agora("data", "synth", "--bars", "50000", "--seed", "7", "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["inserted"] == 50000
    shown_before = agora("data", "show", "--limit", "50000", "--json")
    second = agora("data", "synth", "--bars", "50000", "--seed", "7", "--json")
    assert second.returncode == 0, second.stderr
    report = json.loads(second.stdout)
    assert (report["inserted"], report["unchanged"], report["replaced"]) == (0, 50000, 0)
    shown_after = agora("data", "show", "--limit", "50000", "--json")
    assert json.loads(shown_before.stdout) == json.loads(shown_after.stdout)
    assert len(json.loads(shown_after.stdout)["candles"]) == 50000

    check = agora("data", "check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "50000 bars" in check.stdout and "clean" in check.stdout
    assert "NOT CLEAN" not in check.stdout


def test_check_reports_gaps_and_exits_1(agora: Run, workdir: Path) -> None:
    csv = workdir / "gappy.csv"
    csv.write_text(
        "time,open,high,low,close,volume\n"
        "2024-01-01T00:00:00Z,10,11,9,10,1\n2024-01-01T01:00:00Z,10,11,9,10,1\n"
        "2024-01-01T05:00:00Z,10,11,9,10,1\n"
    )
    assert agora("data", "import", str(csv), "--symbol", "X/Y", "--timeframe", "1h").returncode == 0
    result = agora("data", "check", "--json")
    assert result.returncode == 1
    (report,) = json.loads(result.stdout)
    assert report["missing_bars"] == 3
    assert report["gaps"] == [
        {"from": "2024-01-01T02:00:00Z", "to": "2024-01-01T04:00:00Z", "missing_bars": 3}
    ]


@pytest.mark.parametrize("name", sorted(p.name for p in CORPUS.glob("*.csv")))
def test_bad_csv_is_one_clear_line_exit_1_and_store_unchanged(
    agora: Run, workdir: Path, name: str
) -> None:
    good = workdir / "good.csv"
    good.write_text("time,open,high,low,close,volume\n2023-12-31T23:00:00Z,10,11,9,10,1\n")
    assert (
        agora("data", "import", str(good), "--symbol", "BTC/USDT", "--timeframe", "1h").returncode
        == 0
    )
    before = agora("data", "show", "--source", "csv", "--symbol", "BTC/USDT", "--json").stdout
    shutil.copy(CORPUS / name, workdir / name)
    result = agora("data", "import", name, "--symbol", "BTC/USDT", "--timeframe", "1h")
    assert result.returncode == 1
    assert result.stderr.startswith("error: ")
    assert "line " in result.stderr and "Traceback" not in result.stderr
    after = agora("data", "show", "--source", "csv", "--symbol", "BTC/USDT", "--json").stdout
    assert after == before


def test_config_check_names_a_misspelled_key_and_exits_2(agora: Run, workdir: Path) -> None:
    bad = workdir / "bad.yaml"
    bad.write_text("market:\n  timefrme: 1h\n")
    result = agora("config", "check", str(bad))
    assert result.returncode == 2
    assert "unknown key 'market.timefrme'" in result.stderr
    assert "Traceback" not in result.stderr


def test_config_option_works_before_and_after_the_command(agora: Run, workdir: Path) -> None:
    other = workdir / "other.yaml"
    other.write_text("market:\n  symbol: ABC/USD\n")
    for args in (
        ("--config", str(other), "config", "show", "--json"),
        ("config", "show", "--config", str(other), "--json"),
    ):
        result = agora(*args)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["market"]["symbol"] == "ABC/USD"


def test_config_show_applies_env_overrides_and_masks_secrets(agora: Run, workdir: Path) -> None:
    result = agora(
        "config",
        "show",
        "--json",
        extra_env={
            "AGORA__market__exchange__options": "{password: pw, defaultType: spot}",
            "AGORA__rewards__epoch_bars": "42",
        },
    )
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["rewards"]["epoch_bars"] == 42
    assert shown["market"]["exchange"]["options"] == {"password": "***", "defaultType": "spot"}


def test_usage_errors_exit_2(agora: Run) -> None:
    assert agora("data", "synth", "--bars", "-5").returncode == 2
    assert agora("data", "frobnicate").returncode == 2
    result = agora("data", "download", "--since", "yesterday-ish", "--exchange", "binance")
    assert result.returncode == 2
    assert "--since" in result.stderr


def test_show_unknown_series_is_a_clear_error(agora: Run) -> None:
    result = agora("data", "show", "--symbol", "NOPE/USD")
    assert result.returncode == 2
    assert "no candles stored for synthetic:NOPE/USD:1h" in result.stderr


def test_python_dash_m_and_version(agora: Run) -> None:
    result = agora("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("agora ")


def test_an_hourly_file_imported_as_5m_is_one_line_exit_2_and_writes_nothing(
    agora: Run, workdir: Path
) -> None:
    hourly = workdir / "hourly.csv"
    hourly.write_text(
        "time,open,high,low,close,volume\n"
        "2024-01-01T00:00:00Z,10,11,9,10,1\n2024-01-01T01:00:00Z,10,11,9,10,1\n"
        "2024-01-01T03:00:00Z,10,11,9,10,1\n"
    )
    result = agora("data", "import", "hourly.csv", "--symbol", "X/Y", "--timeframe", "5m")
    assert result.returncode == 2
    assert result.stderr == (
        "error: hourly.csv: --timeframe 5m does not match the file: its bars are 1h apart (the "
        "smallest spacing between its timestamps), not 5m; import it with --timeframe 1h\n"
    )
    assert json.loads(agora("data", "list", "--json").stdout) == []
