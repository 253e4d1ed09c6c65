"""The factorization gap: how many bits a decoding pattern loses by predicting a step's codes in parallel.

A language model with a multi-code pattern (MusicGen's delay, or parallel) predicts the codes of one step,
g = (g_0, ..., g_{K-1}), as a product of per-code conditionals given the past steps. The best such model
pays, per step, the conditional total correlation

    C = sum_j H(g_j | past) - H(g | past) = sum_{j >= 1} I(g_j ; g_0..g_{j-1} | past)       (bits per step)

more than an exact one (flatten/unroll), which is what the independence loss exists to shrink (the paper's
section 3 argument; its unconditional TC is a proxy that also counts dependence the past explains away).

Estimated without an LM's training difficulty: for each position j >= 1 of the step two predictors of the
same architecture are trained to convergence (early stopping on a validation split) on the same codes. Both
see the codes of the `context` previous steps; the *chain* predictor also sees g_0..g_{j-1} in K-1 same-step
slots, the *factorized* one a mask token in those slots. The gap at j is the difference of their held-out
cross-entropies (bits), an estimate of I(g_j ; g_<j | past) up to the predictors' capacity and data; it is 0
at j = 0 by definition. The spread is the standard deviation over seeds (initialisation and batch order).
The sum over j does not depend on the order of the codes in the step; its split over positions does (codes
are taken in increasing codebook order, as the delay pattern emits them).

Plain torch and numpy: nothing from audiocraft.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from .counts import as_numpy, codes_to_rows

__all__ = ["GapOptions", "step_codes", "factorization_gap", "split_by_index", "entropy_bits", "format_gap_bits"]

LN2 = math.log(2.0)
CONVERGED_SLACK_BITS = 0.02  # a predictor scoring worse than the test codes' unigram entropy by more has not fit


@dataclasses.dataclass(frozen=True)
class GapOptions:
    """Predictor architecture and training (the same for both predictors of a position)."""

    context: int = 4          # previous steps each predictor sees (all their codes)
    embed: int = 16           # embedding size of one code in one slot
    hidden: int = 256         # width of the two hidden layers
    batch_size: int = 512
    lr: float = 2e-3
    weight_decay: float = 1e-4
    max_epochs: int = 60
    patience: int = 4         # epochs without a better validation cross-entropy before stopping
    max_steps: int | None = 200_000  # fit steps used at most (a uniform subset), to bound the cost
    seeds: tuple = (0, 1)

    def __post_init__(self):
        for key in ("context", "embed", "hidden", "batch_size", "max_epochs", "patience"):
            if int(getattr(self, key)) < 1:
                raise ValueError(f"GapOptions.{key}={getattr(self, key)!r}: expected a positive integer")
        if not self.seeds:
            raise ValueError("GapOptions.seeds is empty: expected at least one seed")


def step_codes(codes, pattern: str = "delay", delays: Sequence[int] | None = None) -> list[np.ndarray]:
    """Codes of each item in pattern-step order: a list of int64 arrays [S_i, K] (one per item).

    Args:
        codes: integer codes [B, K, T] (one array, numpy or torch) or a sequence of such arrays (items of
            different lengths), as `model.encode` returns them.
        pattern, delays: as `codes_to_rows` ("delay": step s holds codebook k of frame s - delays[k]; only
            complete steps, T - max + min delay per item; "parallel": steps are frames).
    Raises ValueError as `codes_to_rows` does (wrong shape or dtype, too few frames for the pattern).
    """
    arrays = [codes] if hasattr(codes, "shape") else list(codes)
    out = []
    for arr in arrays:
        arr = as_numpy(arr)
        rows = codes_to_rows(arr, pattern, delays)  # [B * S, K], item-major
        b, k = arr.shape[0], rows.shape[1]
        out.extend(rows.reshape(b, -1, k).astype(np.int64))
    return out


def entropy_bits(counts: np.ndarray) -> float:
    """Plug-in entropy (bits) of a histogram."""
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def split_by_index(items: Sequence, folds: int = 5) -> tuple[list, list, list]:
    """(fit, valid, test) lists of `items`: item i goes to test if i % folds == folds-1, valid if folds-2, else
    fit. For measuring on one data set; held-out splits by track are better when the data has them."""
    if len(items) < 3:
        raise ValueError(f"need at least 3 items (segments) to split into fit/valid/test, got {len(items)}")
    folds = min(int(folds), len(items))
    fit = [x for i, x in enumerate(items) if i % folds < folds - 2]
    valid = [x for i, x in enumerate(items) if i % folds == folds - 2]
    test = [x for i, x in enumerate(items) if i % folds == folds - 1]
    return fit, valid, test


def _examples(steps: list[np.ndarray], context: int) -> np.ndarray:
    """[n, context + 1, K] windows: `context` previous steps then the step itself, every step with a full
    window (the first `context` steps of each item are only context)."""
    windows = [np.lib.stride_tricks.sliding_window_view(s, (context + 1, s.shape[1]))[:, 0]
               for s in steps if s.shape[0] > context]
    if not windows:
        raise ValueError(f"no item has more than context={context} steps: nothing to predict")
    return np.concatenate(windows)


class _Predictor(nn.Module):
    """p(g_j | context steps, same-step slots): one embedding table per slot, two hidden layers."""

    def __init__(self, slots: int, card: int, opts: GapOptions):
        super().__init__()
        self.card = card
        self.embedding = nn.Embedding(slots * (card + 1), opts.embed)
        self.register_buffer("offsets", torch.arange(slots) * (card + 1), persistent=False)
        self.net = nn.Sequential(nn.Linear(slots * opts.embed, opts.hidden), nn.GELU(),
                                 nn.Linear(opts.hidden, opts.hidden), nn.GELU(), nn.Linear(opts.hidden, card))

    def forward(self, slots: torch.Tensor) -> torch.Tensor:  # slots [n, slots] in [0, card] -> logits [n, card]
        return self.net(self.embedding(slots + self.offsets).flatten(1))


def _inputs(windows: np.ndarray, j: int, chain: bool, card: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Slots [n, context*K + K-1] and targets [n] for position j; mask token = card."""
    n, _, k = windows.shape
    past = windows[:, :-1].reshape(n, -1)
    same = np.full((n, k - 1), card, dtype=np.int64)
    if chain:
        same[:, :j] = windows[:, -1, :j]
    return torch.from_numpy(np.concatenate([past, same], axis=1)), torch.from_numpy(windows[:, -1, j].copy())


