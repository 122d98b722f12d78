"""The model registry: trained models in the store, identified by the hash of their file.

Model id. A model's id is the sha256 of its saved file's bytes. SB3's `save` is not byte-stable
(zip entry times are the wall clock; episode statistics and the start time hold timings; the
readable descriptions of classes in its `data` entry hold memory addresses), so `model_bytes`
saves without those volatile attributes (`ep_info_buffer`, `ep_success_buffer`, `start_time`:
SB3 resets them when learning resumes), strips the addresses (` at 0x…>`), and rewrites the
archive with every entry dated 1980-01-01 in SB3's entry order, plus an `agora.json` entry
describing what the policy observes (algorithm, action kind, exposure levels, look-back,
strategies). Everything else in the file (weights, optimiser state, hyper-parameters, library
versions) is deterministic, so training twice with the same seed, data and configuration on one
machine gives the same id, in the same process or another (a test checks both).

Promotion gate. One model is live at a time. `promote` runs the candidate, staying flat,
buy-and-hold and the live model (if any) deterministically over the validation window of the
current data through the one rollout (each model observing its own spec, all with the same
costs and starting value) and makes the candidate live only if it beats every one of them by
`agent.selection_margin` standard errors of the paired per-bar difference of net log returns.
So no model that loses to holding cash ever goes live, even when none is live yet. `force`
skips the gate (for a deliberate rollback) and is recorded as such. Every attempt is kept in
`model_promotions`.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import time
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from agent.config import Settings
from agent.errors import ModelError, UsageError
from agent.market.schema import SeriesKey
from agent.store import Store

ModelStatus = Literal["candidate", "live", "retired"]
MODEL_SUFFIX = ".zip"
METADATA_ENTRY = "agora.json"
VOLATILE_ATTRIBUTES = ("ep_info_buffer", "ep_success_buffer", "start_time")
"""Attributes left out of a saved model: they hold wall-clock timings, not learned state."""
_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_MEMORY_ADDRESS = re.compile(rb" at 0x[0-9a-fA-F]+>")
"""In SB3's human-readable descriptions of classes (`<function f at 0x7f…>`); loading reads only
the `:serialized:` fields, so dropping the address changes nothing but the bytes."""
MIN_ID_PREFIX = 6


@dataclass(frozen=True)
class ModelRecord:
    """One registered model.

    Attributes:
        id: sha256 of the model file (64 hex characters).
        created_ms: when it was registered.
        algorithm: ppo, a2c, dqn or sac.
        series: the candle series it was trained on.
        hyperparameters: algorithm and environment settings it was trained with.
        config_hash: hash of the effective configuration.
        data_hash: `MarketData.digest()` of the data set it was trained on.
        strategies: the strategy specs it observes, in column order.
        seeds: the training seed(s).
        metrics: validation and test metrics, the best step, warnings.
        path: the model file.
        status: candidate, live or retired.
        promoted_ms: when it last became live.
    """

    id: str
    created_ms: int
    algorithm: str
    series: dict[str, str]
    hyperparameters: dict[str, Any]
    config_hash: str
    data_hash: str
    strategies: list[str]
    seeds: list[int]
    metrics: dict[str, Any]
    path: str
    status: ModelStatus = "candidate"
    promoted_ms: int | None = None

    @property
    def key(self) -> SeriesKey:
        """The stored series the model was trained on."""
        if not self.series:
            raise ModelError(f"model {self.id[:12]} was not trained on a stored series")
        return SeriesKey(self.series["source"], self.series["symbol"], self.series["timeframe"])

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PromotionResult:
    """The outcome of one promotion attempt."""

    model_id: str
    promoted: bool
    previous_id: str | None
    candidate_score: float | None
    live_score: float | None
    reason: str
    window: dict[str, Any] = field(default_factory=dict)
    comparisons: list[dict[str, Any]] = field(default_factory=list)
    """The gate's comparisons (`Comparison` as data): flat, buy-and-hold, the live model."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- model files ------------------------------------------------------------------------------
def model_bytes(model: Any, metadata: dict[str, Any]) -> bytes:
    """Return the canonical, byte-stable file of an SB3 model (see the module docstring)."""
    raw = io.BytesIO()
    model.save(raw, exclude=list(VOLATILE_ATTRIBUTES))
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(raw.getvalue())) as source,
        zipfile.ZipFile(out, "w") as target,
    ):
        for info in source.infolist():
            entry = zipfile.ZipInfo(info.filename, date_time=_FIXED_ZIP_TIME)
            entry.compress_type = info.compress_type
            entry.external_attr = 0o600 << 16
            content = source.read(info)
            if info.filename == "data":
                content = _MEMORY_ADDRESS.sub(b">", content)
            target.writestr(entry, content)
        entry = zipfile.ZipInfo(METADATA_ENTRY, date_time=_FIXED_ZIP_TIME)
        entry.external_attr = 0o600 << 16
        target.writestr(entry, json.dumps(metadata, sort_keys=True, separators=(",", ":")))
    return out.getvalue()


