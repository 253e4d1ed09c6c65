"""Samples of the factorized distribution (product of per-codebook marginals) built from joint rows.

Rows are z [n, K, N]: n samples of K codebook vectors of N dims. Shuffling each codebook's block along the
rows with its own permutation breaks the dependence between codebooks while keeping each marginal
(Brakel & Bengio 2017; paper Algorithm 1).
"""
from __future__ import annotations

import torch

from .options import MMD_ESTIMATORS
from .sampling import random_permutation
from .validation import check_tensor


def _check_rows(z: torch.Tensor) -> None:
    check_tensor(z, "z", ("rows", "K", "N"))
    if z.shape[1] < 2:
        raise ValueError(f"z needs K >= 2 codebooks to measure their dependence, got K = {z.shape[1]}")


def shuffle_codebooks(z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Permute each codebook's block of ``z`` [n, K, N] along the rows, one permutation per codebook.

    Returns a new tensor; gradients flow back to ``z`` through the gather.
    """
    _check_rows(z)
    n, k = z.shape[0], z.shape[1]
    index = torch.stack([random_permutation(n, generator, z.device) for _ in range(k)], dim=1)  # [n, K]
    return z[index, torch.arange(k, device=z.device)[None, :]]


def factorized_sample(
    z: torch.Tensor, estimator: str = "paper", generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split rows ``z`` [n, K, N] into (joint, factorized) samples for the MMD estimator.

    - ``"paper"`` (Algorithm 1): joint = all n rows, factorized = :func:`shuffle_codebooks` of the same rows.
      Low variance, but a factorized row can share a codebook block with the joint row it is compared to, so
      the statistic reads slightly low (order K/n) and training can push it below 0.
    - ``"disjoint"``: rows are permuted, the first m = n // (K+1) form the joint sample and the factorized
      sample takes codebook k's blocks from the k-th of K further disjoint chunks of m rows. Every factorized
      row combines K distinct source rows, none used by the joint sample, so for i.i.d. rows the two samples
      are independent i.i.d. draws of P_Z and of the product of marginals and eq. (7) is exactly unbiased.
      Trade-off: each sample has only n/(K+1) rows, hence a higher variance.
    """
    if estimator not in MMD_ESTIMATORS:
        raise ValueError(f"estimator={estimator!r} is unknown; expected one of {MMD_ESTIMATORS}")
    _check_rows(z)
    n, k = z.shape[0], z.shape[1]
    if estimator == "paper":
        if n < 2:
            raise ValueError(f"the paper estimator needs at least 2 rows, got {n}")
        return z, shuffle_codebooks(z, generator)
    m = n // (k + 1)
    if m < 2:
        raise ValueError(
            f"the disjoint estimator needs at least 2 rows per sample, i.e. n >= 2 * (K + 1) = {2 * (k + 1)} "
            f"rows, got n = {n} with K = {k}"
        )
    perm = random_permutation(n, generator, z.device)
    joint = z[perm[:m]]
    chunks = perm[m : (k + 1) * m].view(k, m).T  # [m, K]: codebook c's block comes from chunk c
    factorized = z[chunks, torch.arange(k, device=z.device)[None, :]]
    return joint, factorized
