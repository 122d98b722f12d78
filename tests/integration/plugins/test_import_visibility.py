"""A module the agent's process sees only through PYTHONPATH is not visible in the sandbox: the
import failure says what is visible there and how to install the module."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.plugins.discovery import StrategyStatus, discover, discover_file
from agent.plugins.launcher import site_directories
from tests.integration.plugins.conftest import GOOD_PLUGIN, strategies_settings

HINT = (
    "; the sandbox sees only the plugin's own file or package and the site-packages of "
    "Agora's environment ({sites}), not PYTHONPATH: pip install the module into Agora's "
    "environment, or package the strategy with its dependencies (contributing guide, "
    "section 7)"
)


@pytest.fixture
def pythonpath_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder on PYTHONPATH (and this process's sys.path) holding a helper package and a
    distribution whose `agora.strategies` entry point names a package there that imports it.

    The sandbox shows the entry point's own package, but not the rest of the folder."""
    folder = tmp_path / "on-pythonpath"
    helper = folder / "agora_pythonpath_helper"
    helper.mkdir(parents=True)
    (helper / "__init__.py").write_text("WINDOW = 12\n")
    package = folder / "agora_pythonpath_strategy"
    package.mkdir()
    (package / "__init__.py").write_text("import agora_pythonpath_helper\n" + GOOD_PLUGIN)
    dist = folder / "agora_pythonpath_strategy-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: agora-pythonpath-strategy\nVersion: 0.1\n"
    )
    (dist / "entry_points.txt").write_text(
        "[agora.strategies]\nvolume-momentum = agora_pythonpath_strategy:VolumeMomentum\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(folder))
    monkeypatch.syspath_prepend(str(folder))
    return folder


def test_a_plugin_importing_a_pythonpath_only_package_says_what_the_sandbox_sees(
    tmp_path: Path, pythonpath_only: Path
) -> None:
    import agora_pythonpath_helper  # noqa: F401  (importable here, in the agent's process)

    path = tmp_path / "uses_helper.py"
    path.write_text("import agora_pythonpath_helper\n" + GOOD_PLUGIN)
    (item,) = discover_file(path, None)

    assert item.status is StrategyStatus.LOAD_FAILED
    assert item.error == (
        "failed to import: ModuleNotFoundError: No module named 'agora_pythonpath_helper' "
        "(uses_helper.py, line 1)" + HINT.format(sites=", ".join(site_directories()))
    )


def test_an_entry_point_found_on_pythonpath_fails_to_import_naming_what_is_visible(
    tmp_path: Path, pythonpath_only: Path
) -> None:
    settings = strategies_settings(tmp_path / "no-plugins")
    found = discover(settings, shipped=False, files=False)
    (item,) = [d for d in found if d.origin == "package:agora-pythonpath-strategy"]

    assert item.status is StrategyStatus.LOAD_FAILED
    assert item.error is not None
    assert item.error.startswith(
        "failed to import: ModuleNotFoundError: No module named 'agora_pythonpath_helper'"
    )
    assert item.error.endswith(HINT.format(sites=", ".join(site_directories())))
