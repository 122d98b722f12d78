"""The contributor's commands as library calls: list, scaffold, validate, submit and retire.

A strategy's on-chain id is keccak256 of its name; the StrategyRegistry holds, per id, the
contributor's payout address and every version's code hash (the sha256 of the plugin file, as
bytes32). `submit` validates a plugin file against the registered strategies (shipped ones,
those recorded in the store and those the chain knows), registers it (a new id, or a new
version of the same name), then installs the exact bytes it hashed into the plugin directory.
Every submission is written to the store's `strategy_registrations` table before the
transaction is sent, so an interrupted submission is finished by submitting the same file again.
The CLI (`agora strategies …`) is a thin layer over these functions.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import re
import shutil
import string
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from eth_utils import is_checksum_address, keccak, to_checksum_address

from agent.config import Settings
from agent.errors import ChainError, PluginError, TransactionReverted, UsageError
from agent.plugins.discovery import (
    DiscoveredStrategy,
    StrategyStatus,
    discover,
    discover_file,
    find,
)
from agent.plugins.interface import NAME_PATTERN
from agent.plugins.sandbox import SandboxLimits
from agent.plugins.validation import Check, ValidationReport, reference_signals, validate
from agent.store import Store

if TYPE_CHECKING:
    from web3.contract import Contract

    from agent.chain.backends import ChainBackend

logger = logging.getLogger(__name__)

ACTIVE, RETIRED = 1, 2
"""`StrategyRegistry.Status` values (0 is Unregistered)."""
STATUS_NAMES = {ACTIVE: "active", RETIRED: "retired"}
RETIRED_DIR = "retired-strategies"
"""Folder of the data directory that retired plugin files are moved to."""
_LIVE_ROWS = ("registered", "installed")
EPHEMERAL_HINT = (
    "this chain starts empty in every process: keep registrations with chain.backend anvil "
    "(chain.anvil_persist) or rpc"
)


@dataclass(frozen=True)
class RegisteredVersion:
    """One version of a strategy in the StrategyRegistry."""

    version: int
    code_hash: str
    registered_at: int
    """Block timestamp, in seconds since the epoch."""


@dataclass(frozen=True)
class RegisteredStrategy:
    """A strategy as the StrategyRegistry holds it.

    Attributes:
        strategy_id: keccak256 of the name, 0x-prefixed hex.
        name: the name, when known here (the chain stores only its hash).
        payout: the contributor's checksum payout address.
        status: "active" or "retired".
        versions: every version, oldest first; the last is the current one.
    """

    strategy_id: str
    name: str | None
    payout: str
    status: str
    versions: tuple[RegisteredVersion, ...]

    @property
    def version(self) -> int:
        return self.versions[-1].version

    @property
    def code_hash(self) -> str:
        return self.versions[-1].code_hash

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "version": self.version, "code_hash": self.code_hash}


@dataclass(frozen=True)
class ListedStrategy:
    """A discovered strategy, with its registration on the configured chain when known."""

    name: str
    origin: str
    status: StrategyStatus
    error: str | None
    code_hash: str | None
    version: str | None
    author: str | None
    registered: RegisteredStrategy | None

    @property
    def code_registered(self) -> bool | None:
        """Whether its code is the registered current version (None: not registered)."""
        return None if self.registered is None else self.registered.code_hash == self.code_hash

    def as_dict(self) -> dict[str, Any]:
        registered = None if self.registered is None else self.registered.as_dict()
        return {
            **asdict(self),
            "status": str(self.status),
            "registered": registered,
            "code_registered": self.code_registered,
        }


@dataclass(frozen=True)
class Scaffold:
    """The files `new` wrote."""

    name: str
    strategy_path: Path
    test_path: Path


@dataclass(frozen=True)
class Submission:
    """A registered and installed strategy version.

    Attributes:
        origin: "file:<path>" or "package:<distribution>", as discovered.
        installed_path: the file in the plugin directory (None for an installed package).
        resumed: True when an earlier, interrupted submission of the same code was finished
            (it was already registered; only the installation and the record were missing).
        report: the validation report (None when resumed: it was validated when registered).
    """

    name: str
    strategy_id: str
    version: int
    code_hash: str
    payout: str
    tx_hash: str | None
    chain_key: str
    registry: str
    origin: str
    installed_path: Path | None
    report: ValidationReport | None
    resumed: bool = False

    def as_dict(self) -> dict[str, Any]:
        checks = [] if self.report is None else [asdict(c) for c in self.report.checks]
        data = {k: v for k, v in vars(self).items() if k != "report"}
        path = None if self.installed_path is None else str(self.installed_path)
        return {**data, "installed_path": path, "checks": checks}


@dataclass(frozen=True)
class Retirement:
    """A retired strategy, and where its installed file went."""

    name: str
    strategy_id: str
    version: int
    tx_hash: str | None
    chain_key: str
    moved_from: Path | None
    moved_to: Path | None

    def as_dict(self) -> dict[str, Any]:
        paths = {
            k: None if v is None else str(v) for k, v in vars(self).items() if k[:6] == "moved_"
        }
        return {**vars(self), **paths}


def strategy_id(name: str) -> bytes:
    """Return a strategy's id in the StrategyRegistry: keccak256 of its name."""
    return bytes(keccak(text=name))


