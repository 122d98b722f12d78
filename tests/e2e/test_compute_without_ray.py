"""Without Ray installed: the local backend works as before; asking for Ray is one clear line.

Ray is installed here (`make test` installs the `ray` extra), so "not installed" is made real
for the child process: tests/support/no_ray comes first on its PYTHONPATH and `import ray`
fails there exactly as on a machine without the package.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_cli_train import TINY_CONFIG

REPO = Path(__file__).resolve().parents[2]
NO_RAY = REPO / "tests" / "support" / "no_ray"


def _agora(workdir: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGORA__", "RAY_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(NO_RAY), str(REPO)])
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        cwd=workdir,
        env={**env, **extra},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small market for the module (each test compares the files before and after)."""
    workdir = tmp_path_factory.mktemp("no-ray")
    (workdir / "config.yaml").write_text(TINY_CONFIG)
    synth = _agora(workdir, "data", "synth", "--bars", "900", "--seed", "3")
    assert synth.returncode == 0, synth.stderr
    return workdir


def test_the_shim_really_hides_ray(market: Path) -> None:
    probe = _agora(market, "--version")
    assert probe.returncode == 0, probe.stderr
    hidden = subprocess.run(
        [sys.executable, "-c", "import ray"],
        env={**os.environ, "PYTHONPATH": str(NO_RAY)},
        capture_output=True,
        text=True,
    )
    assert hidden.returncode == 1 and "No module named 'ray'" in hidden.stderr


def test_the_local_backend_trains_without_ray(market: Path) -> None:
    trained = _agora(market, "train", "--timesteps", "256", "--json")
    assert trained.returncode == 0, trained.stderr
    (run,) = json.loads(trained.stdout)["runs"]
    assert len(run["model_id"]) == 64


@pytest.mark.parametrize(
    "command",
    [
        ("train", "--seeds", "2", "--timesteps", "256"),
        ("tune", str(REPO / "tune" / "planted-edge.yaml")),
    ],
    ids=["train", "tune"],
)
def test_asking_for_ray_without_it_is_one_line_naming_the_extra_and_exit_2(
    market: Path, command: tuple[str, ...]
) -> None:
    before = sorted(p.name for p in (market / "data").rglob("*"))
    result = _agora(market, *command, AGORA__compute__backend="ray")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "pip install 'agora[ray]'" in lines[0] and "Ray" in lines[0]
    assert result.stdout == ""
    assert sorted(p.name for p in (market / "data").rglob("*")) == before  # nothing written
