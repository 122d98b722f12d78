from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.errors import CandleError
from agent.market.quality import find_gaps, validate_candles

HOUR = 3_600_000


@st.composite
def candle_batches(draw: st.DrawFn, min_size: int = 1, max_size: int = 40) -> pd.DataFrame:
    """Valid candles on the hourly grid, in random order, with some bars left out."""
    n = draw(st.integers(min_size, max_size))
    slots = draw(st.lists(st.integers(0, 200), min_size=n, max_size=n, unique=True))
    rows = []
    for slot in slots:
        o = draw(st.floats(0.01, 1e6))
        c = draw(st.floats(0.01, 1e6))
        low = min(o, c) * draw(st.floats(0.5, 1.0))
        high = max(o, c) * draw(st.floats(1.0, 2.0))
        v = draw(st.floats(0, 1e9))
        rows.append((slot * HOUR, o, high, low, c, v))
    return pd.DataFrame(rows, columns=["open_time", "open", "high", "low", "close", "volume"])


@settings(max_examples=30, deadline=None)
@given(candle_batches())
def test_valid_batches_come_back_sorted_and_complete(batch: pd.DataFrame) -> None:
    clean = validate_candles(batch, HOUR)
    assert clean["open_time"].is_monotonic_increasing
    assert clean["open_time"].is_unique
    assert sorted(batch["open_time"]) == clean["open_time"].tolist()


@settings(max_examples=30, deadline=None)
@given(candle_batches(), st.data())
def test_identical_duplicates_are_dropped(batch: pd.DataFrame, data: st.DataObject) -> None:
    picks = data.draw(st.lists(st.integers(0, len(batch) - 1), min_size=1, max_size=5))
    doubled = pd.concat([batch, batch.iloc[picks]], ignore_index=True)
    clean = validate_candles(doubled, HOUR)
    assert len(clean) == len(batch)


@settings(max_examples=30, deadline=None)
@given(candle_batches(), st.data())
def test_conflicting_duplicate_is_refused_naming_the_row(
    batch: pd.DataFrame, data: st.DataObject
) -> None:
    pick = data.draw(st.integers(0, len(batch) - 1))
    twin = batch.iloc[[pick]].copy()
    twin["volume"] = twin["volume"] + 1.0
    doubled = pd.concat([batch, twin], ignore_index=True)
    with pytest.raises(CandleError, match=f"row {len(batch)}: duplicate open_time"):
        validate_candles(doubled, HOUR)


# breaker -> (column to spoil, the spoiled value from the row, words of the message)
BREAKERS = {
    "nan": ("close", lambda r: np.nan, "close is nan"),
    "inf": ("volume", lambda r: np.inf, "volume is inf"),
    "negative volume": ("volume", lambda r: -1.0, "volume must be >= 0"),
    "zero price": ("open", lambda r: 0.0, "prices must be > 0"),
    "high below close": ("high", lambda r: r["close"] * 0.5, "high"),
    "low above open": ("low", lambda r: max(r["open"], r["close"]) * 1.5, "low"),
    "off grid": ("open_time", lambda r: r["open_time"] + 1, "grid"),
}


@settings(max_examples=40, deadline=None)
@given(candle_batches(), st.data(), st.sampled_from(sorted(BREAKERS)))
def test_any_single_bad_candle_refuses_the_batch_and_names_its_row(
    batch: pd.DataFrame, data: st.DataObject, breaker: str
) -> None:
    pick = data.draw(st.integers(0, len(batch) - 1))
    broken = batch.copy()
    column, spoil, words = BREAKERS[breaker]
    broken[column] = broken[column].astype("float64")
    broken.loc[pick, column] = spoil(batch.loc[pick])
    with pytest.raises(CandleError, match=words) as info:
        validate_candles(broken, HOUR)
    assert info.value.row == pick


def test_missing_column_is_refused() -> None:
    with pytest.raises(CandleError, match="lack column"):
        validate_candles(pd.DataFrame({"open_time": [0]}), HOUR)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 500), min_size=0, max_size=60, unique=True))
def test_gaps_account_for_every_missing_bar(slots: list[int]) -> None:
    times = np.array(sorted(slots), dtype="int64") * HOUR
    gaps = find_gaps(times, HOUR)
    expected_missing = (times[-1] - times[0]) // HOUR + 1 - len(times) if len(times) else 0
    assert sum(g.missing_bars for g in gaps) == expected_missing
    present = set(times.tolist())
    for gap in gaps:
        missing = range(gap.start_ms, gap.end_ms + 1, HOUR)
        assert len(missing) == gap.missing_bars
        assert present.isdisjoint(missing)
        assert gap.start_ms - HOUR in present and gap.end_ms + HOUR in present


def test_the_earliest_conflicting_duplicate_is_named_against_the_first_of_its_time() -> None:
    rows = [
        (3 * HOUR, 10.0, 11.0, 9.0, 10.0, 1.0),  # row 0
        (1 * HOUR, 10.0, 11.0, 9.0, 10.0, 1.0),  # row 1
        (3 * HOUR, 10.0, 11.0, 9.0, 10.0, 2.0),  # row 2: conflicts with row 0, later in time
        (1 * HOUR, 10.0, 11.0, 9.0, 10.0, 1.0),  # row 3: identical to row 1
        (1 * HOUR, 10.0, 12.0, 9.0, 10.0, 1.0),  # row 4: the first conflict in time
        (1 * HOUR, 10.0, 13.0, 9.0, 10.0, 1.0),  # row 5
    ]
    batch = pd.DataFrame(rows, columns=["open_time", "open", "high", "low", "close", "volume"])
    with pytest.raises(CandleError) as info:
        validate_candles(batch, HOUR)
    assert str(info.value) == (
        "row 4: duplicate open_time 1970-01-01T01:00:00Z with prices that conflict with row 1"
    )
    assert info.value.row == 4
    clean = validate_candles(batch.drop(index=[2, 4, 5]), HOUR)
    assert clean["open_time"].tolist() == [HOUR, 3 * HOUR]


def test_many_duplicates_are_resolved_in_one_vectorised_pass() -> None:
    n = 300_000
    unique = pd.DataFrame(
        {
            "open_time": np.arange(n, dtype=np.int64) * HOUR,
            **{c: np.full(n, 10.0) for c in ("open", "high", "low", "close")},
            "volume": np.ones(n),
        }
    )
    doubled = pd.concat([unique, unique.iloc[::3]], ignore_index=True)
    assert len(validate_candles(doubled, HOUR)) == n  # seconds, not minutes (no timing asserted)