def check_contributor(address: str) -> str:
    """Return the contributor's checksum address.

    Raises:
        UsageError: not a 20-byte 0x address (a mixed-case one must carry a valid checksum),
            or the zero address.
    """
    if not isinstance(address, str) or not re.fullmatch(r"0x[0-9a-fA-F]{40}", address):
        raise UsageError(
            f"contributor address {address!r} is not an address: expected 0x followed by 40 hex "
            "digits"
        )
    digits = address[2:]
    if digits not in (digits.lower(), digits.upper()) and not is_checksum_address(address):
        raise UsageError(
            f"contributor address {address!r} mixes upper and lower case but its EIP-55 "
            f"checksum is wrong (a typo?); the checksummed form is {to_checksum_address(address)}"
        )
    if int(address, 16) == 0:
        raise UsageError("contributor address is the zero address: rewards would be burnt")
    return str(to_checksum_address(address))


# --- list and scaffold ----------------------------------------------------------------------
def list_strategies(
    settings: Settings, *, backend: ChainBackend | None = None, store: Store | None = None
) -> list[ListedStrategy]:
    """Return every discovered strategy with its status, origin, code hash and registration.

    The registration is read from the chain when Agora's contracts are recorded for it in the
    store; nothing is deployed. Without `backend`, the configured chain is opened (if it
    cannot be read, a warning is logged and no registration shown), except the embedded one:
    it starts empty in every process, so it can hold no registration.
    """
    found = discover(settings)
    entries: dict[str, RegisteredStrategy] = {}
    if backend is not None or settings.chain.backend != "embedded":
        try:
            with _session(settings, backend, store) as (chain, db):
                registry = _recorded_registry(chain, db)
                for item in found:
                    entry = None if registry is None else _read_entry(registry, item.name)
                    if entry is not None:
                        entries[item.name] = entry
        except ChainError as e:
            if backend is not None:
                raise
            logger.warning("on-chain versions not shown: %s", e)
    return [
        ListedStrategy(
            name=item.name,
            origin=item.origin,
            status=item.status,
            error=item.error,
            code_hash=item.code_hash,
            version=item.info.version if item.info else None,
            author=item.info.author if item.info else None,
            registered=entries.get(item.name) if item.ok else None,
        )
        for item in found
    ]


