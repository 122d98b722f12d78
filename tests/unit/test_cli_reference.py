from __future__ import annotations

from pathlib import Path

from agent.cli.reference import render

REFERENCE = Path(__file__).parents[2] / "docs" / "cli.md"


def test_every_command_and_option_is_in_the_committed_reference() -> None:
    expected = render()
    assert REFERENCE.read_text() == expected, (
        "docs/cli.md is out of date: run `python -m agent.cli.reference > docs/cli.md`"
    )


def test_reference_names_every_option_of_a_known_command() -> None:
    text = render()
    section = text.split("## `agora data synth`")[1].split("\n## ")[0]
    for option in ("--bars", "--seed", "--symbol", "--timeframe", "--ic", "--replace", "--json"):
        assert f"`{option}`" in section