def model_id(blob: bytes) -> str:
    """Return a model's id: the sha256 of its file's bytes."""
    return hashlib.sha256(blob).hexdigest()


def models_dir(settings: Settings) -> Path:
    """Return where model files live: `data.dir/models`."""
    return Path(settings.data.dir) / "models"


def write_model_file(blob: bytes, directory: Path) -> tuple[str, Path]:
    """Write a model file as `<id>.zip` (atomically; an existing identical file is kept)."""
    identifier = model_id(blob)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{identifier}{MODEL_SUFFIX}"
    if not path.exists():
        partial = path.with_suffix(".partial")
        partial.write_bytes(blob)
        partial.replace(path)
    return identifier, path


def read_metadata(path: Path | str | bytes) -> dict[str, Any]:
    """Return the `agora.json` entry of a model file, or its bytes (what the policy observes)."""
    try:
        with zipfile.ZipFile(io.BytesIO(path) if isinstance(path, bytes) else path) as archive:
            result: dict[str, Any] = json.loads(archive.read(METADATA_ENTRY))
            return result
    except (OSError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as e:
        raise ModelError(f"{_name(path)} is not an Agora model file: {e}") from e


def load_model(path: Path | str | bytes) -> Any:
    """Load a saved model (a file, or its bytes) with the SB3 class its metadata names (CPU)."""
    from agent.learn.train import ALGORITHMS

    algorithm = read_metadata(path).get("algorithm")
    if algorithm not in ALGORITHMS:
        raise ModelError(f"{_name(path)}: unknown algorithm {algorithm!r}")
    source = io.BytesIO(path) if isinstance(path, bytes) else str(path)
    try:
        return ALGORITHMS[algorithm].load(source, device="cpu")
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise ModelError(f"cannot load the model {_name(path)}: {e}") from e


def _name(path: Path | str | bytes) -> str:
    return f"model {model_id(path)[:12]}" if isinstance(path, bytes) else str(path)


# --- records ----------------------------------------------------------------------------------
_COLUMNS = (
    "id, created_ms, algorithm, series, hyperparameters, config_hash, data_hash, strategies, "
    "seeds, metrics, path, status, promoted_ms"
)


def _from_row(row: tuple[Any, ...]) -> ModelRecord:
    return ModelRecord(
        id=row[0],
        created_ms=int(row[1]),
        algorithm=row[2],
        series=json.loads(row[3]),
        hyperparameters=json.loads(row[4]),
        config_hash=row[5],
        data_hash=row[6],
        strategies=json.loads(row[7]),
        seeds=json.loads(row[8]),
        metrics=json.loads(row[9]),
        path=row[10],
        status=row[11],
        promoted_ms=None if row[12] is None else int(row[12]),
    )


def summary(record: ModelRecord) -> dict[str, Any]:
    """Return a model's row as `agora models list` (and the dashboard) show it."""
    metrics = record.metrics
    return {
        "id": record.id,
        "status": record.status,
        "algorithm": record.algorithm,
        "seeds": record.seeds,
        "created_ms": record.created_ms,
        "validation_return": metrics.get("validation", {}).get("total_return"),
        "test_return": metrics.get("test", {}).get("total_return"),
        "strategies": record.strategies,
    }


def format_return(value: float | None) -> str:
    """Return a total return as `agora models` prints it (`+1.23%`, `-` when unknown)."""
    return "-" if value is None else f"{value:+.2%}"


def register(store: Store, record: ModelRecord) -> ModelRecord:
    """Record a trained model as a candidate; a model already registered is left as it is.

    Returns:
        The stored record (the earlier one, if the same model was registered before).
    """
    return register_all(store, [record])[0]


def register_all(store: Store, records: Sequence[ModelRecord]) -> list[ModelRecord]:
    """Register every record in one transaction (all of them, or none on any failure)."""
    with store.transaction("registering models") as conn:
        insert_records(conn, records)
    return [show(store, record.id) for record in records]


def insert_records(conn: Any, records: Sequence[ModelRecord]) -> None:
    """Insert records as candidates inside the caller's transaction (known ids are kept)."""
    now = int(time.time() * 1000)
    for record in records:
        values = [
            record.id,
            record.created_ms or now,
            record.algorithm,
            json.dumps(record.series, sort_keys=True),
            json.dumps(record.hyperparameters, sort_keys=True),
            record.config_hash,
            record.data_hash,
            json.dumps(record.strategies),
            json.dumps(record.seeds),
            json.dumps(record.metrics, sort_keys=True, default=float),
            record.path,
            "candidate",
            None,
        ]
        conn.execute(
            f"INSERT INTO models ({_COLUMNS}) VALUES ({', '.join('?' * 13)}) "
            "ON CONFLICT(id) DO NOTHING",
            values,
        )


def list_models(store: Store) -> list[ModelRecord]:
    """Return every registered model, newest first."""
    rows = store.db.execute(
        f"SELECT {_COLUMNS} FROM models ORDER BY created_ms DESC, id"
    ).fetchall()
    return [_from_row(tuple(r)) for r in rows]


def show(store: Store, model_id: str) -> ModelRecord:
    """Return one model by its id or a unique prefix of it (at least 6 characters).

    Raises:
        UsageError: no model, or more than one, matches.
    """
    text = model_id.strip().lower()
    if len(text) < MIN_ID_PREFIX:
        raise UsageError(f"model id {model_id!r} is too short: give at least {MIN_ID_PREFIX} hex")
    rows = store.db.execute(
        f"SELECT {_COLUMNS} FROM models WHERE id LIKE ? ORDER BY id LIMIT 2", [text + "%"]
    ).fetchall()
    if not rows:
        raise UsageError(f"no model with id {model_id!r} (see `agora models list`)")
    if len(rows) > 1:
        raise UsageError(f"model id prefix {model_id!r} is ambiguous: give more characters")
    return _from_row(tuple(rows[0]))


def live_model(store: Store) -> ModelRecord | None:
    """Return the live model, if one has been promoted."""
    row = store.db.execute(f"SELECT {_COLUMNS} FROM models WHERE status = 'live'").fetchone()
    return None if row is None else _from_row(tuple(row))


def export(store: Store, model_id: str, path: Path | str) -> Path:
    """Copy a model's file to `path` (a directory gets `<id>.zip` inside), checking its hash.

    Raises:
        ModelError: the stored file is missing or no longer matches its id.
        UsageError: `path` cannot be written.
    """
    record = show(store, model_id)
    source = Path(record.path)
    if not source.is_file():
        raise ModelError(f"the file of model {record.id[:12]} is missing: {source}")
    if model_id_of_file(source) != record.id:
        raise ModelError(f"the file of model {record.id[:12]} was altered: {source}")
    target = Path(path)
    if target.is_dir():
        target = target / f"{record.id}{MODEL_SUFFIX}"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    except OSError as e:
        raise UsageError(f"cannot export model {record.id[:12]} to {target}: {e.strerror}") from e
    return target


def model_id_of_file(path: Path | str) -> str:
    """Return the id a model file has (the sha256 of its bytes)."""
    return model_id(Path(path).read_bytes())


# --- promotion ---------------------------------------------------------------------------------
BASELINES: tuple[str, ...] = ("flat", "buy-and-hold")
"""The policies every model must beat on validation before it may trade."""


@dataclass(frozen=True)
class Comparison:
    """The candidate against one reference policy over the validation window.

    Attributes:
        reference: `flat`, `buy-and-hold` or `live <id>`.
        candidate_log_return: the candidate's net log return.
        reference_log_return: the reference's net log return.
        advantage_se: the summed per-bar difference in standard errors (`paired_advantage`).
        beaten: whether the candidate beats it by at least the margin.
    """

    reference: str
    candidate_log_return: float
    reference_log_return: float
    advantage_se: float
    beaten: bool


@dataclass(frozen=True)
class GateEvaluation:
    """What the gate saw: the candidate and every reference on the same validation bars."""

    candidate_log_return: float
    comparisons: tuple[Comparison, ...]
    window: dict[str, Any]
    margin: float

    @property
    def passed(self) -> bool:
        return all(c.beaten for c in self.comparisons)

    def reason(self) -> str:
        """One line: what was beaten, and by how much, or what was not."""
        failed = [c for c in self.comparisons if not c.beaten]
        parts = [
            f"{c.reference} {c.advantage_se:+.1f} SE ({c.candidate_log_return:+.4f} vs "
            f"{c.reference_log_return:+.4f})"
            for c in (failed or self.comparisons)
        ]
        if failed:
            return (
                f"does not beat {', '.join(parts)} on validation by the margin of "
                f"{self.margin:g} SE (agent.selection_margin)"
            )
        return f"beats {', '.join(parts)} on validation"


def _per_bar(equity: Any) -> Any:
    import numpy as np

    values = np.asarray(equity, dtype="float64")
    return np.diff(np.log(np.maximum(values, 1e-300)))


def evaluate_gate(
    store: Store, settings: Settings, record: ModelRecord, key: SeriesKey
) -> GateEvaluation:
    """Run the candidate, flat, buy-and-hold and the live model over the validation window.

    All run through the one rollout on the same bars with the configured costs; the candidate
    must beat each by `agent.selection_margin` standard errors of the paired per-bar
    difference of log returns (the same test checkpoint selection uses) and by a positive sum.
    """
    from agent.env.rollout import buy_and_hold, flat, log_return, rollout
    from agent.learn.diagnostics import paired_advantage

    margin = settings.agent.selection_margin
    candidate, window, (data, start, end) = _validation_run(store, settings, record, key)
    costs = _gate_costs(settings)
    references = [
        ("flat", rollout(data, flat(data), costs, start, end)),
        ("buy-and-hold", rollout(data, buy_and_hold(data), costs, start, end)),
    ]
    live = live_model(store)
    if live is not None and live.id != record.id:
        references.append((f"live {live.id[:12]}", _validation_run(store, settings, live, key)[0]))
    mine = _per_bar(candidate.equity)
    comparisons = []
    for name, reference in references:
        theirs = _per_bar(reference.equity)
        advantage = paired_advantage(mine, theirs)
        total = float(mine.sum() - theirs.sum())
        comparisons.append(
            Comparison(
                name,
                log_return(candidate),
                log_return(reference),
                advantage,
                advantage >= margin and total > 0,
            )
        )
    return GateEvaluation(log_return(candidate), tuple(comparisons), window, margin)


def validation_score(
    store: Store, settings: Settings, record: ModelRecord, key: SeriesKey
) -> tuple[float, dict[str, Any]]:
    """Return a model's net log return over the validation window, and the window."""
    from agent.env.rollout import log_return

    result, window, _ = _validation_run(store, settings, record, key)
    return log_return(result), window


def _gate_costs(settings: Settings) -> Any:
    """The environment every gate run uses: the configured costs, no dropout, no penalty."""
    from dataclasses import replace

    from agent.env.trading_env import EnvConfig

    return replace(EnvConfig.from_settings(settings), strategy_dropout=0.0, turnover_penalty=0.0)


def _validation_run(
    store: Store, settings: Settings, model: ModelRecord, key: SeriesKey
) -> tuple[Any, dict[str, Any], tuple[Any, int, int]]:
    """Run a registered model over the validation window of `key` (the one rollout).

    Returns:
        The run, the window, and (data, start, end) for runs of other policies on the same bars.
    """
    from agent.env.rollout import rollout
    from agent.learn.dataset import load_dataset
    from agent.learn.policy import load_policy

    costs = _gate_costs(settings)
    loaded = load_policy(store, model.id)
    dataset = load_dataset(store, settings, key, strategies=list(loaded.spec.strategies))
    data, start, end = dataset.env_data("validation")
    result = rollout(data, loaded.as_model_policy(costs), costs, start, end)
    return result, dataset.windows["validation"].as_dict(), (data, start, end)


def promote(
    store: Store, settings: Settings, model_id: str, *, force: bool = False
) -> PromotionResult:
    """Make a model live if it passes the gate on the validation window.

    The gate: net of every cost, the candidate must beat staying flat, buy-and-hold, and the
    live model if there is one, each by `agent.selection_margin` standard errors of the paired
    per-bar difference (`evaluate_gate`). With no live model, a model that loses to holding
    cash never goes live. `force` skips the gate (a deliberate rollback) and is recorded as
    such.
    """
    record = show(store, model_id)
    live = live_model(store)
    if live is not None and live.id == record.id:
        return PromotionResult(record.id, False, live.id, None, None, "already live")
    evaluation = evaluate_gate(store, settings, record, record.key)
    candidate_score, window = evaluation.candidate_log_return, evaluation.window
    live_score = next(
        (c.reference_log_return for c in evaluation.comparisons if c.reference.startswith("live")),
        None,
    )
    promoted = force or evaluation.passed
    reason = "forced: the gate was skipped" if force else evaluation.reason()
    now = int(time.time() * 1000)
    with store.transaction() as conn:
        if promoted:
            conn.execute("UPDATE models SET status = 'retired' WHERE status = 'live'")
            conn.execute(
                "UPDATE models SET status = 'live', promoted_ms = ? WHERE id = ?", [now, record.id]
            )
        conn.execute(
            "INSERT INTO model_promotions (at_ms, model_id, previous_id, promoted, forced, "
            "candidate_score, live_score, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                now,
                record.id,
                None if live is None else live.id,
                int(promoted),
                int(force),
                candidate_score,
                live_score,
                reason,
            ],
        )
    return PromotionResult(
        record.id,
        promoted,
        None if live is None else live.id,
        candidate_score,
        live_score,
        reason,
        window,
        [asdict(c) for c in evaluation.comparisons],
    )