def new(name: str, directory: Path | str = ".") -> Scaffold:
    """Write a working strategy plugin called `name` and its test, from the templates.

    Raises:
        UsageError: the name is not a valid strategy name, would shadow an importable module,
            or one of the two files exists already.
    """
    if not NAME_PATTERN.match(name):
        raise UsageError(
            f"strategy name {name!r}: use 2-48 characters of lower-case letters, digits, '-' or "
            "'_', starting with a letter"
        )
    module = name.replace("-", "_")
    if importlib.util.find_spec(module) is not None:
        raise UsageError(f"strategy name {name!r}: its file {module}.py would shadow the module")
    class_name = "".join(part.capitalize() for part in re.split(r"[-_]", name) if part)
    if class_name == "Strategy":
        class_name = "MyStrategy"
    folder = Path(directory)
    paths = (folder / f"{module}.py", folder / f"test_{module}.py")
    existing = [str(p) for p in paths if p.exists()]
    if existing:
        raise UsageError(f"refusing to overwrite {' and '.join(existing)}")
    folder.mkdir(parents=True, exist_ok=True)
    values = {"name": name, "module": module, "class_name": class_name}
    templates = resources.files("agent.plugins").joinpath("templates")
    for path, template in zip(paths, ("strategy.py.tmpl", "test_strategy.py.tmpl"), strict=True):
        text = templates.joinpath(template).read_text(encoding="utf-8")
        path.write_text(string.Template(text).substitute(values), encoding="utf-8")
    return Scaffold(name, paths[0], paths[1])


# --- validate -------------------------------------------------------------------------------
def validate_strategy(
    settings: Settings,
    target: DiscoveredStrategy | Path | str,
    *,
    backend: ChainBackend | None = None,
    store: Store | None = None,
) -> ValidationReport:
    """Validate a plugin file or a discovered strategy (by name) against the registered ones.

    The originality check compares it with the shipped strategies and every discovered one
    that is registered: recorded in the store, or (with `backend`) known to its chain. A
    shipped or packaged strategy with the same name counts as another strategy, not as an
    earlier version.
    """
    found = discover(settings)
    item = _resolve(target, settings, found)
    if isinstance(item, ValidationReport):
        return item
    with ExitStack() as stack:
        if store is None and Path(settings.data.database_path).exists():
            store = stack.enter_context(Store(settings.data.database_path))
        names = _store_names(store) if store is not None else set()
        if backend is not None and store is not None:
            registry = _recorded_registry(backend, store)
            if registry is not None:
                names |= {d.name for d in found if d.ok and _status(registry, d.name)}
    return validate(item, settings, registered=_registered_signals(settings, found, names, item))


def _resolve(
    target: DiscoveredStrategy | Path | str, settings: Settings, found: Sequence[DiscoveredStrategy]
) -> DiscoveredStrategy | Path | ValidationReport:
    if isinstance(target, DiscoveredStrategy):
        return target
    path = Path(target)
    if path.suffix == ".py" or path.is_file():
        if not path.is_file():
            return _load_failure(str(target), f"no such plugin file: {path}")
        items = discover_file(path, _limits(settings))
        return items[0] if len(items) == 1 else path  # validate() explains several classes
    named = [d for d in found if d.name == str(target)]
    for item in named:
        if item.ok:
            return item
    if named:
        first = named[0]
        return _load_failure(first.name, f"{first.status} ({first.origin}): {first.error}")
    return _load_failure(str(target), f"no strategy named {target!r} (see `agora strategies list`)")


def _limits(settings: Settings) -> SandboxLimits:
    return SandboxLimits.from_settings(settings.strategies)


def _load_failure(name: str, message: str) -> ValidationReport:
    return ValidationReport(name, "?", None, (Check("load", False, message),))


def _registered_signals(
    settings: Settings,
    found: Sequence[DiscoveredStrategy],
    names: set[str],
    target: DiscoveredStrategy | Path,
) -> dict[str, np.ndarray]:
    """Return the reference signals the target must not copy, keyed by what to call them."""
    pool = [d for d in found if d.ok and (d.origin == "shipped" or d.name in names)]
    if isinstance(target, DiscoveredStrategy):
        pool = [d for d in pool if d.origin != target.origin or d.name != target.name]
    signals = reference_signals(pool, settings) if pool else {}
    if not isinstance(target, DiscoveredStrategy):
        return signals
    keyed = {}
    for item in pool:
        if item.name not in signals:
            continue
        other = item.origin == "shipped" or item.origin.startswith("package:")
        same_name_elsewhere = item.name == target.name and other
        key = f"{item.name} ({item.origin})" if same_name_elsewhere else item.name
        keyed[key] = signals[item.name]
    return keyed


