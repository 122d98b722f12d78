"""Every input error a user can make is one line on stderr, naming the culprit, with the right
exit code (2 for a usage or configuration error): mistyped strategy parameters, out-of-range
options, reversed or out-of-range dates, bad environment overrides, huge numbers, bad paths.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import Run

# the synthetic market of these tests: 300 hourly bars from 2024-01-01T00:00Z
FIRST, LAST = "2024-01-01T00:00:00Z", "2024-01-13T11:00:00Z"
HELD = f"synthetic:SYN/USD:1h holds candles from {FIRST} to {LAST}"
HUGE = "99999999999999999999999"


def one_line_error(result: subprocess.CompletedProcess[str], code: int = 2) -> str:
    """Assert the command failed with `code` and one `error:` line; return that line."""
    assert result.returncode == code, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    assert "unexpected" not in lines[0] and "Traceback" not in result.stderr
    return lines[0]


@pytest.fixture
def market(agora: Run) -> None:
    done = agora("data", "synth", "--bars", "300")
    assert done.returncode == 0, done.stderr


# --- strategy specs and parameters ----------------------------------------------------------
def test_config_check_refuses_a_mistyped_strategy_parameter(agora: Run, workdir: Path) -> None:
    (workdir / "config.yaml").write_text(
        'data:\n  dir: data\nagent:\n  strategies: [ma-crossover, "macd:nonexist=3"]\n'
    )
    line = one_line_error(agora("config", "check"))
    assert line == (
        "error: config.yaml: agent.strategies entry 'macd:nonexist=3': strategy 'macd' has no "
        "parameter 'nonexist' (it takes fast, scale, signal, slow)"
    )


def test_config_check_refuses_a_malformed_spec_and_a_bad_shipped_value(
    agora: Run, workdir: Path
) -> None:
    (workdir / "config.yaml").write_text(
        'data:\n  dir: data\nagent:\n  strategies: ["macd:fast"]\n'
    )
    line = one_line_error(agora("config", "check"))
    assert "config.yaml: agent.strategies" in line
    assert "'macd:fast': expected name:param=value" in line

    (workdir / "config.yaml").write_text(
        'data:\n  dir: data\nagent:\n  strategies: ["macd:fast=40"]\n'
    )
    line = one_line_error(agora("config", "check"))
    assert "agent.strategies entry 'macd:fast=40'" in line and "fast < slow" in line


def test_train_refuses_a_mistyped_strategy_parameter_before_training(
    agora: Run, workdir: Path, market: None
) -> None:
    result = agora(
        "train", "--timesteps", "64", extra_env={"AGORA__agent__strategies": "[macd:nonexist=3]"}
    )
    line = one_line_error(result)
    assert "agent.strategies entry 'macd:nonexist=3'" in line and "'nonexist'" in line
    assert "validation return" not in result.stderr  # nothing was trained
    assert json.loads(agora("models", "list", "--json").stdout) == []


BROKEN_PLUGIN = """\
from agent.plugins import Strategy


class Broken(Strategy):
    name = "broken"

    def signal(self, candles):
        raise RuntimeError("broken on purpose")
"""

MASKED_CONFIG = """\
data:
  dir: data
strategies:
  sandbox: none
agent:
  strategies: [ma-crossover, broken]
  episode_bars: 64
  timesteps: 64
  eval_every_steps: 64
  net_arch: [8]
  n_steps: 64
  batch_size: 32
