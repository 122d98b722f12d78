"""A swap's deadline: a window after the latest of the decision's time, the clock and the head."""

from __future__ import annotations

import pytest

from agent.chain.clock import swap_deadline

NOW = 1_800_000_000.25


@pytest.mark.parametrize(
    ("not_before_s", "head_s", "start"),
    [
        (None, None, NOW),  # the wall clock alone
        (NOW - 3_600, NOW - 7_200, NOW),  # an old bar and an idle chain: the clock
        (NOW + 360, None, NOW + 360),  # a decision later than this host's clock
        (None, int(NOW) + 900, int(NOW) + 900),  # a dev chain that mined ahead of the clock
    ],
)
def test_the_deadline_counts_from_the_latest_time(
    not_before_s: float | None, head_s: int | None, start: float
) -> None:
    deadline = swap_deadline(300, now_s=NOW, not_before_s=not_before_s, head_s=head_s)
    assert deadline == int(-(-start // 1)) + 300  # whole seconds, rounded up


def test_a_negative_window_gives_a_deadline_already_passed() -> None:
    assert swap_deadline(-3_600, now_s=NOW) < NOW - 3_000