# --- submit ---------------------------------------------------------------------------------
def submit(
    settings: Settings,
    target: DiscoveredStrategy | Path | str,
    contributor: str,
    *,
    backend: ChainBackend | None = None,
    store: Store | None = None,
) -> Submission:
    """Validate a strategy, register it on-chain for `contributor` and install it.

    `target` is a plugin file (installed into the plugin directory, exactly the bytes that
    were hashed), or the name of a discovered strategy from a plugin file or an installed
    package (registered with the package's code hash; pip installed it already). A new name
    is registered as version 1; changed code under a registered name becomes the next version
    (same contributor only). Nothing is registered unless every check passes and the file can
    be installed.

    Raises:
        UsageError: a bad contributor address, or no such `.py` file.
        PluginError: a failed check (each listed), a name taken by another strategy, a
            retired name, another contributor's name, a plugin directory file in the way, or
            code already registered ("already registered as version N").
        ChainError: the chain failed.
    """
    payout = check_contributor(contributor)
    path = None if isinstance(target, DiscoveredStrategy) else Path(target)
    if path is not None and path.suffix == ".py" and not path.is_file():
        raise UsageError(f"{path}: no such plugin file")
    with _session(settings, backend, store) as (chain, db):
        from agent.chain.deploy import deploy_all

        deployment = deploy_all(chain, db, settings)
        registry = deployment.contract(chain.w3, "strategy_registry")
        found = discover(settings)
        plan = _plan(settings, target, found)
        item, name, code_hash = plan.item, plan.item.name, plan.code_hash
        context = _Context(chain, db, deployment.chain_key, registry, name, code_hash, payout)
        current = _read_entry(registry, name)
        if current is not None:
            _check_update_allowed(current, payout, deployment.chain_key)
            if current.code_hash == code_hash:
                return _resume(context, current, plan)
        names = _store_names(db) | {d.name for d in found if d.ok and _status(registry, d.name)}
        registered = _registered_signals(settings, found, names, item)
        report = validate(item, settings, registered=registered)
        if not report.passed:
            lines = [f"  {check.name}: {check.message}" for check in report.failures]
            raise PluginError(
                f"strategy {name!r} was not submitted: {len(lines)} validation check(s) "
                "failed\n" + "\n".join(lines)
            )
        tx_hash, version = _register(context)
        _finish(context, plan, version=version, tx_hash=tx_hash)
    return Submission(
        name=name,
        strategy_id="0x" + strategy_id(name).hex(),
        version=version,
        code_hash=code_hash,
        payout=payout,
        tx_hash=tx_hash,
        chain_key=deployment.chain_key,
        registry=registry.address,
        origin=item.origin,
        installed_path=plan.install_path,
        report=report,
    )


@dataclass(frozen=True)
class _Context:
    chain: ChainBackend
    store: Store
    chain_key: str
    registry: Contract
    name: str
    code_hash: str
    payout: str


@dataclass(frozen=True)
class _Plan:
    """What to submit: the strategy, its code hash, and the bytes to install where (files)."""

    item: DiscoveredStrategy
    code_hash: str
    blob: bytes | None = None
    install_path: Path | None = None


def _plan(
    settings: Settings, target: DiscoveredStrategy | Path | str, found: list[DiscoveredStrategy]
) -> _Plan:
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
    _check_name_free(target, found)
    return _Plan(target, target.code_hash)


def _file_plan(settings: Settings, source: Path, found: list[DiscoveredStrategy]) -> _Plan:
    source = source.resolve()
    blob = source.read_bytes()
    code_hash = hashlib.sha256(blob).hexdigest()
    items = discover_file(source, _limits(settings))
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
    _check_name_free(item, found)
    return _Plan(item, code_hash, blob, _install_target(settings, source, item.name, found))


