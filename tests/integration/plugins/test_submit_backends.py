"""The same submission refusals on every chain backend, before anything is stored.

Resubmitting unchanged code, and submitting a registered name from another contributor's
address (with the same or with changed code), are refused on the embedded chain exactly as on
anvil. The embedded chain lives in the data directory (data/chain), so the registration made by
one process is what another process is refused against.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_utils import to_checksum_address

from agent.chain.backends import AnvilBackend, ChainBackend
from agent.config import Settings
from agent.errors import PluginError
from agent.plugins.registry import read_registrations, submit
from agent.store import Store
from tests.integration.plugins.conftest import GOOD_PLUGIN, MEMORY_MB

CONTRIBUTOR = to_checksum_address("0x" + "ab" * 20)
OTHER_CONTRIBUTOR = to_checksum_address("0x" + "cd" * 20)
ROOT = Path(__file__).parents[3]
ALREADY = "already registered as version 1 with this code"
NOT_YOURS = f"is registered to {CONTRIBUTOR}, not {OTHER_CONTRIBUTOR}"

_OTHER_PROCESS = """
import json, sys
from pathlib import Path
from agent.config import Settings
from agent.errors import PluginError
from agent.plugins.registry import submit
settings = Settings.model_validate(json.loads(sys.argv[1]))
try:
    submit(settings, Path(sys.argv[2]), sys.argv[3])
except PluginError as e:
    print(str(e))
    raise SystemExit(1)
"""


def _config(root: Path, backend: str) -> dict[str, Any]:
    return {
        "data": {"dir": str(root / "data")},
        "chain": {"backend": backend},
        "strategies": {
            "plugin_dir": str(root / "plugins"),
            "memory_mb": MEMORY_MB,
            "wall_seconds": 20.0,
            "reference_bars": 1_000,
        },
    }


@pytest.fixture(scope="module")
def anvil() -> Iterator[ChainBackend]:
    with AnvilBackend() as backend:
        yield backend


def _snapshot(settings: Settings) -> tuple[list[dict[str, Any]], dict[str, bytes]]:
    with Store(settings.data.database_path) as store:
        rows = read_registrations(store)
    plugins = Path(settings.strategies.plugin_dir)
    return rows, {p.name: p.read_bytes() for p in sorted(plugins.iterdir())}


def _in_another_process(settings: Settings, config: dict[str, Any], path: Path, who: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", _OTHER_PROCESS, json.dumps(config), str(path), who],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=settings.data.dir.parent,
    )
    assert result.returncode == 1, result.stderr
    return result.stdout


@pytest.mark.parametrize("backend_name", ["embedded", "anvil"])
def test_resubmissions_and_other_contributors_are_refused_on_every_backend(
    backend_name: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "outside").mkdir()
    config = _config(tmp_path, backend_name)
    settings = Settings.model_validate(config)
    backend = request.getfixturevalue("anvil") if backend_name == "anvil" else None
    path = tmp_path / "outside" / "volume_momentum.py"
    path.write_text(GOOD_PLUGIN)
    changed = tmp_path / "outside" / "volume_momentum_v2.py"
    changed.write_text(GOOD_PLUGIN.replace('"window": 12', '"window": 30'))

    first = submit(settings, path, CONTRIBUTOR, backend=backend)
    assert first.version == 1
    before = _snapshot(settings)

    attempts = [(path, CONTRIBUTOR, ALREADY), (path, OTHER_CONTRIBUTOR, NOT_YOURS)]
    attempts.append((changed, OTHER_CONTRIBUTOR, NOT_YOURS))
    for plugin, who, refusal in attempts:
        if backend is None:  # the embedded chain, reopened from data/chain by another process
            assert refusal in _in_another_process(settings, config, plugin, who)
        else:
            with pytest.raises(PluginError, match=refusal):
                submit(settings, plugin, who, backend=backend)
        assert _snapshot(settings) == before, "a refused submission stored something"
