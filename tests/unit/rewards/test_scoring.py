"""The scoring rule: accumulation with decay, the significance bar, the evidence split."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from agent.rewards.attribution import block_bootstrap_se
from agent.rewards.payout import split
from agent.rewards.scoring import (
    INACTIVE,
    NEGATIVE,
    NOT_SIGNIFICANT,
    QUARANTINED,
    SIGNIFICANT,
    Standing,
    decay_factor,
    evidence_weights,
    released,
    score_epoch,
    standings,
)


def scores(contributions, errors, previous=None, epoch=5, **kwargs):
    names = list(contributions)
    return score_epoch(
        epoch,
        names,
        contributions,
        errors,
        previous or {},
        significance=kwargs.pop("significance", 2.0),
        half_life_epochs=kwargs.pop("half_life_epochs", 4.0),
        **kwargs,
    )


def test_contributions_accumulate_with_the_half_life_and_their_variances_add() -> None:
    previous = {"a": Standing(0.02, 0.0001, epoch=3)}
    (a,) = scores({"a": 0.01}, {"a": 0.005}, previous, epoch=5)
    keep = 0.5 ** (2 / 4)  # two epochs after the last standing, half-life 4
    assert decay_factor(4.0, 2) == pytest.approx(keep)
    assert a.accumulated == pytest.approx(keep * 0.02 + 0.01)
    assert a.accumulated_se == pytest.approx(math.sqrt(keep**2 * 0.0001 + 0.005**2))
    assert a.z == pytest.approx(a.accumulated / a.accumulated_se)


def test_a_small_persistent_edge_becomes_significant_and_noise_does_not() -> None:
    """φ = 0.8 σ every epoch: not significant at first, significant after a few epochs."""
    previous: dict[str, Standing] = {}
    verdicts = []
    for epoch in range(30):
        (a,) = scores({"a": 0.008}, {"a": 0.01}, previous, epoch=epoch)
        previous = standings([a], epoch)
        verdicts.append(a.verdict)
    assert verdicts[0] == NOT_SIGNIFICANT and verdicts[-1] == SIGNIFICANT
    assert 1 < verdicts.index(SIGNIFICANT) < 10
    # its z tends to 0.8 * sqrt((1 + λ) / (1 - λ)) = 2.71 for λ = 2^(-1/4)
    lam = 0.5**0.25
    assert a.z == pytest.approx(0.8 * math.sqrt((1 + lam) / (1 - lam)), rel=0.01)


def test_verdicts_and_the_demonstrated_part() -> None:
    result = {
        s.name: s
        for s in scores(
            {"strong": 0.05, "weak": 0.01, "bad": -0.02, "silent": 0.0, "cheat": 0.09},
            {"strong": 0.01, "weak": 0.01, "bad": 0.01, "silent": 0.0, "cheat": 0.001},
            inactive=["silent"],
            quarantined=["cheat"],
        )
    }
    assert result["strong"].verdict == SIGNIFICANT
    assert result["strong"].demonstrated == pytest.approx(0.05 - 2 * 0.01)
    assert result["weak"].verdict == NOT_SIGNIFICANT and result["weak"].demonstrated == 0
    assert result["bad"].verdict == NEGATIVE and result["bad"].demonstrated == 0
    assert result["silent"].verdict == INACTIVE
    cheat = result["cheat"]
    assert (cheat.verdict, cheat.accumulated, cheat.demonstrated) == (QUARANTINED, 0.0, 0.0)


def test_the_evidence_split_pays_the_lower_bound_over_the_upper_bound_of_everything() -> None:
    result = scores({"strong": 0.05, "bad": -0.02}, {"strong": 0.01, "bad": 0.01})
    weights, total = evidence_weights(result, 2.0)
    assert weights[0] == Fraction(0.05) - 2 * Fraction(0.01)
    assert total == Fraction(0.05) + 2 * Fraction(0.01) + 2 * Fraction(0.01)  # bad: its se only
    pool = 1_000 * 10**18 + 3
    payout = split(pool, weights, "carry", total)
    assert payout.amounts[0] == math.floor(pool * weights[0] / total)
    assert payout.amounts[1] == 0
    assert payout.paid + payout.carry_out == pool  # nothing lost
    assert payout.amounts[0] / pool == pytest.approx(0.03 / 0.09)  # lower / upper bounds


def test_a_contribution_just_over_the_bar_receives_a_sliver() -> None:
    result = scores({"lucky": 0.0201, "other": 0.001}, {"lucky": 0.01, "other": 0.01})
    weights, total = evidence_weights(result, 2.0)
    payout = split(10**21, weights, "carry", total)
    assert result[0].verdict == SIGNIFICANT
    assert 0 < payout.amounts[0] < 10**21 // 100  # under 1 % of the pool


def test_the_reserve_is_released_a_share_at_a_time_exactly() -> None:
    assert released(10 * 10**21 + 9, 0.1) == 10**21
    assert released(7, 1.0) == 7
    with pytest.raises(ValueError, match="carry_release"):
        released(7, 0.0)


def test_the_block_bootstrap_matches_the_standard_error_of_a_sum_of_iid_bars() -> None:
    rng = np.random.default_rng(0)
    bars = rng.normal(0.0, 0.01, size=(1, 2_000))
    se = block_bootstrap_se(bars, block=24, samples=2_000, seed=1)
    assert se[0] == pytest.approx(0.01 * math.sqrt(2_000), rel=0.1)
    again = block_bootstrap_se(bars, block=24, samples=2_000, seed=1)
    assert np.array_equal(se, again)  # seeded


def test_the_block_bootstrap_sees_dependence_that_single_bars_hide() -> None:
    """A contribution earned in runs of 48 same-sign bars is far less certain than iid bars."""
    rng = np.random.default_rng(3)
    runs = np.repeat(rng.choice([-0.01, 0.01], size=50), 48)[None, :]
    shuffled = rng.permutation(runs[0])[None, :]
    wide = block_bootstrap_se(runs, block=96, samples=1_000, seed=0)[0]
    iid = block_bootstrap_se(shuffled, block=1, samples=1_000, seed=0)[0]
    assert wide > 3 * iid


def test_pure_noise_is_almost_never_paid_over_many_epochs() -> None:
    """The rule on noise: contributions ~ N(0, σ) for 5 strategies, 10 epochs, 3 model seeds.

    Each trial runs the real scoring, evidence split and reserve release; across 400 trials
    no strategy ever receives 5 % of the emission, and on average under 1 % is paid.
    """
    rng = np.random.default_rng(11)
    emission, names = 10**21, [f"noise{i}" for i in range(5)]
    worst_share, paid_share = [], []
    for _ in range(400):
        received = dict.fromkeys(names, 0)
        for _seed in range(3):
            previous: dict[str, Standing] = {}
            reserve = 0
            sigma = dict(zip(names, rng.uniform(0.005, 0.02, len(names)), strict=True))
            for epoch in range(10):
                phi = {n: float(rng.normal(0.0, sigma[n])) for n in names}
                result = scores(phi, sigma, previous, epoch=epoch, half_life_epochs=8.0)
                previous = standings(result, epoch)
                release = released(reserve, 0.1)
                weights, total = evidence_weights(result, 2.0)
                payout = split(emission + release, weights, "carry", total)
                reserve = reserve - release + payout.carry_out
                for score, amount in zip(result, payout.amounts, strict=True):
                    received[score.name] += amount
        emitted = 3 * 10 * emission
        worst_share.append(max(received.values()) / emitted)
        paid_share.append(sum(received.values()) / emitted)
    assert max(worst_share) < 0.05
    assert float(np.mean(paid_share)) < 0.01