def _register(context: _Context) -> tuple[str, int]:
    """Send the registration, recorded first as pending; return its tx hash and version."""
    sid, code_hash = strategy_id(context.name), bytes.fromhex(context.code_hash)
    registry = context.registry
    holder = bytes(_call(registry.functions.strategyOfCodeHash(code_hash)))
    if holder not in (bytes(32), sid):
        raise PluginError(
            f"this exact code is registered as another strategy (id 0x{holder.hex()})"
        )
    row = _insert_row(context, "pending")
    try:
        receipt = context.chain.transact(
            registry.functions.register(sid, context.payout, code_hash)
        )
    except ChainError as e:
        _update_row(context.store, row, status="failed", error=str(e))
        reason = e.reason if isinstance(e, TransactionReverted) else None
        raise PluginError(f"registering {context.name!r} failed: {reason or e}") from e
    tx_hash, version = _tx_hash(receipt), _version_added(registry, receipt)
    _update_row(context.store, row, status="registered", version=version, tx_hash=tx_hash)
    return tx_hash, version


def _finish(context: _Context, plan: _Plan, *, version: int, tx_hash: str | None) -> None:
    """Install a file's bytes and record the submission as installed."""
    rows = _rows(context.store, context.chain_key, context.name, context.code_hash)
    row = rows[-1]["id"] if rows else _insert_row(context, "registered")
    tx_hash = tx_hash or (rows[-1]["tx_hash"] if rows else None)
    if plan.blob is not None and plan.install_path is not None:
        _install(plan.blob, plan.install_path)
    where = str(plan.install_path) if plan.install_path is not None else plan.item.origin
    _update_row(
        context.store,
        row,
        status="installed",
        version=version,
        tx_hash=tx_hash,
        installed_path=where,
        error=None,
    )


def _check_name_free(item: DiscoveredStrategy, found: Iterable[DiscoveredStrategy]) -> None:
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


def _check_update_allowed(current: RegisteredStrategy, payout: str, chain_key: str) -> None:
    if current.status == "retired":
        raise PluginError(
            f"strategy {current.name!r} was retired on {chain_key} (at version "
            f"{current.version}); a retired name can never be registered again"
        )
    if current.payout != payout:
        raise PluginError(
            f"strategy {current.name!r} is registered to {current.payout}, not {payout}: only "
            "its contributor may submit new versions"
        )


def _resume(context: _Context, current: RegisteredStrategy, plan: _Plan) -> Submission:
    """Finish an interrupted submission of the registered code, or say it is registered."""
    path = plan.install_path
    if path is None or (path.is_file() and _sha256(path) == context.code_hash):
        raise PluginError(
            f"strategy {context.name!r} is already registered as version {current.version} "
            f"with this code (code hash {context.code_hash[:12]}…) on {context.chain_key}"
            + (", and installed" if path is not None else "")
            + ": change the code to submit a new version"
        )
    rows = _rows(context.store, context.chain_key, context.name, context.code_hash)
    _finish(context, plan, version=current.version, tx_hash=None)
    return Submission(
        name=context.name,
        strategy_id=current.strategy_id,
        version=current.version,
        code_hash=context.code_hash,
        payout=current.payout,
        tx_hash=rows[-1]["tx_hash"] if rows else None,
        chain_key=context.chain_key,
        registry=context.registry.address,
        origin=plan.item.origin,
        installed_path=path,
        report=None,
        resumed=True,
    )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _install(blob: bytes, target: Path) -> None:
    """Write the exact bytes that were hashed, atomically (a reader sees old or new, whole)."""
    if target.is_file() and target.read_bytes() == blob:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"_{target.name}.{os.getpid()}.partial")
    partial.write_bytes(blob)
    os.replace(partial, target)


