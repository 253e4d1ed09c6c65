"""Entropy, mutual information and total correlation of discrete codes, in bits, with a shuffle-null baseline.

Every estimator works from counts (`CodeCounts`), so it streams over a dataset; every convenience function
also takes raw codes [n, K] and counts only the subsets it needs.

Two estimators: "plugin" (-sum p log2 p of the empirical histogram) and "miller_madow" (plug-in plus
(m - 1) / (2 N ln 2), m = observed bins). Both are biased upwards for mutual information at codec alphabet
sizes (independent uniform 2048-code codebooks give several tenths of a bit or more at 1e5-1e6 frames),
so `shuffle_null` gives the same estimator on per-codebook-shuffled codes: the value expected under exact
independence with the same marginals and sample size. Report raw, null and raw - null.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from .counts import CodeCounts, as_numpy

__all__ = [
    "ENTROPY_ESTIMATORS",
    "entropy_from_counts",
    "plugin_entropy",
    "miller_madow_entropy",
    "joint_entropy",
    "mutual_information",
    "total_correlation",
    "each_vs_rest",
    "shuffle_null",
    "shuffled_counts",
]

ENTROPY_ESTIMATORS = ("plugin", "miller_madow")


def plugin_entropy(counts) -> float:
    """-sum p log2 p of a histogram given as counts (zeros allowed)."""
    c = np.asarray(counts, dtype=np.float64).reshape(-1)
    c = c[c > 0]
    if c.size == 0:
        return 0.0
    n = c.sum()
    # log2 N - sum c log2 c / N: one pass, no per-bin division
    return float(max(math.log2(n) - float(np.dot(c, np.log2(c))) / n, 0.0))


def miller_madow_entropy(counts) -> float:
    """Plug-in entropy plus the Miller-Madow bias correction (m - 1) / (2 N ln 2), m = non-zero bins."""
    c = np.asarray(counts, dtype=np.float64).reshape(-1)
    c = c[c > 0]
    if c.size == 0:
        return 0.0
    return plugin_entropy(c) + (c.size - 1) / (2.0 * c.sum() * math.log(2.0))


_ENTROPY: dict[str, Callable[[np.ndarray], float]] = {
    "plugin": plugin_entropy,
    "miller_madow": miller_madow_entropy,
}


def entropy_from_counts(counts, estimator: str = "plugin") -> float:
    """Entropy in bits of a histogram given as counts, with the chosen estimator."""
    return _ENTROPY[_check_estimator(estimator)](counts)


def _check_estimator(estimator: str) -> str:
    if estimator not in _ENTROPY:
        raise ValueError(f"estimator: expected one of {ENTROPY_ESTIMATORS}, got {estimator!r}")
    return estimator


def _as_subset(x, name: str) -> tuple[int, ...]:
    if isinstance(x, (int, np.integer)):
        return (int(x),)
    try:
        t = tuple(int(i) for i in x)
    except TypeError as err:
        raise ValueError(f"{name}: expected a codebook index or a sequence of them, got {x!r}") from err
    if len(set(t)) != len(t):
        raise ValueError(f"{name}: repeated codebook index in {x!r}")
    return tuple(sorted(t))


def _counts_for(codes_or_counts, bins: int | None, subsets: Sequence[Sequence[int]]) -> CodeCounts:
    """A CodeCounts as is, or raw codes [n, K] counted over just `subsets` (bins defaults to max + 1)."""
    if isinstance(codes_or_counts, CodeCounts):
        if bins is not None and int(bins) != codes_or_counts.bins:
            raise ValueError(f"bins: got {bins} but the counts were made with bins={codes_or_counts.bins}")
        return codes_or_counts
    arr = as_numpy(codes_or_counts)
    if arr.ndim != 2:
        raise ValueError(f"codes: expected integer codes of shape [n, K] or a CodeCounts, got shape "
                         f"{tuple(arr.shape)}")
    if bins is None:
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"codes: expected an integer dtype, got {arr.dtype}")
        bins = int(arr.max()) + 1 if arr.size else 1
    needed = [s for s in subsets if len(s) >= 2]
    return CodeCounts.from_codes(arr, bins, subsets=needed, include_default_subsets=False)


def _check_indices(subset: tuple[int, ...], K: int, name: str) -> None:
    if any(i < 0 or i >= K for i in subset):
        raise ValueError(f"{name}: codebook indices must lie in [0, {K}), got {subset}")


def _subset_counts(codes_or_counts, subset, bins) -> tuple[tuple[int, ...], CodeCounts]:
    """(the checked subset, counts holding it); subset None means all codebooks."""
    if subset is None:
        K = codes_or_counts.num_codebooks if isinstance(codes_or_counts, CodeCounts) \
            else as_numpy(codes_or_counts).shape[-1]
        subset = tuple(range(K))
    s = _as_subset(subset, "subset")
    cc = _counts_for(codes_or_counts, bins, [s])
    _check_indices(s, cc.num_codebooks, "subset")
    return s, cc


def joint_entropy(codes_or_counts, subset: Sequence[int] | int | None = None, estimator: str = "plugin",
                  bins: int | None = None) -> float:
    """H(z_S) in bits; subset None means all codebooks."""
    _check_estimator(estimator)
    s, cc = _subset_counts(codes_or_counts, subset, bins)
    return entropy_from_counts(cc.counts_of(s), estimator)


def mutual_information(codes_or_counts, a: int | Sequence[int], b: int | Sequence[int],
                       estimator: str = "plugin", bins: int | None = None) -> float:
    """I(z_A; z_B) = H(z_A) + H(z_B) - H(z_A, z_B) in bits; a and b are codebooks or disjoint sets of them."""
    _check_estimator(estimator)
    sa, sb = _as_subset(a, "a"), _as_subset(b, "b")
    if set(sa) & set(sb):
        raise ValueError(f"a, b: expected disjoint codebooks, got {sa} and {sb}")
    union = tuple(sorted(sa + sb))
    cc = _counts_for(codes_or_counts, bins, [sa, sb, union])
    _check_indices(union, cc.num_codebooks, "a, b")
    h = lambda s: entropy_from_counts(cc.counts_of(s), estimator)  # noqa: E731
    return h(sa) + h(sb) - h(union)


def total_correlation(codes_or_counts, subset: Sequence[int] | None = None, estimator: str = "plugin",
                      bins: int | None = None) -> float:
    """TC(z_S) = sum_k H(z_k) - H(z_S) in bits (for two codebooks, their mutual information)."""
    _check_estimator(estimator)
    s, cc = _subset_counts(codes_or_counts, subset, bins)
    marg = sum(entropy_from_counts(cc.counts_of((k,)), estimator) for k in s)
    return marg - entropy_from_counts(cc.counts_of(s), estimator)


def each_vs_rest(codes_or_counts, estimator: str = "plugin", bins: int | None = None) -> np.ndarray:
    """[K] array of I(z_k; z_-k) = H(z_k) + H(z_-k) - H(z) in bits (all zeros for K = 1)."""
    _check_estimator(estimator)
    K = codes_or_counts.num_codebooks if isinstance(codes_or_counts, CodeCounts) \
        else as_numpy(codes_or_counts).shape[-1]
    full = tuple(range(K))
    rests = [tuple(j for j in full if j != k) for k in full]
    cc = _counts_for(codes_or_counts, bins, [full, *rests])
    h = lambda s: entropy_from_counts(cc.counts_of(s), estimator)  # noqa: E731
    if K == 1:
        return np.zeros(1)
    h_full = h(full)
    return np.array([h((k,)) + h(rests[k]) - h_full for k in full])


def shuffled_counts(counts: CodeCounts, seed: int | np.random.SeedSequence = 0) -> CodeCounts:
    """Counts of the same marginals with the codebooks made independent by shuffling, same subsets kept.

    A shuffled column is a uniformly random arrangement of that column's multiset of codes, which the marginal
    counts fully describe, so the null streams like everything else. Column 0 is left in sorted order: only
    the relative order of the columns matters for joint counts.
    """
    rng = np.random.default_rng(seed)
    K, M = counts.num_codebooks, counts.bins
    dtype = np.int16 if M <= 2**15 else (np.int32 if M <= 2**31 else np.int64)
    values = np.arange(M, dtype=dtype)
    cols = []
    for k in range(K):
        col = np.repeat(values, counts.marginals[k])
        if k > 0:
            col = rng.permutation(col)
        cols.append(col)
    rows = np.stack(cols, axis=1) if cols and counts.n_frames else np.zeros((0, K), dtype=dtype)
    out = CodeCounts(K, M, subsets=counts.subsets, include_default_subsets=False)
    return out.update(rows)


def shuffle_null(counts: CodeCounts, measure: Callable[[CodeCounts], float | np.ndarray], shuffles: int = 3,
                 seed: int = 0) -> float | np.ndarray:
    """Mean of `measure` over `shuffles` seeded per-codebook shuffles of the counted codes.

    `measure` maps a CodeCounts to a number or array, e.g. `lambda c: mutual_information(c, 0, 1)`.
    """
    if shuffles < 1:
        raise ValueError(f"shuffles: expected >= 1, got {shuffles}")
    seeds = np.random.SeedSequence(seed).spawn(shuffles)
    vals = [np.asarray(measure(shuffled_counts(counts, s)), dtype=np.float64) for s in seeds]
    mean = np.mean(vals, axis=0)
    return float(mean) if mean.ndim == 0 else mean
