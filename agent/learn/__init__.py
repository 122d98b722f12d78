"""Reinforcement learning: data sets and splits, training, the model registry, fast inference.

- `dataset`: market data and strategy signals for the environment, split in time order.
- `train`: SB3 training with validation-only checkpoint selection and fixed seeds.
- `registry`: trained models in the store, their ids (file hashes) and the promotion gate.
- `inference`: the policy's weights evaluated with numpy, equal to SB3's deterministic predict.
- `diagnostics`: evaluation trajectories, their metrics and degenerate-agent warnings.

Heavy imports (torch, stable-baselines3) happen inside these modules, never here.
"""