# --- retire ---------------------------------------------------------------------------------
def retire(
    settings: Settings,
    name: str,
    *,
    backend: ChainBackend | None = None,
    store: Store | None = None,
) -> Retirement:
    """Retire a registered strategy for good and move its installed file out of the plugins.

    The file goes to `<data dir>/retired-strategies/`, so the agent stops using it; the chain
    keeps its history. A name that was retired but whose file is still installed is finished.

    Raises:
        PluginError: the strategy is not registered, or is retired and not installed.
    """
    with _session(settings, backend, store) as (chain, db):
        from agent.chain.deploy import deploy_all

        deployment = deploy_all(chain, db, settings)
        registry = deployment.contract(chain.w3, "strategy_registry")
        current = _read_entry(registry, name)
        if current is None:
            raise PluginError(
                f"strategy {name!r} is not registered on {deployment.chain_key}"
                + ("" if chain.persistent else f" ({EPHEMERAL_HINT})")
            )
        installed = [
            Path(d.origin.removeprefix("file:"))
            for d in discover(settings, shipped=False, packages=False)
            if d.name == name and d.info is not None
        ]
        tx_hash = None
        if current.status == "retired" and not installed:
            raise PluginError(f"strategy {name!r} is already retired on {deployment.chain_key}")
        if current.status != "retired":
            try:
                receipt = chain.transact(registry.functions.retire(strategy_id(name)))
            except TransactionReverted as e:
                raise PluginError(f"retiring {name!r} failed: {e.reason or e}") from e
            tx_hash = _tx_hash(receipt)
        moved_from = installed[0] if installed else None
        moved_to = None
        folder = Path(settings.data.dir) / RETIRED_DIR
        for path in installed:
            folder.mkdir(parents=True, exist_ok=True)
            moved_to = folder / f"{path.stem}-v{current.version}-{int(time.time())}.py"
            shutil.move(path, moved_to)
        context = _Context(
            chain, db, deployment.chain_key, registry, name, current.code_hash, current.payout
        )
        row = _insert_row(context, "retired")
        where = None if moved_to is None else str(moved_to)
        _update_row(db, row, version=current.version, tx_hash=tx_hash, installed_path=where)
    sid = "0x" + strategy_id(name).hex()
    return Retirement(
        name, sid, current.version, tx_hash, deployment.chain_key, moved_from, moved_to
    )


# --- reading the chain ----------------------------------------------------------------------
def registered_strategies(
    settings: Settings,
    *,
    backend: ChainBackend | None = None,
    store: Store | None = None,
    names: Iterable[str] = (),
) -> list[RegisteredStrategy]:
    """Return every strategy in the StrategyRegistry, in registration order.

    Names are recovered from their ids for `names`, the store's records and the shipped
    strategies; others have `name=None`. Nothing is deployed: a chain without recorded
    contracts (the embedded one opened here, for instance) has none.
    """
    if backend is None and settings.chain.backend == "embedded":
        return []
    with _session(settings, backend, store) as (chain, db):
        registry = _recorded_registry(chain, db)
        if registry is None:
            return []
        from strategies import SHIPPED

        known = {*names, *_store_names(db, statuses=None), *(cls.name for cls in SHIPPED)}
        by_id = {strategy_id(n): n for n in known}
        count = int(_call(registry.functions.strategyCount()))
        entries = []
        for index in range(count):
            sid = bytes(_call(registry.functions.strategyIdAt(index)))
            entry = _read_id(registry, sid, by_id.get(sid))
            if entry is not None:
                entries.append(entry)
    return entries


def _read_entry(registry: Contract, name: str) -> RegisteredStrategy | None:
    return _read_id(registry, strategy_id(name), name)


def _read_id(registry: Contract, sid: bytes, name: str | None) -> RegisteredStrategy | None:
    functions = registry.functions
    status = int(_call(functions.statusOf(sid)))
    if status not in STATUS_NAMES:
        return None
    payout = _call(functions.get(sid))[0]
    count = int(_call(functions.versionCount(sid)))
    versions = []
    for index in range(count):
        code_hash, version, registered_at = _call(functions.versionAt(sid, index))
        versions.append(RegisteredVersion(int(version), bytes(code_hash).hex(), int(registered_at)))
    return RegisteredStrategy(
        strategy_id="0x" + sid.hex(),
        name=name,
        payout=str(to_checksum_address(payout)),
        status=STATUS_NAMES[status],
        versions=tuple(versions),
    )


