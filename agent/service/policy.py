"""The live model as the service uses it, and the observation it is shown, bar by bar.

`load_live_policy` refuses to trade blind: the model file must exist and hash to its id (a
corrupt or replaced file is a `ModelError`, which stops the service). The policy's numpy
weights are cached next to the data (`service/policies/<id>.npz`) so a restart does not need
torch; the cache is only ever written from a file whose hash was checked.

`observation_at` builds exactly what `TradingEnv` shows the policy at bar t: the look-back
window of market features, each strategy's signal (0 where unavailable), the availability
mask and the current exposure, as float32, in that order. A test compares the two.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.config import Settings
from agent.dex.amm import BASE_DECIMALS, QUOTE_DECIMALS
from agent.env.features import FEATURE_NAMES
from agent.errors import ModelError
from agent.store import Store

BASE_SCALE = 10.0**BASE_DECIMALS
QUOTE_SCALE = 10.0**QUOTE_DECIMALS


@dataclass(frozen=True)
class LivePolicy:
    """The live model, ready to decide.

    Attributes:
        model_id: sha256 of the model file (64 hex digits).
        path: the model file.
        predict: observation -> action (a `NumpyPolicy`).
        strategies: the strategy specs it observes, in column order.
        lookback_bars: bars of market features in an observation.
        action: 'discrete' or 'continuous'.
        exposure_levels: target exposures of the discrete actions.
        n_inputs: observation size the policy expects.
    """

    model_id: str
    path: Path
    predict: Any
    strategies: tuple[str, ...]
    lookback_bars: int
    action: str
    exposure_levels: tuple[float, ...]
    n_inputs: int

    @property
    def record_id(self) -> str:
        """The model id as a decision record holds it (bytes32 hex)."""
        return "0x" + self.model_id

    def target_exposure(self, action: Any) -> float:
        """Map an action to a target exposure, as `TradingEnv.target_exposure` does."""
        if self.action == "discrete":
            return float(self.exposure_levels[int(action)])
        return float(min(1.0, max(0.0, float(np.asarray(action).reshape(-1)[0]))))

    def decide(self, observation: np.ndarray) -> float:
        """Return the target exposure the policy chooses for `observation`."""
        return self.target_exposure(self.predict(observation))


def observation_size(lookback_bars: int, n_strategies: int) -> int:
    """Return the size of an observation (as `TradingEnv.observation_space`)."""
    return lookback_bars * len(FEATURE_NAMES) + 2 * n_strategies + 1


def exposure(base: int, quote: int, price: float) -> float:
    """Return the fraction of the portfolio held in base at `price` (as the environment)."""
    value = base / BASE_SCALE * price + quote / QUOTE_SCALE
    return (base / BASE_SCALE * price) / value if value > 0 else 0.0


def observation_at(
    features: np.ndarray,
    signals: np.ndarray,
    mask: np.ndarray,
    t: int,
    lookback_bars: int,
    exposure_now: float,
) -> np.ndarray:
    """Return the policy's observation at bar t, exactly as `TradingEnv` builds it.

    Args:
        features: float32 [bars, features] from `market_features` over candles up to t.
        signals: [bars, strategies] signals (cast to float32 as `MarketData` holds them).
        mask: bool [bars, strategies] availability.
        t: the bar decided on.
        lookback_bars: bars of features in the window.
        exposure_now: the portfolio's exposure at bar t's close, before the decision.
    """
    if t < lookback_bars - 1:
        raise ModelError(f"bar {t} has fewer than {lookback_bars} bars of history to observe")
    window = np.ascontiguousarray(features, dtype=np.float32)[t - lookback_bars + 1 : t + 1]
    visible = np.ascontiguousarray(mask, dtype=bool)[t]
    row = np.ascontiguousarray(signals, dtype=np.float32)[t]
    shown = np.where(visible, row, 0.0)
    return np.concatenate([window.ravel(), shown, visible, [exposure_now]]).astype(np.float32)


# --- loading ------------------------------------------------------------------------------------
def policy_cache_dir(settings: Settings) -> Path:
    """Return the directory of cached policy weights: `data.dir/service/policies`."""
    return Path(settings.data.dir) / "service" / "policies"


def policy_cache_path(directory: Path, model_id: str) -> Path:
    """Return where the numpy weights of model `model_id` are cached."""
    return directory / f"{model_id}.npz"


def save_policy_cache(policy: Any, path: Path) -> None:
    """Write a `NumpyPolicy`'s weights to `path` (atomically), for `load_policy_cache`."""
    arrays: dict[str, Any] = {"head": np.array(policy.head)}
    for i, layer in enumerate(policy.layers):
        arrays[f"w{i}"] = layer.weight
        arrays[f"b{i}"] = layer.bias
        arrays[f"a{i}"] = np.array(layer.activation)
    if policy.low is not None and policy.high is not None:
        arrays["low"], arrays["high"] = policy.low, policy.high
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with partial.open("wb") as handle:
        np.savez(handle, **arrays)
    partial.replace(path)


