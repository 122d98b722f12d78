"""The contributor's commands as library calls: list, scaffold, validate, submit and retire.

A strategy's on-chain id is keccak256 of its name; the StrategyRegistry holds, per id, the
contributor's payout address and every version's code hash (the sha256 of the plugin file, as
bytes32). `submit` validates a plugin file against the registered strategies (shipped ones,
those recorded in the store and those the chain knows), registers it (a new id, or a new
version of the same name), then installs the exact bytes it hashed into the plugin directory.
Every submission is written to the store's `strategy_registrations` table before the
transaction is sent, so an interrupted submission is finished by submitting the same file again.
The CLI (`agora strategies …`) is a thin layer over these functions; the contract calls and
the store's record are in `agent.plugins.onchain_registry`.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import shutil
import string
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eth_utils import is_checksum_address, to_checksum_address

from agent.config import Settings
from agent.errors import ChainError, PluginError, TransactionReverted, UsageError
from agent.market.schema import format_time_ms
from agent.plugins.discovery import (
    DiscoveredStrategy,
    StrategyStatus,
    declared_names,
    discover,
    discover_file,
    mark_duplicates,
    plugin_files,
)
from agent.plugins.install_plan import (
    SubmissionPlan,
    check_name_free,
    file_sha256,
    install_bytes,
    plan_submission,
)
from agent.plugins.interface import NAME_PATTERN
from agent.plugins.lookahead import Quarantine, read_quarantine
from agent.plugins.onchain_registry import (
    ACTIVE,
    RETIRED,
    STATUS_NAMES,
    RegisteredStrategy,
    RegisteredVersion,
    RegistrationContext,
    insert_row,
    open_session,
    read_entry,
    read_registrations,
    recorded_registry,
    register_version,
    registered_names,
    registered_strategies,
    status_of,
    strategy_id,
    tx_hash_of,
    unfinished_rows,
    update_row,
)
from agent.plugins.sandbox import SandboxLimits
from agent.plugins.validation import Check, ValidationReport, validate
from agent.store import Store

if TYPE_CHECKING:
    from agent.chain.backends import ChainBackend

__all__ = [
    "ACTIVE",
    "EPHEMERAL_HINT",
    "RETIRED",
    "RETIRED_DIR",
    "STATUS_NAMES",
    "ListedStrategy",
    "RegisteredStrategy",
    "RegisteredVersion",
    "Retirement",
    "Scaffold",
    "Submission",
    "check_contributor",
    "comparison_pool",
    "list_strategies",
    "new",
    "read_registrations",
    "registered_strategies",
    "retire",
    "strategy_id",
    "submit",
    "validate_strategy",
]

logger = logging.getLogger(__name__)

RETIRED_DIR = "retired-strategies"
"""Folder of the data directory that retired plugin files are moved to."""
EPHEMERAL_HINT = (
    "this chain does not keep its state between processes: keep registrations with "
    "chain.backend embedded (its own file in data.dir), anvil with chain.anvil_persist, or rpc"
)


@dataclass(frozen=True)
class ListedStrategy:
    """A discovered strategy, with its registration on the configured chain when known.

    Attributes:
        reason: why it is not OK (the import error, the earlier strategy that took its name, or
            the look-ahead that quarantined it), else None.
        quarantine: the store's record of the look-ahead caught (first bad bar, its time and
            series, the check and the values that differed), when QUARANTINED.
    """

    name: str
    origin: str
    status: StrategyStatus
    reason: str | None
    code_hash: str | None
    version: str | None
    author: str | None
    registered: RegisteredStrategy | None
    quarantine: Quarantine | None = None

    @property
    def code_registered(self) -> bool | None:
        """Whether its code is the registered current version (None: not registered)."""
        return None if self.registered is None else self.registered.code_hash == self.code_hash

    @property
    def first_bad_bar(self) -> int | None:
        """The first bar its signal looked ahead at, when quarantined."""
        return None if self.quarantine is None else self.quarantine.first_bar

    def as_dict(self) -> dict[str, Any]:
        registered = None if self.registered is None else self.registered.as_dict()
        return {
            **asdict(self),
            "status": str(self.status),
            "registered": registered,
            "code_registered": self.code_registered,
            "first_bad_bar": self.first_bad_bar,
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
    cannot be read, a warning is logged and no registration shown).
    """
    found = discover(settings)
    entries: dict[str, RegisteredStrategy] = {}
    quarantine = _read_quarantine(settings, store)
    try:
        with open_session(settings, backend, store) as (chain, db):
            registry = recorded_registry(chain, db)
            for item in found:
                entry = None if registry is None else read_entry(registry, item.name)
                if entry is not None:
                    entries[item.name] = entry
    except ChainError as e:
        if backend is not None:
            raise
        logger.warning("on-chain versions not shown: %s", e)
    listed = []
    for item in found:
        caught = quarantine.get(item.code_hash or "") if item.ok and not item.trusted else None
        listed.append(
            ListedStrategy(
                name=item.name,
                origin=item.origin,
                status=StrategyStatus.QUARANTINED if caught else item.status,
                reason=_quarantine_message(caught) if caught else item.error,
                code_hash=item.code_hash,
                version=item.info.version if item.info else None,
                author=item.info.author if item.info else None,
                registered=entries.get(item.name) if item.ok else None,
                quarantine=caught,
            )
        )
    return listed


