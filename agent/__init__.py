"""Agora: a token-incentivised AI trading agent with an auditable on-chain trail."""

from __future__ import annotations

__version__ = "0.1.0"
