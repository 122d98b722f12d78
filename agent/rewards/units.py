"""Token amounts for people: the reward token's units as tokens, exactly or rounded.

`agora rewards …` and the dashboard print amounts with these, so both show the same figures.
"""

from __future__ import annotations

TOKEN_DECIMALS = 18


def format_units(amount: int, decimals: int = TOKEN_DECIMALS) -> str:
    """Return token units as an exact decimal number of tokens (`1.5` for 1.5e18 units)."""
    whole, fraction = divmod(int(amount), 10**decimals)
    digits = f"{fraction:0{decimals}d}".rstrip("0")
    return f"{whole:,}.{digits}" if digits else f"{whole:,}"


def format_amount(amount: int, decimals: int = TOKEN_DECIMALS) -> str:
    """Return token units as tokens rounded to 2 decimals, for tables (`format_units` is exact)."""
    return f"{int(amount) / 10**decimals:,.2f}"
