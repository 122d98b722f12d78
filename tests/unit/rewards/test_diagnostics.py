"""The pure signal diagnostics of `agora strategies evaluate`: IC, SE, consistency, decay."""

from __future__ import annotations

import numpy as np
import pytest

from agent.rewards.diagnostics import (
    InformationCoefficient,
    WindowIC,
    autocorrelation,
    consistency,
    forward_log_returns,
    half_life,
    information_coefficient,
    overlap,
    ranks,
    signal_diagnostics,
    spearman_ic,
    turnover,
    window_ics,
)

BOOTSTRAP = {"significance": 2.0, "bootstrap_samples": 200, "bootstrap_block_bars": 24}


def market(bars: int = 2000, seed: int = 0) -> np.ndarray:
    log_returns = np.random.default_rng(seed).normal(0.0, 0.01, bars)
    return 100.0 * np.exp(np.cumsum(log_returns))


def test_forward_log_return_is_from_close_t_to_close_t_plus_h() -> None:
    close = np.array([1.0, 2.0, 4.0, 8.0])
    returns = forward_log_returns(close, 2)
    assert np.allclose(returns[:2], np.log(4.0))
    assert np.isnan(returns[2:]).all()


def test_ranks_share_the_average_rank_on_ties() -> None:
    assert ranks(np.array([3.0, 1.0, 3.0, 2.0])).tolist() == [2.5, 0.0, 2.5, 1.0]


def test_ic_of_the_forward_returns_rank_is_one_with_a_small_error() -> None:
    close = market()
    signal = np.tanh(100.0 * forward_log_returns(close, 1))  # same ranks as the return
    ic = information_coefficient(signal, close, 1, **BOOTSTRAP)
    assert ic.ic == pytest.approx(1.0)
    assert ic.se is not None and ic.se < 0.05 and ic.t_stat is not None and ic.t_stat > 20
    assert ic.significant and ic.pairs == len(close) - 1


def test_ic_equals_a_rank_correlation_computed_otherwise() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=500), rng.normal(size=500)
    b = a + rng.normal(size=500)
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    assert spearman_ic(a, b) == pytest.approx(np.corrcoef(ra, rb)[0, 1])


def test_noise_has_no_significant_ic_at_any_horizon() -> None:
    close = market(seed=1)
    noise = np.random.default_rng(7).uniform(-1.0, 1.0, len(close))
    figures = signal_diagnostics(noise, close, **BOOTSTRAP)
    assert [ic.significant for ic in figures.ic] == [False, False, False]
    assert all(abs(ic.ic or 0.0) < 0.1 for ic in figures.ic)
    assert figures.half_life_bars is None


def test_a_weak_planted_signal_is_significant_and_consistent() -> None:
    rng = np.random.default_rng(5)
    close = market(3000, seed=5)
    signal = forward_log_returns(close, 1) + rng.normal(0.0, 0.03, len(close))
    figures = signal_diagnostics(signal, close, **BOOTSTRAP)
    first = figures.at(1)
    assert first.significant and first.ic is not None and first.ic > 0.1
    assert first.t_stat == pytest.approx(first.ic / first.se)
    assert len(figures.windows) == 6 and figures.window_bars == 500
    assert figures.consistency == 1.0


def test_windows_cover_every_bar_and_a_short_tail_joins_the_last_window() -> None:
    close = market(1_100)
    windows = window_ics(np.random.default_rng(0).normal(size=1_100), close, 500)
    assert [(w.first_bar, w.last_bar) for w in windows] == [(0, 499), (500, 1_099)]


def test_consistency_counts_windows_with_the_overall_sign() -> None:
    windows = [WindowIC(0, 1, ic, 50) for ic in (0.1, 0.2, -0.1, None, 0.05)]
    assert consistency(windows, 0.08) == 0.75
    assert consistency(windows, -0.08) == 0.25
    assert consistency(windows, None) is None
    assert consistency([WindowIC(0, 1, None, 3)], 0.1) is None


def ics(*values: float) -> list[InformationCoefficient]:
    return [
        InformationCoefficient(h, v, 0.01, v / 0.01, abs(v / 0.01) > 2, 100)
        for h, v in zip((1, 4, 24), values, strict=True)
    ]


def test_half_life_interpolates_between_horizons() -> None:
    assert half_life(ics(0.2, 0.1, 0.0)) == pytest.approx(4.0)
    assert half_life(ics(0.2, 0.15, 0.05)) == pytest.approx(4.0 + 20.0 * 0.05 / 0.1)
    assert half_life(ics(-0.2, -0.2, 0.1)) == pytest.approx(4.0 + 20.0 * 0.1 / 0.3)
    assert half_life(ics(0.2, 0.2, 0.2)) is None
    assert half_life(ics(0.01, 0.0, 0.0)) is None  # not significant at h = 1


def test_turnover_and_autocorrelation() -> None:
    signal = np.array([np.nan, 0.0, 1.0, 0.0, 0.5])
    assert turnover(signal) == pytest.approx(2.5 / 3)
    wave = np.sin(np.arange(500) / 10.0)
    assert autocorrelation(wave, 1) == pytest.approx(np.cos(0.1), abs=0.01)
    assert autocorrelation(np.ones(500), 1) is None


def test_overlap_names_the_strategy_a_copy_comes_from() -> None:
    rng = np.random.default_rng(2)
    original = rng.normal(size=800)
    copy = 0.9 * original + 0.05 * rng.normal(size=800)
    found = overlap(
        copy, {"original": original, "other": rng.normal(size=800)}, threshold=0.8, lags=3
    )
    assert found.above_threshold and found.r2 > 0.95
    assert found.explained_by == ("original",)
    assert found.alone[0][0] == "original"
