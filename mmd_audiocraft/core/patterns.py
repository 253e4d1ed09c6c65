"""Group codec outputs z [B, K, T, N] into rows of codes that a language model predicts at the same step.

The loss should make independent exactly the codes a decoding pattern predicts together (paper section 3):
frame-aligned codes for the parallel pattern, time-shifted codes {Z_k^(s - delay_k)} for the delay pattern.
Duck-typed audiocraft patterns (``Pattern``: ``.layout``/``.n_q``; providers: ``get_pattern(T)``) are read
without importing audiocraft.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import torch

PATTERN_NAMES = ("delay", "parallel")


def check_code_vectors(z: torch.Tensor, name: str = "z") -> None:
    """Validate z [B, K, T, N]: a 4-dim floating tensor with K >= 2 and finite values."""
    if not isinstance(z, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape [B, K, T, N], got {type(z).__name__}")
    if z.dim() != 4:
        raise ValueError(f"{name} must have shape [B, K, T, N] (batch, codebooks, frames, dims), "
                         f"got shape {tuple(z.shape)}")
    if not z.is_floating_point():
        raise ValueError(f"{name} must hold the quantized code vectors (floating point), got dtype {z.dtype}")
    if z.shape[1] < 2:
        raise ValueError(f"{name} needs K >= 2 codebooks to measure their dependence, got K = {z.shape[1]}")
    if min(z.shape) < 1:
        raise ValueError(f"{name} is empty: shape {tuple(z.shape)}")
    if not bool(torch.isfinite(z).all()):
        raise ValueError(f"{name} contains NaN or infinite values")



def too_few_frames(timesteps: int, codebooks: Sequence[int], need: int) -> ValueError:
    """The one error for inputs too short for a pattern (torch and numpy grouping alike): grouping never
    falls back to the codebooks that fit, which would silently drop the others from the loss and metrics."""
    return ValueError(f"T = {timesteps} frames is too few for the decoding pattern: it predicts codebooks "
                      f"{list(codebooks)} together only from T >= {need} frames")


def _delay_rows(z: torch.Tensor, delays: Sequence[int] | None) -> torch.Tensor:
    k, t = z.shape[1], z.shape[2]
    delays = list(range(k)) if delays is None else [int(d) for d in delays]
    if len(delays) != k:
        raise ValueError(f"delays has {len(delays)} entries but z has K = {k} codebooks")
    hi, lo = max(delays), min(delays)
    steps = t - (hi - lo)  # LM steps s in [hi, T + lo) hold every codebook k at frame s - delays[k]
    if steps < 1:
        raise too_few_frames(t, range(k), hi - lo + 1)
    blocks = [z[:, q, hi - d : hi - d + steps] for q, d in enumerate(delays)]  # each [B, steps, N]
    return torch.stack(blocks, dim=2).reshape(-1, k, z.shape[3])


def _pattern_steps(pattern, timesteps: int, k: int | None) -> tuple[list[int], list[list[int]], int]:
    """(codebooks, frame index per step and codebook, fewest frames giving a step) for the pattern's most
    common largest multi-codebook step; the steps are those whose frames all lie below `timesteps`.

    The codebook set is chosen over the whole layout, frames or not: a short input gets no step (the caller
    raises), never a smaller set."""
    n_q = getattr(pattern, "n_q", None)
    if k is not None and n_q is not None and n_q != k:
        raise ValueError(f"the pattern has n_q = {n_q} codebooks but z has K = {k}")
    sets = Counter()
    steps = []
    for coords in pattern.layout:
        qs = tuple(sorted(c.q for c in coords))
        if len(qs) != len(set(qs)):
            raise ValueError(f"a pattern step predicts the same codebook twice: {coords}")
        if len(qs) >= 2:
            sets[qs] += 1
            steps.append((qs, {c.q: c.t for c in coords}))
    if not sets:
        raise ValueError(
            "the codebooks pattern never predicts two or more codebooks at one step (e.g. flattened or unrolled "
            "decoding): the codes predicted at one step are trivially independent, so the independence loss "
            "is not needed for this pattern"
        )
    largest = max(len(qs) for qs in sets)
    chosen = max((qs for qs in sets if len(qs) == largest), key=lambda qs: (sets[qs], [-q for q in qs]))
    frames = [[ts[q] for q in chosen] for qs, ts in steps if qs == chosen]
    need = min(max(f) for f in frames) + 1
    return list(chosen), [f for f in frames if max(f) < timesteps], need


def min_frames(pattern="delay", n_q: int = 2, delays: Sequence[int] | None = None) -> int:
    """Fewest codec frames T from which :func:`group_by_pattern` gives rows (with every codebook the pattern
    predicts together) for `pattern` over `n_q` codebooks: ``max(delays) - min(delays) + 1`` for "delay", 1
    for "parallel"; read from the layout for an audiocraft Pattern or provider. Raises ValueError as
    :func:`group_by_pattern` does for patterns that predict one code per step."""
    if isinstance(pattern, str):
        if pattern == "parallel":
            return 1
        if pattern != "delay":
            raise ValueError(f"pattern={pattern!r} is unknown; expected one of {PATTERN_NAMES}")
        delays = list(range(n_q)) if delays is None else [int(d) for d in delays]
        return max(delays) - min(delays) + 1
    if hasattr(pattern, "get_pattern"):
        pattern = pattern.get_pattern(1)  # the layout lists the steps past T too: enough to read the minimum
    return _pattern_steps(pattern, 0, None)[2]


def group_by_pattern(z: torch.Tensor, pattern="delay", delays: Sequence[int] | None = None) -> torch.Tensor:
    """Rows [n, K', N] of codes predicted at one LM step, pooled over the batch and the steps.

    Args:
        z: quantized code vectors [B, K, T, N].
        pattern: ``"parallel"`` (rows = frames, n = B*T), ``"delay"`` (codebook k delayed by ``delays[k]``,
            default k; only steps where every codebook is present: T - (max - min delay) steps per item, i.e.
            K-1 frames cropped by default), an audiocraft ``Pattern`` or a pattern provider (``get_pattern(T)``
            is called). For a Pattern, the steps predicting the largest set of >= 2 codebooks (the most
            frequent such set) whose frames all exist are used, with the codebooks in increasing order.
            Raises ValueError when T is below :func:`min_frames` (no codebook is ever dropped to fit).
        delays: per-codebook delays for ``"delay"``.

    Row order is item-major: row b * steps + s.
    """
    check_code_vectors(z)
    return group_rows(z, pattern, delays)


def group_rows(z: torch.Tensor, pattern="delay", delays: Sequence[int] | None = None) -> torch.Tensor:
    """:func:`group_by_pattern` without the (synchronising) checks of ``z``, for callers that ran them."""
    k, t = z.shape[1], z.shape[2]
    if isinstance(pattern, str):
        if pattern == "parallel":
            if delays is not None and any(int(d) != 0 for d in delays):
                raise ValueError(f"pattern='parallel' takes no delays, got {list(delays)}")
            return _delay_rows(z, [0] * k)
        if pattern == "delay":
            return _delay_rows(z, delays)
        raise ValueError(f"pattern={pattern!r} is unknown; expected one of {PATTERN_NAMES}, an audiocraft "
                         "Pattern or a pattern provider")
    if delays is not None:
        raise ValueError("delays only apply to pattern='delay'; a Pattern object carries its own layout")
    if hasattr(pattern, "get_pattern"):
        pattern = pattern.get_pattern(t)
    if not hasattr(pattern, "layout"):
        raise ValueError(f"pattern must be a name, a Pattern (.layout) or a provider (.get_pattern), "
                         f"got {type(pattern).__name__}")
    qs, frames, need = _pattern_steps(pattern, t, k)
    if not frames:
        raise too_few_frames(t, qs, need)
    q_index = torch.tensor(qs, device=z.device)
    t_index = torch.tensor(frames, device=z.device, dtype=torch.long)  # [steps, K']
    rows = z[:, q_index[None, :], t_index]  # [B, steps, K', N]
    return rows.reshape(-1, len(qs), z.shape[3])
