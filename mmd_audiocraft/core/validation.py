"""The checks of inputs and options shared by the math and the options objects (`LossOptions`, `IndeOptions`, the
guard's and the evaluate stage's). A bool is never a number here: YAML's `true` must not pass for 1."""
from __future__ import annotations

from collections.abc import Sequence

import torch


def check_tensor(value, name: str, dims: Sequence[str]) -> None:
    """ValueError naming `name` unless `value` is a torch.Tensor with one axis per entry of `dims` (their names,
    e.g. ("rows", "d"), for the message)."""
    layout = f"[{', '.join(dims)}]"
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape {layout}, got {type(value).__name__}")
    if value.dim() != len(dims):
        raise ValueError(f"{name} must have shape {layout}, got shape {tuple(value.shape)}")


def is_number(value) -> bool:
    """An int or a float, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_int_at_least(value, low: int) -> bool:
    """An int (not a bool) >= `low`."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= low