def _status(registry: Contract, name: str) -> int:
    return int(_call(registry.functions.statusOf(strategy_id(name))))


def _call(function: Any) -> Any:
    from web3.exceptions import Web3Exception

    try:
        return function.call()
    except (OSError, Web3Exception, ValueError) as e:
        label = getattr(function, "fn_name", "a registry view")
        raise ChainError(f"cannot read {label} from the StrategyRegistry: {e}") from e


def _recorded_registry(chain: ChainBackend, store: Store) -> Contract | None:
    """Return the StrategyRegistry recorded for this chain (code checked), or None."""
    from agent.chain.contracts import load_artifact
    from agent.chain.deploy import chain_key, check_code

    key = chain_key(chain)
    record = store.read_deployments(key).get("strategy_registry")
    if record is None:
        return None
    check_code(chain, key, "strategy_registry", record.address, record.code_hash)
    abi = load_artifact("StrategyRegistry").abi
    return chain.w3.eth.contract(address=to_checksum_address(record.address), abi=abi)


def _version_added(registry: Contract, receipt: Any) -> int:
    from web3.logs import DISCARD

    events = registry.events.StrategyVersionAdded().process_receipt(receipt, errors=DISCARD)
    if len(events) != 1:
        raise ChainError(f"the registration emitted {len(events)} StrategyVersionAdded events")
    return int(events[0]["args"]["version"])


def _tx_hash(receipt: Any) -> str:
    return "0x" + bytes(receipt["transactionHash"]).hex()


@contextmanager
def _session(
    settings: Settings, backend: ChainBackend | None, store: Store | None
) -> Iterator[tuple[ChainBackend, Store]]:
    """Yield the chain and the store, opening (and afterwards closing) those not given."""
    with ExitStack() as stack:
        if store is None:
            store = stack.enter_context(Store(settings.data.database_path))
        if backend is None:
            from agent.chain.backends import connect

            backend = stack.enter_context(connect(settings.chain, settings.data.dir))
        yield backend, store


# --- the store's record ---------------------------------------------------------------------
def read_registrations(
    store: Store, *, name: str | None = None, chain_key: str | None = None
) -> list[dict[str, Any]]:
    """Return the recorded submissions and retirements, oldest first, optionally filtered."""
    sql, params = "SELECT * FROM strategy_registrations WHERE 1 = 1", []
    for column, value in (("name", name), ("chain_key", chain_key)):
        if value is not None:
            sql += f" AND {column} = ?"
            params.append(value)
    cursor = store.db.execute(sql + " ORDER BY id", params)
    columns = [c[0] for c in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def _rows(store: Store, chain_key: str, name: str, code_hash: str) -> list[dict[str, Any]]:
    return [
        r
        for r in read_registrations(store, name=name, chain_key=chain_key)
        if r["code_hash"] == code_hash and r["status"] in ("pending", "registered")
    ]


def _store_names(store: Store, statuses: Sequence[str] | None = _LIVE_ROWS) -> set[str]:
    rows = read_registrations(store)
    return {r["name"] for r in rows if statuses is None or r["status"] in statuses}


def _insert_row(context: _Context, status: str) -> int:
    now = int(time.time() * 1000)
    with context.store.transaction() as conn:
        cursor = conn.execute(
            "INSERT INTO strategy_registrations (chain_key, name, strategy_id, code_hash, payout, "
            "status, created_ms, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                context.chain_key,
                context.name,
                "0x" + strategy_id(context.name).hex(),
                context.code_hash,
                context.payout,
                status,
                now,
                now,
            ],
        )
    return int(cursor.lastrowid or 0)


def _update_row(store: Store, row: int, **values: Any) -> None:
    allowed = {"status", "version", "tx_hash", "installed_path", "error"}
    assert set(values) <= allowed, set(values) - allowed
    assignments = ", ".join(f"{column} = ?" for column in values)
    with store.transaction() as conn:
        conn.execute(
            f"UPDATE strategy_registrations SET {assignments}, updated_ms = ? WHERE id = ?",
            [*values.values(), int(time.time() * 1000), row],
        )
