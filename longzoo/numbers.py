"""Checking numbers where they enter: finite, of the right kind, in range.

Library functions validate their options with these, so that a value that the CLI would
reject (``nan``, ``inf``, ``-1``, ``1e9`` positions) is also rejected when it arrives
from Python or from a recipe.  Messages name the option as the CLI spells it.
"""

from __future__ import annotations

import math

from longzoo.errors import LongzooError


def option_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def _show(value) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"


def _range_text(low, high, open_low: bool, open_high: bool) -> str:
    parts = []
    if low is not None:
        parts.append(f"{'>' if open_low else '>='} {_show(low)}")
    if high is not None:
        parts.append(f"{'<' if open_high else '<='} {_show(high)}")
    return " and ".join(parts)


def require_number(
    name: str,
    value,
    *,
    low: float | None = None,
    high: float | None = None,
    open_low: bool = False,
    open_high: bool = False,
    optional: bool = False,
) -> None:
    """A finite real number within [low, high] (bounds open where asked)."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise LongzooError(f"{option_name(name)} must be a finite number, not {value!r}")
    below = low is not None and (value <= low if open_low else value < low)
    above = high is not None and (value >= high if open_high else value > high)
    if below or above:
        raise LongzooError(
            f"{option_name(name)} must be {_range_text(low, high, open_low, open_high)}, not {_show(value)}"
        )


def require_int(name: str, value, *, low: int | None = None, high: int | None = None, optional: bool = False) -> None:
    """A whole number within [low, high]."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise LongzooError(f"{option_name(name)} must be a whole number, not {value!r}")
    require_number(name, value, low=low, high=high)
