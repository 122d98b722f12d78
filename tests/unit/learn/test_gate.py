"""The promotion gate: a model goes live only if it beats flat, buy-and-hold and the live model.

The models are real SB3 files with hand-set weights (`crafted.py`), on a stored synthetic market
with a strong, slow planted component: following the planted-signal strategy beats both
baselines by many standard errors; going against it loses to both; always-flat and
always-invested merely tie with a baseline, which is not beating it.
"""

from __future__ import annotations

from typing import Any

import pytest

from agent.config import Settings, SyntheticSettings
from agent.learn import registry
from agent.market.synthetic import synth
from agent.store import Store
from tests.unit.learn.crafted import register_rule_model

ORACLE = "planted-oracle"


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    directory = tmp_path_factory.mktemp("gate")
    settings = Settings.model_validate(
        {
            "data": {"dir": str(directory)},
            "agent": {
                "strategies": [ORACLE, "noise:seed=1"],
                "lookback_bars": 4,
                "exposure_levels": [0.0, 1.0],
            },
            "strategies": {"fixtures": [ORACLE]},
        }
    )
    planted = {"enabled": True, "information_coefficient": 0.2, "half_life_bars": 48.0}
    with Store(settings.data.database_path) as store:
        synth(
            store,
            SyntheticSettings(seed=7, bars=3000, regime_drift_annual=0.1, planted=planted),
            "SYN/USD",
            "1h",
        )
        ids = {
            rule: register_rule_model(store, settings, rule, ORACLE)
            for rule in ("follow", "against", "flat", "invested")
        }
    return {"settings": settings, "ids": ids}


def _store(market: dict[str, Any]) -> Store:
    return Store(market["settings"].data.database_path)


def test_a_model_that_loses_to_holding_cash_never_goes_live(market: dict[str, Any]) -> None:
    with _store(market) as store:
        result = registry.promote(store, market["settings"], market["ids"]["against"])
        assert not result.promoted and registry.live_model(store) is None
    assert result.reason.startswith("does not beat") and "flat" in result.reason
    flat = next(c for c in result.comparisons if c["reference"] == "flat")
    assert flat["advantage_se"] < 0 and not flat["beaten"]


@pytest.mark.parametrize(("rule", "ties_with"), [("flat", "flat"), ("invested", "buy-and-hold")])
def test_tying_with_a_baseline_is_not_beating_it(
    market: dict[str, Any], rule: str, ties_with: str
) -> None:
    with _store(market) as store:
        result = registry.promote(store, market["settings"], market["ids"][rule])
        assert not result.promoted and registry.live_model(store) is None
    tie = next(c for c in result.comparisons if c["reference"] == ties_with)
    assert not tie["beaten"] and abs(tie["advantage_se"]) < 1.0


def test_only_a_model_that_beats_both_baselines_and_the_live_one_goes_live(
    market: dict[str, Any],
) -> None:
    settings = market["settings"]
    with _store(market) as store:
        good = registry.promote(store, settings, market["ids"]["follow"])
        assert good.promoted, good.reason
        assert {c["reference"] for c in good.comparisons} == {"flat", "buy-and-hold"}
        assert all(c["beaten"] and c["advantage_se"] >= 1.0 for c in good.comparisons)
        assert registry.live_model(store).id == market["ids"]["follow"]  # type: ignore[union-attr]

        worse = registry.promote(store, settings, market["ids"]["invested"])
        assert not worse.promoted
        live = next(c for c in worse.comparisons if c["reference"].startswith("live"))
        assert not live["beaten"] and worse.live_score == good.candidate_score

        forced = registry.promote(store, settings, market["ids"]["against"], force=True)
        assert forced.promoted and forced.reason.startswith("forced")
        attempts = store.db.execute(
            "SELECT promoted, forced FROM model_promotions ORDER BY rowid"
        ).fetchall()
        assert [tuple(a) for a in attempts][-3:] == [(1, 0), (0, 0), (1, 1)]
