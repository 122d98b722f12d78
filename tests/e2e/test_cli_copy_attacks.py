"""`agora strategies submit` refuses every copy attack of tests/data/copy_plugins/ and registers
the original control, through the CLI on the embedded chain with a stored market.

Each copy is a variant of the shipped 'ma-crossover' (renamed, scaled with noise, lagged one or
two bars, re-tuned to 14/40, or original-looking on the reference data only); the refusal must
name 'ma-crossover' and the R², and leave nothing registered or installed. The R² figures of
each are checked in tests/integration/plugins/test_copy_attacks.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from agent.plugins.registry import read_registrations
from agent.store import Store
from tests.e2e.conftest import Run

COPIES = Path(__file__).parents[1] / "data" / "copy_plugins"
CONTRIBUTOR = "0x00000000000000000000000000000000000000bb"
CONFIG = """\
data:
  dir: data
market:
  synthetic: {bars: 1500}
strategies:
  plugin_dir: plugins
  memory_mb: 768
  reference_bars: 1000
  causality_cut_points: 2
  lookahead_samples: 10
"""


COPY_NAMES = {
    "exact_copy.py": "fresh-trend",
    "scaled_noisy_copy.py": "gentle-trend",
    "lag1_copy.py": "late-trend",
    "lag2_copy.py": "later-trend",
    "tweaked_copy.py": "slower-trend",
    "two_faced_copy.py": "two-faced-trend",
}


def test_submit_refuses_every_copy_naming_ma_crossover_and_registers_an_original(
    agora: Run, workdir: Path
) -> None:
    (workdir / "config.yaml").write_text(CONFIG)
    synth = agora("data", "synth")
    assert synth.returncode == 0, synth.stderr

    for file, name in COPY_NAMES.items():
        copy = agora("strategies", "submit", str(COPIES / file), "--contributor", CONTRIBUTOR)
        assert copy.returncode == 1, (file, copy.stdout + copy.stderr)
        error = " ".join(copy.stderr.split())
        assert f"strategy {name!r} was not submitted: 1 validation check(s) failed" in error
        refusal = re.search(
            r"originality: its signal is explained by the registered strategies "
            r"\(R² ([0-9.]+) on [^)]*, limit 0\.8, lags 0-3\): ma-crossover \(([0-9.]+) alone\)",
            error,
        )
        assert refusal is not None, (file, error)
        assert float(refusal.group(1)) >= 0.8 and float(refusal.group(2)) >= 0.8, error
        assert error.endswith(": refused as a copy"), error
    # the two-faced copy is original on the reference data: only the stored market catches it
    assert "(R² 1.000 on the stored market synthetic:SYN/USD:1h, limit 0.8" in error

    original = agora(
        "strategies", "submit", str(COPIES / "volume_surge.py"), "--contributor", CONTRIBUTOR,
        "--json",
    )  # fmt: skip
    assert original.returncode == 0, original.stderr
    result = json.loads(original.stdout)
    assert (result["name"], result["version"]) == ("volume-surge", 1)

    with Store(workdir / "data" / "agora.db") as store:
        registrations = read_registrations(store)
    assert [(r["name"], r["status"]) for r in registrations] == [("volume-surge", "installed")]
    assert sorted(p.name for p in (workdir / "plugins").iterdir()) == ["volume_surge.py"]
    listed = agora("strategies", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    statuses = {entry["name"]: entry["status"] for entry in json.loads(listed.stdout)}
    assert statuses["volume-surge"] == "OK"
    assert not set(COPY_NAMES.values()) & set(statuses)
