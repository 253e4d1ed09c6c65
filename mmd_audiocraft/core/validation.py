"""Predicates the options objects check their fields with (`LossOptions`, `IndeOptions`, the guard's and the
evaluate stage's). A bool is never a number here: YAML's `true` must not pass for 1."""
from __future__ import annotations


def is_number(value) -> bool:
    """An int or a float, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_int_at_least(value, low: int) -> bool:
    """An int (not a bool) >= `low`."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= low
