"""Group codec outputs [B, K, T, ...] into rows of codes that a language model predicts at the same step.

The loss should make independent exactly the codes a decoding pattern predicts together (paper section 3):
frame-aligned codes for the parallel pattern, time-shifted codes {Z_k^(s - delay_k)} for the delay pattern.
One rule for both kinds of input: :func:`step_index` says which frame of which codebook each row takes, and
:func:`group_rows` applies it to code vectors z [B, K, T, N] (torch, the loss) and to integer codes [B, K, T]
(numpy or torch, the information measures) alike. Duck-typed audiocraft patterns (``Pattern``:
``.layout``/``.n_q``; providers: ``get_pattern(T)``) are read without importing audiocraft.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import torch

PATTERN_NAMES = ("delay", "parallel")
ONE_CODE_PER_STEP = ("flatten", "unroll")  # audiocraft's names of the exact (joint) decoding
TRIVIAL = ("the codebooks pattern never predicts two or more codebooks at one step (e.g. flattened or unrolled "
           "decoding): the codes predicted at one step are trivially independent, so the independence loss is not "
           "needed for this pattern")


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


def check_pattern_name(pattern) -> None:
    """ValueError for a pattern given by a name other than :data:`PATTERN_NAMES` (one that decodes a code per step
    says why the loss does not apply); any other object is read as an audiocraft Pattern or provider later."""
    if isinstance(pattern, str) and pattern in ONE_CODE_PER_STEP:
        raise ValueError(f"pattern={pattern!r}: {TRIVIAL}")
    if isinstance(pattern, str) and pattern not in PATTERN_NAMES:
        raise ValueError(f"pattern={pattern!r} is unknown; expected one of {PATTERN_NAMES}, an audiocraft "
                         "Pattern or a pattern provider")


def too_few_frames(timesteps: int, codebooks: Sequence[int], need: int) -> ValueError:
    """The one error for inputs too short for a pattern (torch and numpy grouping alike): grouping never
    falls back to the codebooks that fit, which would silently drop the others from the loss and metrics."""
    return ValueError(f"T = {timesteps} frames is too few for the decoding pattern: it predicts codebooks "
                      f"{list(codebooks)} together only from T >= {need} frames")


def _delay_frames(timesteps: int, k: int, delays: Sequence[int] | None) -> np.ndarray:
    """frames [steps, K] of the delay pattern: codebook q at frame s - delays[q] for the LM steps s in
    [max(delays), T + min(delays)), the only ones where every codebook exists (delays may be any integers)."""
    delays = list(range(k)) if delays is None else [int(d) for d in delays]
    if len(delays) != k:
        raise ValueError(f"delays has {len(delays)} entries but the input has K = {k} codebooks")
    hi, lo = max(delays), min(delays)
    steps = timesteps - (hi - lo)
    if steps < 1:
        raise too_few_frames(timesteps, range(k), hi - lo + 1)
    return np.arange(steps)[:, None] + (hi - np.array(delays))[None, :]


def _pattern_steps(pattern, timesteps: int, k: int | None) -> tuple[list[int], list[list[int]], int]:
    """(codebooks, frame index per step and codebook, fewest frames giving a step) for the pattern's most
    common largest multi-codebook step; the steps are those whose frames all lie below `timesteps`.

    The codebook set is chosen over the whole layout, frames or not: a short input gets no step (the caller
    raises), never a smaller set."""
    n_q = getattr(pattern, "n_q", None)
    if k is not None and n_q is not None and n_q != k:
        raise ValueError(f"the pattern has n_q = {n_q} codebooks but the input has K = {k}")
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
        raise ValueError(TRIVIAL)
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


def step_index(pattern, timesteps: int, k: int, delays: Sequence[int] | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Which codes each row of a pattern holds: (codebooks [K'], frames [steps, K']), int64, for an input of
    `k` codebooks and `timesteps` frames. Row s holds codebook codebooks[j] at frame frames[s, j].

    pattern: ``"parallel"`` (frame-aligned), ``"delay"`` (codebook q delayed by ``delays[q]``, default q; only the
    steps where every codebook is present), an audiocraft ``Pattern`` or a pattern provider (the steps that
    predict its most frequent largest set of >= 2 codebooks, in increasing order, whose frames all exist).
    Raises ValueError for an unknown pattern, delays that do not fit, a pattern with one code per step, and an
    input shorter than :func:`min_frames` (no codebook is ever dropped to fit)."""
    if isinstance(pattern, str):
        check_pattern_name(pattern)
        if pattern == "parallel":
            if delays is not None and any(int(d) != 0 for d in delays):
                raise ValueError(f"pattern='parallel' takes no delays, got {list(delays)}")
            return np.arange(k), _delay_frames(timesteps, k, [0] * k)
        return np.arange(k), _delay_frames(timesteps, k, delays)
    if delays is not None:
        raise ValueError("delays only apply to pattern='delay'; a Pattern object carries its own layout")
    if hasattr(pattern, "get_pattern"):
        pattern = pattern.get_pattern(timesteps)
    if not hasattr(pattern, "layout"):
        raise ValueError(f"pattern must be a name, a Pattern (.layout) or a provider (.get_pattern), "
                         f"got {type(pattern).__name__}")
    qs, frames, need = _pattern_steps(pattern, timesteps, k)
    if not frames:
        raise too_few_frames(timesteps, qs, need)
    return np.array(qs, dtype=np.int64), np.array(frames, dtype=np.int64)


def group_rows(x, pattern="delay", delays: Sequence[int] | None = None):
    """Rows [n, K', ...] of x [B, K, T, ...] (a torch tensor or a numpy array: code vectors or integer codes)
    predicted at one LM step, pooled over the batch and the steps, item-major (row b * steps + s), by
    :func:`step_index`. No check of x's values (see :func:`group_by_pattern`)."""
    codebooks, frames = step_index(pattern, x.shape[2], x.shape[1], delays)
    if isinstance(x, torch.Tensor):
        codebooks, frames = torch.as_tensor(codebooks, device=x.device), torch.as_tensor(frames, device=x.device)
    rows = x[:, codebooks[None, :], frames]  # [B, steps, K', ...]
    return rows.reshape(-1, len(codebooks), *x.shape[3:])


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
