"""Deterministic actions from a trained policy, evaluated with numpy instead of torch.

Backtests, attribution (which re-runs the policy many times with strategies masked) and the
service call the policy once per bar; SB3's `predict` spends most of its time converting
arrays and dispatching torch modules, not multiplying matrices. `NumpyPolicy` copies the
actor's weights out once and evaluates the same MLP with numpy matmuls in float32, so the
actions equal `model.predict(obs, deterministic=True)` (tests check this for PPO, A2C, DQN and
SAC) at a small fraction of the cost.

What each algorithm's deterministic action is:

- PPO / A2C, discrete: argmax of the action logits; continuous: the Gaussian mean, clipped to
  the action space.
- DQN: argmax of the Q-values.
- SAC: tanh of the squashed Gaussian's mean, rescaled from [-1, 1] to the action space.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from agent.env.kernel import Network
from agent.errors import ModelError

Activation = Literal["tanh", "relu", "identity"]
Head = Literal["argmax", "clip", "tanh_rescale"]


@dataclass(frozen=True)
class DenseLayer:
    """y = activation(x @ weight + bias), weights stored [inputs, outputs] in float32."""

    weight: np.ndarray
    bias: np.ndarray
    activation: Activation


def _apply(x: np.ndarray, layer: DenseLayer) -> np.ndarray:
    y: np.ndarray = x @ layer.weight + layer.bias
    if layer.activation == "tanh":
        return np.tanh(y)
    if layer.activation == "relu":
        return np.maximum(y, np.float32(0.0))
    return y


class NumpyPolicy:
    """A trained MLP policy as numpy arrays, with SB3's deterministic action rule.

    Args:
        layers: the network from observation to the action head's raw output.
        head: how the raw output becomes an action (see the module docstring).
        low: lower bound of a continuous action space.
        high: upper bound of a continuous action space.
    """

    def __init__(
        self,
        layers: Sequence[DenseLayer],
        head: Head,
        low: np.ndarray | None = None,
        high: np.ndarray | None = None,
    ) -> None:
        if not layers:
            raise ModelError("a policy needs at least one layer")
        self.layers = tuple(layers)
        self.head = head
        self.low = None if low is None else np.asarray(low, dtype=np.float32)
        self.high = None if high is None else np.asarray(high, dtype=np.float32)
        self.n_inputs = int(self.layers[0].weight.shape[0])
        self._network: Network | None = None

    # --- building -----------------------------------------------------------------------
    @classmethod
    def from_model(cls, model: Any) -> NumpyPolicy:
        """Copy the actor of a trained SB3 PPO, A2C, DQN or SAC model with an MLP policy.

        Raises:
            ModelError: the model is of another kind, or its network is not a plain MLP.
        """
        from gymnasium import spaces
        from stable_baselines3 import A2C, DQN, PPO, SAC

        policy = model.policy
        space = model.action_space
        if isinstance(model, PPO | A2C):
            _require_flatten(policy.pi_features_extractor)
            layers = _sequential(policy.mlp_extractor.policy_net)
            layers.append(_linear(policy.action_net, "identity"))
            if isinstance(space, spaces.Discrete):
                return cls(layers, "argmax")
            if isinstance(space, spaces.Box):
                return cls(layers, "clip", space.low, space.high)
        elif isinstance(model, DQN):
            _require_flatten(policy.q_net.features_extractor)
            return cls(_sequential(policy.q_net.q_net), "argmax")
        elif isinstance(model, SAC):
            actor = policy.actor
            if actor.use_sde:
                raise ModelError("SAC with gSDE is not supported by the numpy policy")
            _require_flatten(actor.features_extractor)
            layers = _sequential(actor.latent_pi)
            layers.append(_linear(actor.mu, "identity"))
            return cls(layers, "tanh_rescale", space.low, space.high)
        raise ModelError(
            f"cannot evaluate a {type(model).__name__} with action space {space} in numpy"
        )

    @classmethod
    def load(cls, path: Path | str | bytes) -> NumpyPolicy:
        """Load a saved model file (or its bytes) and copy its actor."""
        from agent.learn.registry import load_model

        return cls.from_model(load_model(path))

    # --- acting -------------------------------------------------------------------------
    def predict(self, observation: np.ndarray) -> np.ndarray:
        """Return the deterministic action(s), shaped as SB3's `predict` returns them.

        One observation [n_inputs] gives one action (a 0-d int array for a discrete space,
        [action_dim] for a continuous one); a batch [batch, n_inputs] gives one per row.
        """
        obs = np.asarray(observation, dtype=np.float32)
        single = obs.ndim == 1
        x = obs.reshape(1, -1) if single else obs
        if x.shape[1] != self.n_inputs:
            raise ModelError(
                f"observation has {x.shape[1]} values; the policy expects {self.n_inputs}"
            )
        for layer in self.layers:
            x = _apply(x, layer)
        actions = self._head(x)
        return actions[0] if single else actions

    @property
    def network(self) -> Network:
        """The same network packed for the rollout kernel (its forward pass, compiled)."""
        if self._network is None:
            low = 0.0 if self.low is None else float(self.low.reshape(-1)[0])
            high = 1.0 if self.high is None else float(self.high.reshape(-1)[0])
            layers = [(layer.weight, layer.bias, layer.activation) for layer in self.layers]
            self._network = Network.pack(layers, self.head, low, high)
        return self._network

    def __call__(self, observation: np.ndarray) -> Any:
        """Return the action for one observation (an int for a discrete space)."""
        action = self.predict(observation)
        return int(action) if self.head == "argmax" else action

    def _head(self, raw: np.ndarray) -> np.ndarray:
        if self.head == "argmax":
            return raw.argmax(axis=1).astype(np.int64)
        assert self.low is not None and self.high is not None
        if self.head == "clip":
            return np.clip(raw, self.low, self.high)
        squashed = np.tanh(raw)
        return self.low + np.float32(0.5) * (squashed + np.float32(1.0)) * (self.high - self.low)


def _require_flatten(extractor: Any) -> None:
    from stable_baselines3.common.torch_layers import FlattenExtractor

    if not isinstance(extractor, FlattenExtractor):
        raise ModelError(
            f"the policy's features extractor is {type(extractor).__name__}; the numpy policy "
            "supports MlpPolicy (FlattenExtractor) only"
        )


def _linear(module: Any, activation: Activation) -> DenseLayer:
    weight = module.weight.detach().cpu().numpy().astype(np.float32).T.copy()
    bias = module.bias.detach().cpu().numpy().astype(np.float32).copy()
    return DenseLayer(np.ascontiguousarray(weight), bias, activation)


def _sequential(net: Any) -> list[DenseLayer]:
    """Turn a torch Sequential of Linear layers and activations into dense layers."""
    from torch import nn

    layers: list[DenseLayer] = []
    modules = list(net)
    for index, module in enumerate(modules):
        if isinstance(module, nn.Linear):
            follower = modules[index + 1] if index + 1 < len(modules) else None
            activation: Activation = "identity"
            if isinstance(follower, nn.Tanh):
                activation = "tanh"
            elif isinstance(follower, nn.ReLU):
                activation = "relu"
            elif follower is not None and not isinstance(follower, nn.Linear | nn.Identity):
                raise ModelError(
                    f"activation {type(follower).__name__} is not supported by the numpy "
                    "policy (use Tanh or ReLU)"
                )
            layers.append(_linear(module, activation))
        elif not isinstance(module, nn.Tanh | nn.ReLU | nn.Identity):
            raise ModelError(f"layer {type(module).__name__} is not supported by the numpy policy")
    return layers
