"""What a submission installs: the strategy a target names, its code hash and, for a plugin
file, the exact bytes that were hashed and the plugin-directory path they are written to.

`agent.plugins.registry.submit` plans first and installs only after the registration, so a
file that cannot be installed (another strategy's file in the way, a name taken by a shipped
or packaged strategy) is refused before anything is sent to the chain.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from agent.config import Settings
from agent.errors import PluginError
from agent.plugins.discovery import DiscoveredStrategy, discover_file, find
from agent.plugins.sandbox import SandboxLimits


@dataclass(frozen=True)
class SubmissionPlan:
    """What to submit: the strategy, its code hash, and the bytes to install where (files)."""

    item: DiscoveredStrategy
    code_hash: str
    blob: bytes | None = None
    install_path: Path | None = None


def plan_submission(
    settings: Settings, target: DiscoveredStrategy | Path | str, found: list[DiscoveredStrategy]
) -> SubmissionPlan:
    """Return what submitting `target` (a plugin file, or a discovered strategy or its name)
    registers and installs.

    Raises:
        PluginError: a file that does not load, defines several strategies or would overwrite
            another strategy's file; a shipped strategy; a name taken by a shipped or packaged
            strategy.
    """
    if not isinstance(target, DiscoveredStrategy):
        path = Path(target)
        if path.suffix == ".py" or path.is_file():
            return _file_plan(settings, path, found)
        target = find(found, str(target))
    if target.origin.startswith("file:"):
        return _file_plan(settings, Path(target.origin.removeprefix("file:")), found)
    if not target.origin.startswith("package:"):
        raise PluginError(
            f"strategy {target.name!r} is {target.origin}: only plugin files and installed "
            "packages are submitted"
        )
    if not target.ok or target.code_hash is None:
        raise PluginError(
            f"strategy {target.name!r} ({target.origin}) is not usable: {target.error}"
        )
    check_name_free(target, found)
    return SubmissionPlan(target, target.code_hash)


def _file_plan(settings: Settings, source: Path, found: list[DiscoveredStrategy]) -> SubmissionPlan:
    source = source.resolve()
    blob = source.read_bytes()
    code_hash = hashlib.sha256(blob).hexdigest()
    items = discover_file(source, SandboxLimits.from_settings(settings.strategies))
    if len(items) != 1:
        names = ", ".join(repr(d.name) for d in items)
        raise PluginError(
            f"{source} defines {len(items)} strategies ({names}): submit one per file"
        )
    (item,) = items
    if not item.ok:
        raise PluginError(f"{source} does not load: {item.error}")
    if item.code_hash != code_hash:
        raise PluginError(f"{source} changed while it was being submitted: submit it again")
    check_name_free(item, found)
    return SubmissionPlan(
        item, code_hash, blob, _install_target(settings, source, item.name, found)
    )


def check_name_free(item: DiscoveredStrategy, found: Iterable[DiscoveredStrategy]) -> None:
    """Refuse a name taken by a shipped or packaged strategy of another origin.

    Raises:
        PluginError: naming the strategy that holds the name.
    """
    for other in found:
        elsewhere = other.origin != item.origin and not other.origin.startswith("file:")
        if other.ok and other.name == item.name and elsewhere:
            raise PluginError(
                f"the name {item.name!r} is taken by the {other.origin} strategy: rename yours"
            )


def _install_target(
    settings: Settings, source: Path, name: str, found: Iterable[DiscoveredStrategy]
) -> Path:
    """Return where the file goes: in place, over its earlier version, or a new file."""
    plugin_dir = Path(settings.strategies.plugin_dir).resolve()
    files = {Path(d.origin.removeprefix("file:")): d for d in found if d.origin.startswith("file:")}
    holders = [p for p, d in files.items() if d.name == name and d.info is not None and p != source]
    if source.parent == plugin_dir:
        if holders:
            raise PluginError(
                f"{holders[0]} also defines strategy {name!r}: remove one of the two files"
            )
        return source
    if len(holders) > 1:
        raise PluginError(f"several files define {name!r}: {', '.join(map(str, holders))}")
    if holders:
        return holders[0]
    target = plugin_dir / source.name
    if target.exists():
        other = files.get(target)
        what = f"strategy {other.name!r}" if other and other.info else "another plugin file"
        raise PluginError(
            f"{target} already holds {what}: rename {source.name} before submitting it"
        )
    return target


def file_sha256(path: Path) -> str:
    """Return the sha256 of a file's bytes, as hex (the code hash of a plugin file)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def install_bytes(blob: bytes, target: Path) -> None:
    """Write the exact bytes that were hashed, atomically (a reader sees old or new, whole)."""
    if target.is_file() and target.read_bytes() == blob:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"_{target.name}.{os.getpid()}.partial")
    partial.write_bytes(blob)
    os.replace(partial, target)