"""


def test_train_refuses_a_strategy_without_signal_unless_masking_is_allowed(
    agora: Run, workdir: Path, market: None
) -> None:
    (workdir / "plugins").mkdir()
    (workdir / "plugins" / "broken.py").write_text(BROKEN_PLUGIN)
    (workdir / "config.yaml").write_text(MASKED_CONFIG)
    assert agora("config", "check").returncode == 0  # it loads: only running it fails

    line = one_line_error(agora("train"))
    assert line.startswith("error: agent.strategies: no signal from broken (raised RuntimeError")
    assert line.endswith("or allow it with --allow-masked-strategies")
    assert json.loads(agora("models", "list", "--json").stdout) == []

    allowed = agora("train", "--allow-masked-strategies", "--json")
    assert allowed.returncode == 0, allowed.stderr
    assert "warning: broken: no signal (masked)" in allowed.stderr
    assert list(json.loads(allowed.stdout)["masked"]) == ["broken"]


# --- options out of range -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ("data", "synth", "--bars", "10000001"),
            "error: --bars: market.synthetic.bars = 10000001: Input should be less than or "
            "equal to 10000000 (allowed: 2 to 10000000)",
        ),
        (
            ("data", "synth", "--half-life", "1e308"),
            "error: --half-life: market.synthetic.planted.half_life_bars = 1e+308: Input should "
            "be less than or equal to 100000 (allowed: > 0.0 and <= 100000.0)",
        ),
        (
            ("train", "--timesteps", HUGE),
            f"error: --timesteps: agent.timesteps = {HUGE}: Input should be less than or equal "
            "to 1000000000 (allowed: 1 to 1000000000)",
        ),
        (
            ("backtest", "--seed", HUGE),
            f"error: --seed: seed = {HUGE}: Input should be less than or equal to 4294967295 "
            "(allowed: 0 to 4294967295)",
        ),
    ],
)
def test_an_option_out_of_range_is_one_line_naming_option_key_and_range(
    agora: Run, args: tuple[str, ...], expected: str
) -> None:
    assert one_line_error(agora(*args)) == expected


def test_a_click_usage_error_is_one_line_naming_the_help(agora: Run) -> None:
    line = one_line_error(agora("data", "synth", "--bars", "1"))
    assert "'--bars'" in line and line.endswith("data synth --help`)")


# --- dates ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ("data", "show", "--start", "2024-01-10", "--end", "2024-01-05"),
            "error: --start 2024-01-10T00:00:00Z is after --end 2024-01-05T00:00:00Z; " + HELD,
        ),
        (
            ("backtest", "--start", "2024-01-10", "--end", "2024-01-05", "--no-report"),
            "error: data.start 2024-01-10T00:00:00Z is after data.end 2024-01-05T00:00:00Z; "
            + HELD,
        ),
        (
            ("backtest", "--end", "2020-01-01", "--no-report"),
            "error: data.end 2020-01-01T00:00:00Z is before the data: " + HELD,
        ),
        (
            ("backtest", "--start", "2030-01-01", "--no-report"),
            "error: data.start 2030-01-01T00:00:00Z is after the data: " + HELD,
        ),
        (
            ("data", "show", "--end", "2020-01-01"),
            "error: --end 2020-01-01T00:00:00Z is before the data: " + HELD,
        ),
    ],
)
def test_reversed_or_out_of_range_dates_exit_2_with_the_datas_range(
    agora: Run, market: None, args: tuple[str, ...], expected: str
) -> None:
    line = one_line_error(agora(*args))
    assert line == expected
    assert "data synth" not in line


def test_a_range_too_short_to_trade_names_the_datas_range(agora: Run, market: None) -> None:
    line = one_line_error(agora("backtest", "--end", "2024-01-01T05:00", "--no-report"))
    assert "widen data.start/data.end" in line and line.endswith(HELD)


# --- environment overrides ------------------------------------------------------------------
def test_a_bad_environment_override_is_blamed_on_the_variable(agora: Run) -> None:
    for name, value, expected in (
        ("AGORA__market__synthetic__bars", "abc", "market.synthetic.bars = 'abc'"),
        ("AGORA__market__synthetic__bars", "0", "(allowed: 2 to 10000000)"),
        ("AGORA__market__colour", "red", "unknown key 'market.colour'"),
    ):
        line = one_line_error(agora("config", "check", extra_env={name: value}))
        assert line.startswith(f"error: environment variable {name}: ")
        assert expected in line and "config.yaml" not in line
    line = one_line_error(
        agora("config", "check", extra_env={"AGORA__agent__strategies": "[macd:nonexist=3]"})
    )
    assert line.startswith("error: environment variable AGORA__agent__strategies: ")


# --- nothing escapes as "unexpected" --------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("data", "show", "--start", HUGE), f"--start '{HUGE}' is out of range"),
        (("backtest", "list", "--limit", HUGE), "Invalid value for '--limit'"),
        (("rewards", "show", HUGE), "Invalid value for 'epoch'"),
        (("audit", "show", HUGE), "Invalid value for 'seq'"),
        (("backtest", "--out", "a-file/reports"), "cannot create the report folder a-file"),
        (
            ("strategies", "new", "my-strategy", "--dir", "a-file/plugins"),
            "cannot write the strategy 'my-strategy' in a-file/plugins",
        ),
    ],
)
def test_huge_numbers_and_unusable_paths_are_usage_errors_not_unexpected(
    agora: Run, workdir: Path, args: tuple[str, ...], expected: str
) -> None:
    (workdir / "a-file").write_text("not a folder\n")
    assert expected in one_line_error(agora(*args))