def _read_quarantine(settings: Settings, store: Store | None) -> dict[str, Quarantine]:
    if store is not None:
        return read_quarantine(store)
    if not Path(settings.data.database_path).exists():
        return {}
    with Store(settings.data.database_path) as db:
        return read_quarantine(db)


def _quarantine_message(caught: Quarantine) -> str:
    at = ""
    if caught.first_bar_ms is not None:
        at = f" ({format_time_ms(caught.first_bar_ms)})"
    where = f" of {caught.series}" if caught.series else ""
    return (
        f"looks ahead: first offending bar {caught.first_bar}{at}{where}, caught by the "
        f"{caught.source} check; its signal is masked and it is not paid"
    )


def new(name: str, directory: Path | str = ".") -> Scaffold:
    """Write a working strategy plugin called `name` and its test, from the templates.

    Raises:
        UsageError: the name is not a valid strategy name, would shadow an importable module,
            one of the two files exists already, or the folder cannot be written.
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
    values = {"name": name, "module": module, "class_name": class_name}
    templates = resources.files("agent.plugins").joinpath("templates")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for path, template in zip(
            paths, ("strategy.py.tmpl", "test_strategy.py.tmpl"), strict=True
        ):
            text = templates.joinpath(template).read_text(encoding="utf-8")
            path.write_text(string.Template(text).substitute(values), encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot write the strategy {name!r} in {folder}: {e.strerror}") from e
    return Scaffold(name, paths[0], paths[1])


# --- validate ---------------------------------------------------------------------------------
def validate_strategy(
    settings: Settings,
    target: DiscoveredStrategy | Path | str,
    *,
    backend: ChainBackend | None = None,
    store: Store | None = None,
) -> ValidationReport:
    """Validate a plugin file or a discovered strategy (by name) against the registered ones.

    The originality check compares it with the shipped strategies and every discovered one
    that is registered: recorded in the store, or (with `backend`) known to its chain, on the
    reference data set and on the store's market. A name taken by a shipped or packaged
    strategy is refused (`load`). Validating a file loads that file only: the other files of
    the plugin directory are read by name and code hash (`comparison_pool`), and only the
    registered ones run, for the originality check.
    """
    with ExitStack() as stack:
        if store is None and Path(settings.data.database_path).exists():
            store = stack.enter_context(Store(settings.data.database_path))
        item = _resolve(target, settings)
        if isinstance(item, ValidationReport):
            return item
        if isinstance(item, Path) or not item.ok:  # `validate` says why it cannot run
            return validate(item, settings, store=store)
        try:
            registered = comparison_pool(settings, item, backend=backend, store=store)
        except PluginError as e:
            check = Check("load", False, str(e))
            return ValidationReport(item.name, item.origin, item.code_hash, (check,))
        return validate(item, settings, registered=registered, store=store)


def comparison_pool(
    settings: Settings,
    item: DiscoveredStrategy,
    *,
    backend: ChainBackend | None = None,
    store: Store | None = None,
) -> list[DiscoveredStrategy]:
    """Return the strategies `item` must not copy: the shipped ones and the registered ones.

    Shipped and packaged strategies are discovered as usual. A plugin-directory file is loaded
    (in the sandbox) only when it is registered: installed by a recorded submission, or
    declaring (`declared_names`, read without running it) a name that the store records or,
    with `backend`, the chain knows. `item`'s own file and its earlier versions are not loaded.

    Raises:
        PluginError: `item`'s name is taken by a shipped or packaged strategy.
    """
    found = discover(settings, files=False)
    check_name_free(item, found)
    rows = read_registrations(store) if store is not None else []
    names = registered_names(store) if store is not None else set()
    installed = {
        Path(row["installed_path"]).resolve()
        for row in rows
        if row.get("installed_path") and not str(row["installed_path"]).startswith("package:")
    }
    own = Path(item.origin.removeprefix("file:")).resolve() if item.origin[:5] == "file:" else None
    declared = {
        path: declared_names(path)
        for path in plugin_files(Path(settings.strategies.plugin_dir))
        if path.resolve() != own and file_sha256(path) != item.code_hash
    }
    if backend is not None and store is not None:
        registry = recorded_registry(backend, store)
        if registry is not None:
            candidates = {d.name for d in found if d.ok}.union(*declared.values())
            names |= {name for name in candidates - names if status_of(registry, name)}
    to_load = [
        path
        for path, declares in declared.items()
        if path.resolve() in installed or (declares & names) - {item.name}
    ]
    limits = _limits(settings)
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="agora-registered") as pool:
        for loaded in pool.map(lambda path: discover_file(path, limits), to_load):
            found.extend(loaded)
    return _registered_pool(mark_duplicates(found), names)


def _resolve(
    target: DiscoveredStrategy | Path | str, settings: Settings
) -> DiscoveredStrategy | Path | ValidationReport:
    """Return the strategy `target` names, loading as little third-party code as it can."""
    if isinstance(target, DiscoveredStrategy):
        return target
    path = Path(target)
    if path.suffix == ".py" or path.is_file():
        if not path.is_file():
            return _load_failure(str(target), f"no such plugin file: {path}")
        items = discover_file(path, _limits(settings))
        return items[0] if len(items) == 1 else path  # validate() explains several classes
    name = str(target)
    found = discover(settings, files=False)
    if not any(d.ok and d.name == name for d in found):
        files = plugin_files(Path(settings.strategies.plugin_dir))
        likely = [p for p in files if name in declared_names(p)]
        found += [d for p in likely for d in discover_file(p, _limits(settings))]
        if not any(d.ok and d.name == name for d in found):  # a name set at run time
            found += [
                d for p in files if p not in likely for d in discover_file(p, _limits(settings))
            ]
    named = [d for d in mark_duplicates(found) if d.name == name]
    for item in named:
        if item.ok:
            return item
    if named:
        first = named[0]
        return _load_failure(first.name, f"{first.status} ({first.origin}): {first.error}")
    return _load_failure(name, f"no strategy named {name!r} (see `agora strategies list`)")


def _limits(settings: Settings) -> SandboxLimits:
    return SandboxLimits.from_settings(settings.strategies)


def _load_failure(name: str, message: str) -> ValidationReport:
    return ValidationReport(name, "?", None, (Check("load", False, message),))


def _registered_pool(
    found: Sequence[DiscoveredStrategy], names: set[str]
) -> list[DiscoveredStrategy]:
    """Return the strategies a new one must not copy: the shipped ones and the registered ones.

    `validate` leaves out the target's own earlier version and names a shipped or packaged
    strategy that shares its name with its origin.
    """
    return [d for d in found if d.ok and (d.origin == "shipped" or d.name in names)]


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
    with open_session(settings, backend, store) as (chain, db):
        from agent.chain.deploy import deploy_all

        deployment = deploy_all(chain, db, settings)
        registry = deployment.contract(chain.w3, "strategy_registry")
        found = discover(settings)
        plan = plan_submission(settings, target, found)
        item, name, code_hash = plan.item, plan.item.name, plan.code_hash
        context = RegistrationContext(
            chain, db, deployment.chain_key, registry, name, code_hash, payout
        )
        current = read_entry(registry, name)
        if current is not None:
            _check_update_allowed(current, payout, deployment.chain_key)
            if current.code_hash == code_hash:
                return _resume(context, current, plan)
        names = registered_names(db) | {
            d.name for d in found if d.ok and status_of(registry, d.name)
        }
        registered = _registered_pool(found, names)
        report = validate(item, settings, registered=registered, store=db)
        if not report.passed:
            lines = [f"  {check.name}: {check.message}" for check in report.failures]
            raise PluginError(
                f"strategy {name!r} was not submitted: {len(lines)} validation check(s) "
                "failed\n" + "\n".join(lines)
            )
        tx_hash, version = register_version(context)
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


def _finish(
    context: RegistrationContext, plan: SubmissionPlan, *, version: int, tx_hash: str | None
) -> None:
    """Install a file's bytes and record the submission as installed."""
    rows = unfinished_rows(context.store, context.chain_key, context.name, context.code_hash)
    row = rows[-1]["id"] if rows else insert_row(context, "registered")
    tx_hash = tx_hash or (rows[-1]["tx_hash"] if rows else None)
    if plan.blob is not None and plan.install_path is not None:
        install_bytes(plan.blob, plan.install_path)
    where = str(plan.install_path) if plan.install_path is not None else plan.item.origin
    update_row(
        context.store,
        row,
        status="installed",
        version=version,
        tx_hash=tx_hash,
        installed_path=where,
        error=None,
    )


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


