"""The one way to load a registered model as a policy: `load_policy(store, "live" | id)`.

A loaded policy is the model's id, its prediction function (a `NumpyPolicy`, equal to SB3's
deterministic `predict`) and its `PolicySpec` (what it observes and how its action becomes a
target exposure), read from the model file's metadata. The file must exist and hash to its id:
a missing, corrupt or replaced file is a `ModelError`, so nothing ever trades or is scored with
a model other than the one registered. The service, backtests, reward epochs and the promotion
gate all load models here. With `cache_dir`, the numpy weights are cached next to the data so a
restart does not need torch; the cache is only ever written from a file whose hash was checked.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.env.rollout import ModelPolicy
from agent.env.spec import PolicySpec
from agent.env.trading_env import EnvConfig
from agent.errors import ModelError, ModelNotFound, UsageError
from agent.learn import registry
from agent.store import Store


@dataclass(frozen=True)
class LoadedPolicy:
    """A registered model, ready to decide.

    Attributes:
        model_id: sha256 of the model file (64 hex digits).
        predict: observation -> action (a `NumpyPolicy`).
        spec: what it observes and how its action maps to a target exposure.
        record: its registry record.
    """

    model_id: str
    predict: Any
    spec: PolicySpec
    record: registry.ModelRecord

    @property
    def path(self) -> Path:
        return Path(self.record.path)

    @property
    def record_id(self) -> str:
        """The model id as a decision record holds it (bytes32 hex)."""
        return "0x" + self.model_id

    @property
    def name(self) -> str:
        """How tables and reports name it."""
        return f"model-{self.model_id[:8]}"

    def decide(self, observation: np.ndarray) -> float:
        """Return the target exposure the policy chooses for `observation`."""
        return self.spec.target_exposure(self.predict(observation))

    @property
    def is_baseline(self) -> bool:
        return False

    def as_model_policy(self, base: EnvConfig | None = None) -> ModelPolicy:
        """Return it as a rollout policy observing through its spec (costs from `base`)."""
        return ModelPolicy(
            self.name,
            self.predict,
            (base or EnvConfig()).for_spec(self.spec),
            model_id=self.model_id,
            strategy_names=self.spec.strategies,
        )


def load_policy(
    store: Store, which: str = "live", *, cache_dir: Path | None = None
) -> LoadedPolicy:
    """Load the live model (`"live"`) or a registered one (id or unique prefix).

    Raises:
        ModelNotFound: no live model, or no model with that id (one error for both).
        ModelError: the model's file is missing, corrupt, or its metadata unusable.
    """
    if which == "live":
        record = registry.live_model(store)
        if record is None:
            raise ModelNotFound(
                "no live model: train one and promote it (agora train), or give a model id"
            )
    else:
        try:
            record = registry.show(store, which)
        except UsageError as e:
            raise ModelNotFound(str(e)) from e
    path = Path(record.path)
    verify_model_file(path, record.id, "live model" if which == "live" else "model")
    spec = PolicySpec.from_metadata(registry.read_metadata(path), f"model {record.id[:12]}")
    predict = _cached_policy(path, record.id, cache_dir)
    if predict.n_inputs != spec.observation_size:
        raise ModelError(
            f"model {record.id[:12]} takes {predict.n_inputs} inputs but its metadata "
            f"describes {spec.observation_size} ({spec.lookback_bars} bars, "
            f"{spec.n_strategies} strategies)"
        )
    return LoadedPolicy(record.id, predict, spec, record)


@dataclass(frozen=True)
class BaselinePolicy:
    """A baseline traded when no model has passed the gate: flat or buy-and-hold.

    It decides like a policy (a constant target exposure) and observes nothing, but its
    decisions are recorded and logged like a model's, with the policy named in the record:
    `model_id` is keccak256 of `baseline:NAME`. Epochs it trades are carried, not paid.

    Attributes:
        name: `flat` or `buy-and-hold`.
        spec: the configured spec (its strategies' signals still go into the records).
        reason: why no model trades (the gate's verdict).
        scores: each baseline's net log return on the validation window it was chosen on.
    """

    name: str
    spec: PolicySpec
    reason: str = ""
    scores: dict[str, float] | None = None

    @property
    def is_baseline(self) -> bool:
        return True

    @property
    def model_id(self) -> str:
        return f"baseline:{self.name}"

    @property
    def record_id(self) -> str:
        from agent.audit.record import text_id

        return text_id(self.model_id)

    @property
    def target(self) -> float:
        return 1.0 if self.name == "buy-and-hold" else 0.0

    def decide(self, observation: np.ndarray) -> float:
        """Return the baseline's constant target exposure."""
        del observation
        return self.target

    def predict(self, observation: np.ndarray) -> Any:
        """Return the action of the spec's action space that targets the baseline's exposure."""
        del observation
        return self.spec.action_for(self.target)


def choose_baseline(store: Store, settings: Any, key: Any, reason: str = "") -> BaselinePolicy:
    """Return the better of flat and buy-and-hold on the validation window of `key`.

    Both run through the one rollout with the configured costs; flat wins ties (it risks
    nothing). The choice is made on the validation window only, like the gate's.
    """
    from dataclasses import replace

    from agent.env.rollout import buy_and_hold, flat, log_return, rollout
    from agent.learn.dataset import load_dataset

    dataset = load_dataset(store, settings, key, strategies=[])
    data, start, end = dataset.env_data("validation")
    costs = replace(EnvConfig.from_settings(settings), strategy_dropout=0.0, turnover_penalty=0.0)
    scores = {
        policy.name: log_return(rollout(data, policy, costs, start, end))
        for policy in (flat(data), buy_and_hold(data))
    }
    name = "buy-and-hold" if scores["buy-and-hold"] > scores["flat"] else "flat"
    return BaselinePolicy(name, PolicySpec.from_settings(settings), reason, scores)


def verify_model_file(path: Path, model_id: str, role: str = "model") -> None:
    """Check that a model file exists and hashes to its id.

    Raises:
        ModelError: the file is missing, unreadable or altered.
    """
    if not path.is_file():
        raise ModelError(
            f"the {role}'s file is missing: {path} (model {model_id[:12]}); restore it, or train "
            "and promote another model (agora train); Agora will not trade blind"
        )
    try:
        found = registry.model_id_of_file(path)
    except OSError as e:
        raise ModelError(f"cannot read the {role}'s file {path}: {e.strerror}") from e
    if found != model_id:
        raise ModelError(
            f"the {role}'s file {path} is corrupt: it hashes to {found[:12]}, not to its id "
            f"{model_id[:12]}; restore it, or train and promote another model (agora train); "
            "Agora will not trade blind"
        )


# --- the numpy weights cache ---------------------------------------------------------------------
def policy_cache_path(directory: Path, model_id: str) -> Path:
    """Return where the numpy weights of model `model_id` are cached."""
    return directory / f"{model_id}.npz"


def _cached_policy(path: Path, model_id: str, cache_dir: Path | None) -> Any:
    from agent.learn.inference import NumpyPolicy

    if cache_dir is None:
        return NumpyPolicy.load(path)
    cache = policy_cache_path(cache_dir, model_id)
    if cache.is_file():
        with contextlib.suppress(OSError, ValueError, KeyError):
            return load_policy_cache(cache)
    predict = NumpyPolicy.load(path)
    with contextlib.suppress(OSError):  # a cache only: the next start reads the model file
        save_policy_cache(predict, cache)
    return predict


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
