"""docs/examples/verify_decision.py re-implements the encoding without Agora: it must agree."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from hypothesis import given, settings

from agent.audit.record import DecisionRecord, decision_hash
from tests.unit.audit.conftest import records, sample_record

EXAMPLE = Path(__file__).resolve().parents[3] / "docs" / "examples" / "verify_decision.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("verify_decision_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EXAMPLE_MODULE = load_example()


def test_the_example_does_not_import_agora() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    assert "from agent" not in text and "import agent" not in text


def test_the_example_hashes_the_golden_record_like_agora() -> None:
    record = sample_record()
    assert "0x" + EXAMPLE_MODULE.decision_hash(record.to_json_data()).hex() == decision_hash(record)


@settings(max_examples=100, deadline=None)
@given(records())
def test_the_example_agrees_with_agora_on_any_record(record: DecisionRecord) -> None:
    assert "0x" + EXAMPLE_MODULE.decision_hash(record.to_json_data()).hex() == decision_hash(record)