def _resume(
    context: RegistrationContext, current: RegisteredStrategy, plan: SubmissionPlan
) -> Submission:
    """Finish an interrupted submission of the registered code, or say it is registered."""
    path = plan.install_path
    if path is None or (path.is_file() and file_sha256(path) == context.code_hash):
        raise PluginError(
            f"strategy {context.name!r} is already registered as version {current.version} "
            f"with this code (code hash {context.code_hash[:12]}…) on {context.chain_key}"
            + (", and installed" if path is not None else "")
            + ": change the code to submit a new version"
        )
    rows = unfinished_rows(context.store, context.chain_key, context.name, context.code_hash)
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
    with open_session(settings, backend, store) as (chain, db):
        from agent.chain.deploy import deploy_all

        deployment = deploy_all(chain, db, settings)
        registry = deployment.contract(chain.w3, "strategy_registry")
        current = read_entry(registry, name)
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
            tx_hash = tx_hash_of(receipt)
        moved_from = installed[0] if installed else None
        moved_to = None
        folder = Path(settings.data.dir) / RETIRED_DIR
        for path in installed:
            folder.mkdir(parents=True, exist_ok=True)
            moved_to = folder / f"{path.stem}-v{current.version}-{int(time.time())}.py"
            shutil.move(path, moved_to)
        context = RegistrationContext(
            chain, db, deployment.chain_key, registry, name, current.code_hash, current.payout
        )
        row = insert_row(context, "retired")
        where = None if moved_to is None else str(moved_to)
        update_row(db, row, version=current.version, tx_hash=tx_hash, installed_path=where)
    sid = "0x" + strategy_id(name).hex()
    return Retirement(
        name, sid, current.version, tx_hash, deployment.chain_key, moved_from, moved_to
    )
