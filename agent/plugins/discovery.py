"""Find strategies in three places, in this order: shipped, installed packages, plugin files.

Shipped strategies (`strategies.SHIPPED`) are trusted and imported here. Third-party code is
never imported in the agent's process, not even to read its metadata: installed packages are
found through their entry points (`agora.strategies`, read from package metadata) and plugin
files by listing the directory; each is then loaded in the sandbox, which reports the
metadata of its Strategy classes as JSON. Every strategy found is listed with a status:

- OK: loaded and its metadata checked;
- LOAD FAILED: the real error (the import error and its line, a bad metadata field);
- DUPLICATE: its name is already taken by a strategy found earlier (first wins);
- QUARANTINED (shown by `agora strategies list`): its code was caught looking ahead on data
  it was run on (`agent.plugins.lookahead`); its signal is masked and it is not paid.

Code hash: the sha256 of the file's bytes for a shipped strategy or a plugin file (the sandbox
runs exactly the bytes it hashed); for a package, the sha256 over the sorted relative paths and
byte hashes of every file of the top-level package that holds the entry point's module
(`__pycache__` excluded), so a change to any module of the package changes the hash.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import importlib.util
import inspect
import os
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from agent.config import Settings, StrategiesSettings
from agent.errors import PluginError
from agent.plugins.interface import Strategy, StrategyInfo, check_metadata
from agent.plugins.sandbox import Inspection, PluginLocation, SandboxLimits, inspect_plugin

ENTRY_POINT_GROUP = "agora.strategies"


class StrategyStatus(StrEnum):
    """Whether a discovered strategy can be used."""

    OK = "OK"
    LOAD_FAILED = "LOAD FAILED"
    DUPLICATE = "DUPLICATE"
    QUARANTINED = "QUARANTINED"


@dataclass(frozen=True)
class DiscoveredStrategy:
    """One strategy found by `discover`, ready to list, validate or run.

    Attributes:
        name: the strategy's name (for a plugin that failed to load: the file stem or entry
            point name).
        origin: "shipped", "package:<distribution>" or "file:<path>".
        status: OK, LOAD FAILED or DUPLICATE.
        error: the reason for a status other than OK.
        code_hash: sha256 of its code (see the module docstring), or None if unreadable.
        info: its metadata, when it loaded.
        trusted: runs in-process (shipped code) rather than in the sandbox.
        location: where its code is, for the sandbox (untrusted strategies).
        strategy_class: the class itself (trusted strategies only).
        params: parameter overrides used when it runs (defaults come from `info.params`).
        limits: the sandbox limits and mode it was discovered with (from `strategies.*`);
            every later run of its code uses them unless the caller gives others.
    """

    name: str
    origin: str
    status: StrategyStatus
    error: str | None
    code_hash: str | None
    info: StrategyInfo | None
    trusted: bool
    location: PluginLocation | None = None
    strategy_class: type[Strategy] | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    limits: SandboxLimits | None = None

    @property
    def ok(self) -> bool:
        return self.status is StrategyStatus.OK

    def with_params(self, **overrides: Any) -> DiscoveredStrategy:
        """Return a copy that runs with these parameter overrides."""
        return replace(self, params={**self.params, **overrides})

    @classmethod
    def from_class(
        cls, strategy_cls: type[Strategy], *, origin: str = "shipped", trusted: bool = True
    ) -> DiscoveredStrategy:
        """Describe a strategy class imported in this process (shipped or test code)."""
        try:
            info = check_metadata(strategy_cls)
        except PluginError as e:
            name = str(getattr(strategy_cls, "name", "") or strategy_cls.__name__)
            return cls(name, origin, StrategyStatus.LOAD_FAILED, str(e), None, None, trusted)
        return cls(
            info.name,
            origin,
            StrategyStatus.OK,
            None,
            class_sha256(strategy_cls),
            info,
            trusted,
            strategy_class=strategy_cls,
        )


def class_sha256(strategy_cls: type) -> str | None:
    """Return the sha256 of the source file that defines `strategy_cls`, if it has one."""
    try:
        path = inspect.getsourcefile(strategy_cls)
        return hashlib.sha256(Path(path).read_bytes()).hexdigest() if path else None
    except (OSError, TypeError):
        return None


def package_sha256(module: str) -> str | None:
    """Return the code hash of the top-level package holding `module`, without importing it."""
    try:
        spec = importlib.util.find_spec(module.split(".")[0])
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        roots = [Path(p) for p in spec.submodule_search_locations]
        files = sorted(
            (p for root in roots for p in root.rglob("*") if p.is_file()),
            key=lambda p: p.as_posix(),
        )
        files = [p for p in files if "__pycache__" not in p.parts]
        base = roots[0].parent
    elif spec.origin and Path(spec.origin).is_file():
        files, base = [Path(spec.origin)], Path(spec.origin).parent
    else:
        return None
    digest = hashlib.sha256()
    for path in files:
        relative = os.path.relpath(path, base).replace(os.sep, "/")
        digest.update(f"{relative}\0{hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
    return digest.hexdigest()


def _strategies_settings(settings: Settings | StrategiesSettings) -> StrategiesSettings:
    return settings.strategies if isinstance(settings, Settings) else settings


def discover_shipped() -> list[DiscoveredStrategy]:
    """Return the strategies shipped with Agora (empty when the package is not installed)."""
    try:
        from strategies import SHIPPED
    except ImportError:
        return []
    return [DiscoveredStrategy.from_class(cls) for cls in SHIPPED]


def _from_inspection(
    inspection: Inspection,
    *,
    origin: str,
    fallback_name: str,
    location: PluginLocation,
    code_hash: str | None,
    limits: SandboxLimits | None,
) -> list[DiscoveredStrategy]:
    found = _inspected_strategies(
        inspection,
        origin=origin,
        fallback_name=fallback_name,
        location=location,
        code_hash=code_hash,
    )
    return [replace(item, limits=limits) for item in found]


def _inspected_strategies(
    inspection: Inspection,
    *,
    origin: str,
    fallback_name: str,
    location: PluginLocation,
    code_hash: str | None,
) -> list[DiscoveredStrategy]:
    failed = StrategyStatus.LOAD_FAILED
    if inspection.error is not None:
        return [
            DiscoveredStrategy(
                fallback_name, origin, failed, inspection.error, code_hash, None, False, location
            )
        ]
    if not inspection.classes:
        reason = "defines no Strategy subclass (a class deriving from agent.plugins.Strategy)"
        return [DiscoveredStrategy(fallback_name, origin, failed, reason, code_hash, None, False)]
    found = []
    for item in inspection.classes:
        here = replace(location, attr=item.attr if location.kind == "file" else location.attr)
        if item.info is None:
            found.append(
                DiscoveredStrategy(item.attr, origin, failed, item.error, code_hash, None, False)
            )
            continue
        found.append(
            DiscoveredStrategy(
                item.info.name, origin, StrategyStatus.OK, None, code_hash, item.info, False, here
            )
        )
    return found


def discover_file(
    path: Path | str, limits: SandboxLimits | None = None
) -> list[DiscoveredStrategy]:
    """Load one plugin file in the sandbox and return the strategies it defines."""
    path = Path(path).resolve()
    location = PluginLocation("file", str(path))
    inspection = inspect_plugin(location, limits)
    return _from_inspection(
        inspection,
        origin=f"file:{path}",
        fallback_name=path.stem,
        location=location,
        code_hash=inspection.source_sha256,
        limits=limits,
    )


def discover_entry_point(
    entry_point: importlib.metadata.EntryPoint, limits: SandboxLimits | None = None
) -> list[DiscoveredStrategy]:
    """Load one `agora.strategies` entry point in the sandbox and return its strategies."""
    dist = entry_point.dist.name if entry_point.dist is not None else "?"
    origin = f"package:{dist}"
    location = PluginLocation("module", entry_point.module, entry_point.attr or None)
    code_hash = package_sha256(entry_point.module)
    inspection = inspect_plugin(location, limits)
    if inspection.error is None and len(inspection.classes) > 1 and location.attr:
        return _from_inspection(
            Inspection((), "the entry point names more than one class", None),
            origin=origin,
            fallback_name=entry_point.name,
            location=location,
            code_hash=code_hash,
            limits=limits,
        )
    return _from_inspection(
        inspection,
        origin=origin,
        fallback_name=entry_point.name,
        location=location,
        code_hash=code_hash,
        limits=limits,
    )


def plugin_files(plugin_dir: Path) -> list[Path]:
    """Return the plugin files of a directory: `*.py`, not `_*.py` or `test_*.py`, sorted."""
    if not plugin_dir.is_dir():
        return []
    return sorted(
        p for p in plugin_dir.glob("*.py") if p.is_file() and not p.name.startswith(("_", "test_"))
    )


MAX_DECLARED_READ_BYTES = 1 << 20
"""Largest plugin file whose declared names `declared_names` parses (larger: its stem only)."""


def declared_names(path: Path) -> set[str]:
    """Return the strategy names a plugin file declares, read without running any of it.

    The names are the string constants assigned to `name` in a class body (`name = "x"`), plus
    the file stem with `_` as `-` and as itself, so a name clash or a registration can be found
    without loading the file in the sandbox. A file that cannot be read or parsed (or is larger
    than 1 MiB) is named by its stem only.
    """
    stem = path.stem
    names = {stem, stem.replace("_", "-")}
    try:
        if path.stat().st_size > MAX_DECLARED_READ_BYTES:
            return names
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (OSError, SyntaxError, ValueError, RecursionError, MemoryError):
        return names
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        for statement in node.body:
            targets: list[ast.expr] = []
            value: ast.expr | None = None
            if isinstance(statement, ast.Assign):
                targets, value = statement.targets, statement.value
            elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
                targets, value = [statement.target], statement.value
            named = any(isinstance(t, ast.Name) and t.id == "name" for t in targets)
            if named and isinstance(value, ast.Constant) and isinstance(value.value, str):
                names.add(value.value)
    return names


def mark_duplicates(found: Iterable[DiscoveredStrategy]) -> list[DiscoveredStrategy]:
    """Mark every OK strategy whose name an earlier OK one already took as DUPLICATE."""
    taken: dict[str, str] = {}
    result = []
    for item in found:
        if item.ok and item.name in taken:
            item = replace(
                item,
                status=StrategyStatus.DUPLICATE,
                error=f"the name {item.name!r} is already taken by {taken[item.name]}",
            )
        elif item.ok:
            taken[item.name] = item.origin
        result.append(item)
    return result


def discover(
    settings: Settings | StrategiesSettings,
    *,
    shipped: bool = True,
    packages: bool = True,
    files: bool = True,
) -> list[DiscoveredStrategy]:
    """Return every strategy Agora can see: shipped, then packages, then plugin files.

    Packages are ordered by distribution then entry point name, files by name. Third-party
    plugins are loaded in sandboxed children, a few at a time. Never raises for a broken plugin.

    Args:
        settings: the configuration (for `strategies.plugin_dir` and the sandbox limits).
        shipped: include the shipped strategies.
        packages: include installed packages' `agora.strategies` entry points.
        files: include the `.py` files of the plugin directory.
    """
    config = _strategies_settings(settings)
    limits = SandboxLimits.from_settings(config)
    entry_points = (
        sorted(
            importlib.metadata.entry_points(group=ENTRY_POINT_GROUP),
            key=lambda ep: ((ep.dist.name if ep.dist else ""), ep.name),
        )
        if packages
        else []
    )
    paths = plugin_files(Path(config.plugin_dir)) if files else []
    workers = max(1, min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="agora-discover") as pool:
        package_jobs = [pool.submit(discover_entry_point, ep, limits) for ep in entry_points]
        file_jobs = [pool.submit(discover_file, path, limits) for path in paths]
        found = discover_shipped() if shipped else []
        for job in (*package_jobs, *file_jobs):
            found.extend(job.result())
    return mark_duplicates(found)


def find(discovered: Iterable[DiscoveredStrategy], name: str) -> DiscoveredStrategy:
    """Return the usable strategy called `name`.

    Raises:
        PluginError: no strategy has that name, or the one that has it is not OK.
    """
    candidates = [d for d in discovered if d.name == name]
    for item in candidates:
        if item.ok:
            return item
    if candidates:
        first = candidates[0]
        raise PluginError(f"strategy {name!r} ({first.origin}) is {first.status}: {first.error}")
    raise PluginError(f"no strategy named {name!r} (see `agora strategies list`)")