def _cross_entropy_bits(model: _Predictor, x: torch.Tensor, y: torch.Tensor, batch: int = 8192) -> float:
    model.eval()
    total = 0.0
    with torch.no_grad():
        for i in range(0, len(y), batch):
            total += float(nn.functional.cross_entropy(model(x[i:i + batch]), y[i:i + batch], reduction="sum"))
    return total / len(y) / LN2


def _fit(x, y, vx, vy, card: int, opts: GapOptions, seed: int) -> _Predictor:
    """Train to the best validation cross-entropy (early stopping); returns the best model."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _Predictor(x.shape[1], card, opts)
    gen = torch.Generator().manual_seed(seed)
    optim = torch.optim.AdamW(model.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
    best, best_state, waited = math.inf, None, 0
    for _ in range(opts.max_epochs):
        model.train()
        for idx in torch.randperm(len(y), generator=gen).split(opts.batch_size):
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
        ce = _cross_entropy_bits(model, vx, vy)
        if ce < best - 1e-4:
            best, waited = ce, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            waited += 1
            if waited >= opts.patience:
                break
    model.load_state_dict(best_state)
    return model


def factorization_gap(fit, test, card: int, *, valid=None, pattern: str = "delay",
                      delays: Sequence[int] | None = None, options: GapOptions | None = None,
                      progress=None) -> dict:
    """Estimate the bits per step a pattern's parallel prediction loses on these codes (module docstring).

    Args:
        fit, valid, test: codes [B, K, T] or sequences of them (see `step_codes`): predictors are trained on
            `fit`, stopped on `valid` (default: every 10th item of `fit`, taken out of it) and scored on `test`.
        card: codebook size M (codes in [0, M)).
        pattern, delays: the decoding pattern whose steps are measured ("delay" or "parallel").
        options: predictors and training (`GapOptions`); `options.seeds` sets the spread.
        progress: optional callable(str) told about each trained predictor (for progress bars).

    Returns a JSON-ready dict, bits per step (a step is one frame of audio for both patterns, up to K-1 steps
    per item for delay):
        total_bits, spread_bits          sum over positions of the mean gap; std over seeds (0 for one seed)
        per_codebook_bits, per_codebook_spread_bits   [K] (position j = codebook j; 0 at j = 0)
        factorized_ce_bits, chain_ce_bits             [K] held-out cross-entropies (mean over seeds; None at 0)
        test_entropy_bits              [K] plug-in entropy of each position's test codes (a predictor's ceiling)
        converged                      every predictor scored at most 0.02 bits above that ceiling: False
                                       means under-trained predictors (too little data or too few epochs),
                                       whose difference is not an information value
        seeds, fit_steps, valid_steps, test_steps, context_steps, pattern, delays
    Raises ValueError for codes outside [0, card), K < 2, or too little data.
    """
    opts = options or GapOptions()
    fit_steps, test_steps = step_codes(fit, pattern, delays), step_codes(test, pattern, delays)
    if valid is None:
        valid_steps = fit_steps[9::10]
        fit_steps = [s for i, s in enumerate(fit_steps) if i % 10 != 9]
    else:
        valid_steps = step_codes(valid, pattern, delays)
    windows = {}
    for name, steps in (("fit", fit_steps), ("valid", valid_steps), ("test", test_steps)):
        if not steps:
            raise ValueError(f"{name} codes: no items (the validation split needs >= 10 fit items when not given)")
        w = _examples(steps, opts.context)
        if w.min() < 0 or w.max() >= card:
            raise ValueError(f"{name} codes lie in [{w.min()}, {w.max()}], outside [0, card={card})")
        windows[name] = w
    k = windows["fit"].shape[2]
    if k < 2:
        raise ValueError(f"codes have K = {k} codebook per step: the gap needs K >= 2")
    if opts.max_steps is not None and len(windows["fit"]) > opts.max_steps:
        keep = np.random.default_rng(0).choice(len(windows["fit"]), opts.max_steps, replace=False)
        windows["fit"] = windows["fit"][np.sort(keep)]
    ce = {"factorized": np.zeros((len(opts.seeds), k)), "chain": np.zeros((len(opts.seeds), k))}
    for s, seed in enumerate(opts.seeds):
        for j in range(1, k):
            for variant in ("factorized", "chain"):
                data = {n: _inputs(w, j, variant == "chain", card) for n, w in windows.items()}
                model = _fit(*data["fit"], *data["valid"], card, opts, seed=int(seed) * 1000 + j)
                ce[variant][s, j] = _cross_entropy_bits(model, *data["test"])
                if progress is not None:
                    progress(f"seed {seed} codebook {j} {variant}: {ce[variant][s, j]:.3f} bits")
    target = windows["test"][:, -1]  # [n, K]
    unigram = [entropy_bits(np.bincount(target[:, j], minlength=card)) for j in range(k)]
    worst = max(ce[v][:, j].max() - unigram[j] for v in ce for j in range(1, k))
    gaps = ce["factorized"] - ce["chain"]  # [seeds, K]; column 0 is 0 (nothing before g_0 in its step)
    totals = gaps.sum(axis=1)
    ddof = 1 if len(opts.seeds) > 1 else 0
    return {
        "total_bits": float(totals.mean()), "spread_bits": float(totals.std(ddof=ddof)),
        "per_codebook_bits": gaps.mean(axis=0).tolist(),
        "per_codebook_spread_bits": gaps.std(axis=0, ddof=ddof).tolist(),
        "factorized_ce_bits": [None] + ce["factorized"].mean(axis=0)[1:].tolist(),
        "chain_ce_bits": [None] + ce["chain"].mean(axis=0)[1:].tolist(),
        "seeds": [int(s) for s in opts.seeds], "fit_steps": len(windows["fit"]),
        "valid_steps": len(windows["valid"]), "test_steps": len(windows["test"]),
        "context_steps": opts.context, "pattern": pattern, "test_entropy_bits": unigram,
        "converged": bool(worst <= CONVERGED_SLACK_BITS),
        "delays": None if delays is None else [int(d) for d in delays],
    }


def format_gap_bits(bits: float, fmt: str = ".3f") -> str:
    """A gap estimate as a summary table shows it: "<=0" when it is not above zero (the two predictors' held-out
    CEs differ only by their noise: no dependence detected), never a negative amount of information."""
    return "<=0" if bits <= 0 else format(bits, fmt)
