from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A directory with its own config.yaml whose data directory is inside it."""
    (tmp_path / "config.yaml").write_text("data:\n  dir: data\n")
    return tmp_path


@pytest.fixture
def agora(workdir: Path) -> Run:
    """Run `python -m agent …` in `workdir` as a user would, returning the finished process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGORA__")}
    env["COLUMNS"] = "200"

    def run(
        *args: str, extra_env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "agent", *args],
            cwd=workdir,
            env={**env, **(extra_env or {})},
            capture_output=True,
            text=True,
            timeout=300,
        )

    return run
