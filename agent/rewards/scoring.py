"""From measured contributions to what is paid: accumulation, significance, the evidence split.

Each epoch measures every strategy's contribution φ with a standard error σ (the block
bootstrap, `agent.rewards.attribution`). One epoch is about 500 bars, and most contributions
are noise at that length; so nothing is paid on one epoch alone:

1. **Accumulate with decay.** A strategy's standing after epoch k is
   A_k = λ^g · A_prev + φ_k and V_k = λ^(2g) · V_prev + σ_k², with λ = 2^(-1 / half-life) and g
   the epochs since its previous standing. Epochs are treated as independent, so V is the
   variance of A. A small edge that persists adds up faster than its noise, as Numerai's
   multi-round scores do; an old lucky epoch fades.
2. **Pay only what is distinguishable from zero.** z = A / √V. A strategy is *significant*
   when z > s (`rewards.significance`, default 2); its *demonstrated* contribution is the lower
   confidence bound D = A - s·√V (0 when not significant).
3. **Split the pool by evidence.** Strategy i receives pool · D_i / Σ_j (max(A_j, 0) + s·√V_j):
   its demonstrated contribution over the upper confidence bounds of every contribution that
   could be positive, so a strategy is paid its whole share only when its contribution is
   certain and no one else's could matter. A lucky noise strategy just over the line receives
   a sliver; what is not paid is carried.

The pool itself is the emission, plus a share `rewards.carry_release` of the carried reserve,
plus any profit share. Releasing the reserve gradually keeps a long run of unpaid epochs from
becoming one large prize for the first lucky draw.

Every function here is pure: the ledger reads the previous standings, the epoch computation
passes them in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

SIGNIFICANT, NOT_SIGNIFICANT, NEGATIVE = "significant", "not significant", "negative"
INACTIVE, QUARANTINED = "inactive", "quarantined"
"""A strategy's verdict for an epoch."""


@dataclass(frozen=True)
class Standing:
    """A strategy's accumulated contribution after an epoch.

    Attributes:
        value: the decayed sum of its contributions, A.
        variance: the variance of that sum, V.
        epoch: the epoch it was last updated in.
    """

    value: float
    variance: float
    epoch: int


@dataclass(frozen=True)
class Score:
    """One strategy's measurement in an epoch and where it leaves the strategy.

    Attributes:
        name: the strategy (signal column).
        contribution: this epoch's Shapley value φ.
        std_error: its standard error σ.
        accumulated: the decayed sum A, this epoch included.
        accumulated_se: its standard error √V.
        z: A / √V (0 when V is 0).
        demonstrated: the lower confidence bound A - s·√V when significant, else 0.
        verdict: significant, not significant, negative, inactive or quarantined.
        group: the earliest strategy it was grouped with (itself when not grouped).
        explained_r2: how much of its signal earlier strategies explain (0 when not grouped).
    """

    name: str
    contribution: float
    std_error: float
    accumulated: float
    accumulated_se: float
    z: float
    demonstrated: float
    verdict: str
    group: str
    explained_r2: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Return the score as JSON-ready data."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Score:
        """Rebuild a score from `to_dict` output."""
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def decay_factor(half_life_epochs: float, gap: int) -> float:
    """Return λ^gap with λ = 2^(-1 / half-life): the weight left after `gap` epochs."""
    if half_life_epochs <= 0:
        raise ValueError(f"half-life is {half_life_epochs}; expected > 0")
    return 0.5 ** (max(0, gap) / half_life_epochs)


def score_epoch(
    epoch: int,
    names: Sequence[str],
    contributions: Mapping[str, float],
    std_errors: Mapping[str, float],
    previous: Mapping[str, Standing],
    *,
    significance: float,
    half_life_epochs: float,
    groups: Mapping[str, tuple[str, float]] | None = None,
    inactive: Sequence[str] = (),
    quarantined: Sequence[str] = (),
) -> list[Score]:
    """Return every strategy's score after `epoch` (see the module docstring).

    Args:
        names: every strategy competing, in order.
        contributions: φ of each measured strategy (inactive ones: missing, 0).
        std_errors: σ of each measured strategy.
        previous: each strategy's last standing (from earlier epochs).
        significance: s, the standard errors a contribution must exceed.
        half_life_epochs: the decay's half-life.
        groups: strategy -> (group, R² explained) for the grouped ones.
        inactive: strategies with no signal this epoch (φ = 0, σ = 0; their standing decays).
        quarantined: strategies caught looking ahead: their standing is forfeited.
    """
    scores = []
    for name in names:
        before = previous.get(name)
        keep = 0.0 if before is None else decay_factor(half_life_epochs, epoch - before.epoch)
        phi = float(contributions.get(name, 0.0))
        sigma = float(std_errors.get(name, 0.0))
        value = keep * (before.value if before else 0.0) + phi
        variance = keep * keep * (before.variance if before else 0.0) + sigma * sigma
        group, r2 = (groups or {}).get(name, (name, 0.0))
        if name in quarantined:
            value = variance = 0.0
        se = math.sqrt(variance)
        z = value / se if se > 0 else 0.0
        if name in quarantined:
            verdict = QUARANTINED
        elif value <= 0 and se == 0:
            verdict = INACTIVE if name in inactive else NEGATIVE
        elif value <= 0:
            verdict = NEGATIVE
        else:
            verdict = SIGNIFICANT if se > 0 and z > significance else NOT_SIGNIFICANT
        demonstrated = value - significance * se if verdict == SIGNIFICANT else 0.0
        scores.append(
            Score(name, phi, sigma, value, se, z, max(0.0, demonstrated), verdict, group, r2)
        )
    return scores


def standings(scores: Sequence[Score], epoch: int) -> dict[str, Standing]:
    """Return the standing each score leaves its strategy in after `epoch`."""
    return {
        s.name: Standing(s.accumulated, s.accumulated_se * s.accumulated_se, epoch) for s in scores
    }


def evidence_weights(
    scores: Sequence[Score], significance: float
) -> tuple[list[Fraction], Fraction]:
    """Return (each strategy's demonstrated contribution, the split's denominator), exactly.

    The denominator is Σ (max(A, 0) + s·√V) over every score: the upper confidence bound of
    every contribution that could be positive.
    Each weight is at most its own term, so the weights never add up to more than it.
    """
    weights = [Fraction(s.demonstrated) for s in scores]
    total = sum(
        (Fraction(max(s.accumulated, 0.0)) + Fraction(significance) * Fraction(s.accumulated_se)
         for s in scores),
        Fraction(0),
    )  # fmt: skip
    return weights, max(total, sum(weights, Fraction(0)))


def released(carry_in: int, carry_release: float) -> int:
    """Return the part of the carried reserve released into this epoch's pool (rounded down)."""
    if not 0.0 < carry_release <= 1.0:
        raise ValueError(f"carry_release is {carry_release}; expected (0, 1]")
    return math.floor(carry_in * Fraction(repr(float(carry_release))))  # 0.1 is 1/10 exactly
