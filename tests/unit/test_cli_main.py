"""The CLI's last line of defence: an OS error a command lets through is one clear line."""

from __future__ import annotations

from typing import Any

import pytest

from agent.cli import main as cli_main


def run_raising(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], error: Exception
) -> tuple[int, str]:
    def app(**_: Any) -> None:
        raise error

    monkeypatch.setattr(cli_main, "app", app)
    with pytest.raises(SystemExit) as exited:
        cli_main.main(["data", "list"])
    code = exited.value.code
    assert isinstance(code, int)
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("error", "code", "line"),
    [
        (FileNotFoundError(2, "No such file or directory", "/x/y"), 2, "/x/y: No such file"),
        (NotADirectoryError(20, "Not a directory", "/f/x"), 2, "/f/x: Not a directory"),
        (PermissionError(13, "Permission denied", "/root/db"), 1, "/root/db: Permission denied"),
        (OSError(28, "No space left on device"), 1, "No space left on device"),
    ],
)
def test_an_os_error_is_one_line_naming_the_path_and_the_reason(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    error: OSError,
    code: int,
    line: str,
) -> None:
    exit_code, err = run_raising(monkeypatch, capsys, error)
    assert exit_code == code
    (shown,) = err.strip().splitlines()
    assert shown.startswith(f"error: {line}") and "unexpected" not in shown
