"""The failure table of docs/contributing-strategies.md is what validation says, word for word.

Every case below is a small plugin file that fails one check; each is validated once (a few at
a time, with small limits) and its first failure must match exactly one example of the table,
in the same check's row. Every example of the table must be produced by some case. In an
example, `…`, numbers, quoted names, `*.py` file names and absolute paths stand for what varies.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent.config import Settings
from agent.plugins.registry import validate_strategy
from agent.plugins.validation import Check

GUIDE = Path(__file__).parents[3] / "docs" / "contributing-strategies.md"
TABLE_HEADING = "### What each failure means"
NOT_TRIGGERED_HERE = {
    # Needs the configured market's candles in the store: tests/integration/plugins/
    # test_copy_attacks.py refuses a copy there.
    "… (R² 1.000 on the stored market binance:BTC/USDT:1h, limit 0.8, lags 0-3): …",
}
PLACEHOLDER = re.compile(r"…|'[^']*'|\S*\.py\b|/[\w/.-]+|\d+(?:\.\d+)?")


def example_pattern(example: str) -> re.Pattern[str]:
    """Return the regex an example stands for (its placeholders replaced, the rest literal)."""
    parts, last = [], 0
    for found in PLACEHOLDER.finditer(example):
        parts.append(re.escape(example[last : found.start()]))
        text = found.group()
        if text == "…":
            parts.append(".*")
        elif text.startswith("'"):
            parts.append("'[^']*'")
        elif text.endswith(".py"):
            parts.append(r"\S*\.py")
        elif text.startswith("/"):
            parts.append(r"/[\w/.-]+")
        else:
            parts.append(r"\d+(?:\.\d+)?")
        last = found.end()
    parts.append(re.escape(example[last:]))
    return re.compile("".join(parts), re.DOTALL)


def guide_examples() -> list[tuple[str, str]]:
    """Return the table's (check, example message) pairs, one per backticked example."""
    text = GUIDE.read_text(encoding="utf-8")
    table = text[text.index(TABLE_HEADING) :].split("\n\n")[2]  # heading, note, table
    examples = []
    for row in table.splitlines()[2:]:
        check, message, _ = (cell.strip() for cell in row.strip().strip("|").split(" | "))
        examples += [(check, ex) for ex in re.findall(r"`([^`]+)`", message)]
    return examples


HEAD = """
import numpy as np
import pandas as pd

from agent.plugins import Strategy

"""
ZEROS = "return np.zeros(len(candles))"


def plugin(
    body: str, *, name: str = "my-strategy", cls: str = "MyStrategy", warmup: int = 0
) -> str:
    lines = "".join(f"        {line}\n" for line in body.strip().splitlines())
    return (
        f"\nclass {cls}(Strategy):\n    name = {name!r}\n    warmup_bars = {warmup}\n\n"
        f"    def signal(self, candles: pd.DataFrame) -> pd.Series:\n{lines}"
    )


@dataclass(frozen=True)
class Case:
    source: str
    check: str
    settings: Mapping[str, Any] = field(default_factory=dict)