def load_policy_cache(path: Path) -> Any:
    """Read a `NumpyPolicy` written by `save_policy_cache` (raises OSError / ValueError)."""
    from agent.learn.inference import DenseLayer, NumpyPolicy

    with np.load(path, allow_pickle=False) as data:
        layers = []
        i = 0
        while f"w{i}" in data:
            layers.append(DenseLayer(data[f"w{i}"], data[f"b{i}"], str(data[f"a{i}"])))  # type: ignore[arg-type]
            i += 1
        low = data.get("low")
        high = data.get("high")
        return NumpyPolicy(layers, str(data["head"]), low, high)  # type: ignore[arg-type]


def verify_model_file(path: Path, model_id: str) -> None:
    """Check that a model file exists and hashes to its id.

    Raises:
        ModelError: the file is missing, unreadable or altered.
    """
    from agent.learn.registry import model_id_of_file

    if not path.is_file():
        raise ModelError(
            f"the live model's file is missing: {path} (model {model_id[:12]}); restore it, "
            "or train and promote another model (agora train); the service will not trade blind"
        )
    try:
        found = model_id_of_file(path)
    except OSError as e:
        raise ModelError(f"cannot read the live model's file {path}: {e.strerror}") from e
    if found != model_id:
        raise ModelError(
            f"the live model's file {path} is corrupt: it hashes to {found[:12]}, not to its id "
            f"{model_id[:12]}; restore it, or train and promote another model (agora train); "
            "the service will not trade blind"
        )


def load_live_policy(store: Store, settings: Settings, cache_dir: Path) -> LivePolicy:
    """Load the live model, checking its file, its metadata and its observation size.

    Raises:
        ModelError: no live model, or its file is missing, corrupt or unusable.
    """
    from agent.learn import registry

    record = registry.live_model(store)
    if record is None:
        raise ModelError(
            "no live model: train one and promote it (agora train), or set "
            "service.bootstrap_model: true to train one on the history at start-up"
        )
    path = Path(record.path)
    verify_model_file(path, record.id)
    metadata = registry.read_metadata(path)
    try:
        strategies = tuple(str(s) for s in metadata["strategies"])
        lookback = int(metadata["lookback_bars"])
        action = str(metadata["action"])
        levels = tuple(float(x) for x in metadata["exposure_levels"])
    except (KeyError, TypeError, ValueError) as e:
        raise ModelError(f"the live model's file {path} has incomplete metadata: {e}") from e
    cache = policy_cache_path(cache_dir, record.id)
    predict = None
    if cache.is_file():
        try:
            predict = load_policy_cache(cache)
        except (OSError, ValueError, KeyError):
            predict = None  # rebuilt below from the checked model file
    if predict is None:
        from agent.learn.inference import NumpyPolicy

        predict = NumpyPolicy.load(path)
        with contextlib.suppress(OSError):  # a cache only: the next start reads the model file
            save_policy_cache(predict, cache)
    expected = observation_size(lookback, len(strategies))
    if predict.n_inputs != expected:
        raise ModelError(
            f"the live model {record.id[:12]} takes {predict.n_inputs} inputs but its metadata "
            f"describes {expected} ({lookback} bars, {len(strategies)} strategies)"
        )
    return LivePolicy(
        model_id=record.id,
        path=path,
        predict=predict,
        strategies=strategies,
        lookback_bars=lookback,
        action=action,
        exposure_levels=levels,
        n_inputs=expected,
    )


def live_model_id(store: Store) -> str | None:
    """Return the id of the live model (cheap: one query), or None."""
    row = store.db.execute("SELECT id FROM models WHERE status = 'live'").fetchone()
    return None if row is None else str(row[0])


def bootstrap_model(
    store: Store, settings: Settings, candles: Any, key: Any, timesteps: int
) -> str:
    """Train a first model on the history, register it and make it live; return its id.

    Raises:
        ModelError: training failed or the model could not be promoted.
        DataError: the history is too short for the configured split.
    """
    from agent.learn import registry
    from agent.learn.dataset import dataset_from_candles
    from agent.learn.train import train

    dataset = dataset_from_candles(candles, settings, key=key, store=store)
    report = train(settings, store, dataset=dataset, seeds=1, timesteps=timesteps)
    model_id = report.runs[0].model_id
    result = registry.promote(store, settings, model_id, force=True)
    if not result.promoted and result.reason != "already live":
        raise ModelError(f"the bootstrap model {model_id[:12]} was not promoted: {result.reason}")
    return model_id


def finite_signals(values: Sequence[float]) -> list[float]:
    """Return the signals with non-finite values as 0 (masked ones are ignored when hashed)."""
    return [float(v) if math.isfinite(float(v)) else 0.0 for v in values]
