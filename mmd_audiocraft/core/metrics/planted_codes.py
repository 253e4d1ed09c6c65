"""Synthetic two-codebook codes with a planted dependence, for validating the factorization gap.

Codebook 0 is a sticky Markov chain; codebook 1 copies one chosen source with a fixed probability. Which source
decides which decoding pattern loses the link: a copy of the same frame's z0 is seen by the delay pattern (z0[t]
is emitted a step before z1[t]) and lost by the parallel one; a copy of the previous frame's z1 into z0 ties the
two codes of one delay step, so the delay pattern loses it and the parallel one does not. The exact amounts are
closed-form (tests/test_factorization_gap.py derives them by hand).
"""
from __future__ import annotations

import numpy as np

SOURCES = ("same frame", "previous frame", "z0 copies previous z1")


def planted_chain(items: int, frames: int, source: str, rng: np.random.Generator, card: int = 6,
                  stay: float = 0.6, copy: float = 0.7) -> np.ndarray:
    """Integer codes [items, 2, frames] in [0, card).

    source: "same frame" (z1[t] copies z0[t]), "previous frame" (z1[t] copies z0[t-1]), or "z0 copies previous
    z1" (z1 i.i.d. uniform, z0[t] copies z1[t-1]); a copy happens with probability `copy`, else the code is
    uniform. Outside the last case z0 keeps its previous code with probability `stay`, else is uniform.
    Raises ValueError for an unknown source.
    """
    if source not in SOURCES:
        raise ValueError(f"planted_chain: source={source!r}, expected one of {SOURCES}")
    z = rng.integers(0, card, (items, 2, frames))
    for t in range(1, frames):
        keep = rng.random(items) < stay  # drawn in every case: one random stream per (seed, items, frames)
        if source == "z0 copies previous z1":
            z[:, 0, t] = np.where(rng.random(items) < copy, z[:, 1, t - 1], z[:, 0, t])
            continue
        z[:, 0, t] = np.where(keep, z[:, 0, t - 1], z[:, 0, t])
        src = z[:, 0, t] if source == "same frame" else z[:, 0, t - 1]
        z[:, 1, t] = np.where(rng.random(items) < copy, src, z[:, 1, t])
    return z
