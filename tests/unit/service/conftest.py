"""Fixtures for the service's unit tests (shared with the other suite: see fixtures.py)."""

from __future__ import annotations

from tests.unit.service.fixtures import Started, StartRuntime, settings, start_runtime

__all__ = ["StartRuntime", "Started", "settings", "start_runtime"]