COPY_OF_MA_CROSSOVER = """
close = candles["close"].astype("float64")
return np.tanh(50.0 * (close.rolling(10).mean() / close.rolling(30).mean() - 1.0))
"""
CASES = {
    "missing import": Case(
        "import agora_missing_dependency  # noqa: F401\n" + plugin(ZEROS), "load"
    ),
    "bad name metadata": Case(plugin(ZEROS, name="My Strategy"), "load"),
    "two strategies": Case(plugin(ZEROS, name="a", cls="A") + plugin(ZEROS, name="b"), "load"),
    "shipped name": Case(plugin(ZEROS, name="ma-crossover"), "load"),
    "wrong length": Case(plugin("return np.zeros(len(candles) - 1)"), "shape and range"),
    "NaN after warm-up": Case(
        plugin("values = np.zeros(len(candles))\nvalues[50] = np.nan\nreturn values", warmup=10),
        "shape and range",
    ),
    "out of range": Case(plugin("return np.full(len(candles), 2.5)"), "shape and range"),
    "raises": Case(plugin('raise ValueError("no signal today")'), "shape and range"),
    "timeout": Case(
        plugin(f"import time\ntime.sleep(60)\n{ZEROS}"), "shape and range", {"wall_seconds": 2}
    ),
    "CPU time": Case(
        plugin("while True:\n    pass"), "shape and range", {"cpu_seconds": 1, "wall_seconds": 8}
    ),
    "memory": Case(plugin(f"hog = np.ones(4 << 30, dtype=np.uint8)\n{ZEROS}"), "shape and range"),
    "file too large": Case(
        plugin(f'with open("big.bin", "wb") as f:\n    f.write(b"x" * (2 << 20))\n{ZEROS}'),
        "shape and range",
        {"file_size_mb": 1},
    ),
    "writes outside": Case(
        plugin(f'open("/var/tmp/agora-case.txt", "w").write("x")\n{ZEROS}'), "shape and range"
    ),
    "starts a process": Case(plugin(f'import os\nos.system("true")\n{ZEROS}'), "shape and range"),
    "multiprocessing spawn": Case(
        plugin(
            'import multiprocessing\nmultiprocessing.get_context("spawn")'
            f".Process(target=print).start()\n{ZEROS}"
        ),
        "shape and range",
    ),
    "multiprocessing pool": Case(
        plugin(f"import multiprocessing\nmultiprocessing.Pool(2)\n{ZEROS}"), "shape and range"
    ),
    "nondeterministic": Case(
        plugin("return np.random.default_rng().uniform(-1, 1, len(candles))"), "determinism"
    ),
    "look-ahead": Case(
        plugin('return np.tanh(candles["close"].pct_change().shift(-1).fillna(0) * 50)'),
        "causality",
    ),
    "too slow": Case(
        plugin(f"import time\ntime.sleep(len(candles) * 1e-4)\n{ZEROS}"),
        "speed",
        {"speed_budget_s_per_10k_bars": 0.2},
    ),
    "copy": Case(plugin(COPY_OF_MA_CROSSOVER, name="not-a-copy", warmup=29), "originality"),
}
SMALL_LIMITS = {
    "cpu_seconds": 10,
    "wall_seconds": 8,
    "memory_mb": 768,
    "file_size_mb": 4,
    "reference_bars": 1_000,
    "lookahead_samples": 20,
    "causality_cut_points": 5,
}


@pytest.fixture(scope="module")
def first_failures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Check]:
    """Validate every case once, a few at a time; return each one's first failed check."""
    root = tmp_path_factory.mktemp("failures")

    def first_failure(item: tuple[str, Case]) -> tuple[str, Check]:
        label, case = item
        path = root / f"{re.sub(r'[^a-z]+', '_', label.lower())}.py"
        path.write_text(HEAD + case.source, encoding="utf-8")
        strategies = {**SMALL_LIMITS, "plugin_dir": str(root / "plugins"), **case.settings}
        settings = Settings.model_validate(
            {"data": {"dir": str(root / "data")}, "strategies": strategies}
        )
        report = validate_strategy(settings, path)
        assert report.failures, f"{label}: passed every check"
        return label, report.failures[0]

    with ThreadPoolExecutor(max_workers=6) as pool:
        return dict(pool.map(first_failure, CASES.items()))


@pytest.mark.parametrize("label", list(CASES))
def test_each_refusal_is_worded_as_in_the_guide(
    label: str, first_failures: dict[str, Check]
) -> None:
    failure = first_failures[label]
    assert failure.name == CASES[label].check, failure
    matches = [
        (check, example)
        for check, example in guide_examples()
        if example_pattern(example).fullmatch(failure.message)
    ]
    assert len(matches) == 1, f"{label}: {failure.message!r} matches {matches} in the guide"
    assert matches[0][0] == failure.name


def test_every_example_in_the_guide_is_triggered_by_a_case(
    first_failures: dict[str, Check],
) -> None:
    messages = [failure.message for failure in first_failures.values()]
    untriggered = [
        example
        for _, example in guide_examples()
        if example not in NOT_TRIGGERED_HERE
        and not any(example_pattern(example).fullmatch(message) for message in messages)
    ]
    assert untriggered == []


def test_the_guide_table_is_parsed() -> None:
    examples = guide_examples()
    assert len(examples) >= len(CASES)
    assert {check for check, _ in examples} == {
        "load",
        "shape and range",
        "determinism",
        "causality",
        "speed",
        "originality",
    }
