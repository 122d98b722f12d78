"""Time ranges a user gives: parsed within what pandas holds, checked against the data."""

from __future__ import annotations

import pytest

from agent.errors import UsageError
from agent.market.data import check_time_range
from agent.market.schema import parse_time_ms

DAY_MS = 86_400_000
FIRST = 1_704_067_200_000  # 2024-01-01T00:00:00Z
HELD = "X holds candles from 2024-01-01T00:00:00Z to 2024-01-11T00:00:00Z"


def check(start: int | None, end: int | None) -> None:
    check_time_range(
        start, end, first_ms=FIRST, last_ms=FIRST + 10 * DAY_MS, series="X", names=("-s", "-e")
    )


def test_a_range_inside_or_overlapping_the_data_is_accepted() -> None:
    check(None, None)
    check(FIRST - DAY_MS, FIRST + DAY_MS)
    check(FIRST + 9 * DAY_MS, FIRST + 20 * DAY_MS)


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (FIRST + 2 * DAY_MS, FIRST + DAY_MS, "-s 2024-01-03T00:00:00Z is after -e 2024-01-02"),
        (None, FIRST - DAY_MS, "-e 2023-12-31T00:00:00Z is before the data: "),
        (FIRST + 11 * DAY_MS, None, "-s 2024-01-12T00:00:00Z is after the data: "),
    ],
)
def test_a_reversed_or_missing_range_names_the_datas_range(
    start: int | None, end: int | None, expected: str
) -> None:
    with pytest.raises(UsageError) as info:
        check(start, end)
    assert str(info.value).startswith(expected) and str(info.value).endswith(HELD)
    assert info.value.exit_code == 2


@pytest.mark.parametrize("text", ["99999999999999999999", "2300-01-01", "1600-01-01", 1e300])
def test_a_time_pandas_cannot_hold_is_out_of_range_not_an_overflow(text: str | float) -> None:
    with pytest.raises(UsageError, match=r"--start .* is out of range: use a time from 1677"):
        parse_time_ms(text, what="--start")


def test_times_parse_from_iso_dates_and_epoch_milliseconds() -> None:
    assert parse_time_ms("2024-01-01") == parse_time_ms(str(FIRST)) == parse_time_ms(FIRST) == FIRST
    with pytest.raises(UsageError, match="is not a date"):
        parse_time_ms("2024-13-01")
