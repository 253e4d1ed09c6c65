"""Sparse, mergeable histograms of discrete codes.

Information measures between codebooks need joint histograms, and at codec alphabet sizes a dense table is
out of the question (2048^4 cells for four codebooks). `CodeCounts` keeps, for a fixed number of codebooks K
with M bins each, the dense marginal counts plus the *observed* joint tuples of selected codebook subsets with
their counts, so memory grows with the number of distinct tuples, never with M^K or with the number of frames.
Counts from several batches, files or processes add up with `merge` / `+=`, so estimates stream over a
dataset and stay exactly equal to counting everything at once.

Joint tuples of a subset S are stored as one int64 key per tuple (mixed radix M, first codebook of S most
significant) whenever M^|S| fits in int64; otherwise as the rows themselves (what np.unique(axis=0) gives).
Either way they are sorted, so equal data gives identical arrays in identical order.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

import numpy as np

__all__ = ["CodeCounts", "as_numpy", "codes_to_rows", "default_subsets", "joint_key_fits_int64"]

_INT64_LIMIT = 2**63  # keys must stay <= 2**63 - 1


def as_numpy(x) -> np.ndarray:
    """Array view of a numpy array, a list or a torch tensor (moved to CPU), without importing torch."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def joint_key_fits_int64(bins: int, size: int) -> bool:
    """Whether every tuple of `size` codes in [0, bins) has a distinct int64 mixed-radix key."""
    return int(bins) ** int(size) <= _INT64_LIMIT


def default_subsets(num_codebooks: int) -> tuple[tuple[int, ...], ...]:
    """Subsets the estimators need: all pairs, each "all but k", and the full tuple (size >= 2 only)."""
    K = num_codebooks
    out: set[tuple[int, ...]] = set(itertools.combinations(range(K), 2))
    if K >= 2:
        out.add(tuple(range(K)))
        for k in range(K):
            rest = tuple(j for j in range(K) if j != k)
            if len(rest) >= 2:
                out.add(rest)
    return tuple(sorted(out, key=lambda s: (len(s), s)))


def _check_code_indices(codes, num_codebooks: int, bins: int, name: str = "codes") -> np.ndarray:
    arr = as_numpy(codes)
    if arr.ndim != 2 or arr.shape[1] != num_codebooks:
        raise ValueError(f"{name}: expected integer codes of shape [n, {num_codebooks}] (rows = tuples), "
                         f"got shape {tuple(arr.shape)}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name}: expected an integer dtype, got {arr.dtype}")
    if arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= bins:
            raise ValueError(f"{name}: values must lie in [0, {bins}), got min {lo} and max {hi}")
    return arr.astype(np.int64, copy=False)


def _mixed_radix_key(cols: Sequence[np.ndarray], bins: int) -> np.ndarray:
    key = np.array(cols[0], dtype=np.int64, copy=True)
    for c in cols[1:]:
        key *= bins
        key += c
    return key


def _lexicographic_ids(cols: Sequence[np.ndarray], bins: int) -> np.ndarray:
    """An int64 id per row whose order is the lexicographic order of the rows, for any number of columns.

    Columns are folded in mixed radix; before the key would overflow, the prefix is replaced by its rank among
    the distinct prefixes (np.unique's inverse, which preserves order), so ids stay below n * bins.
    """
    key = np.array(cols[0], dtype=np.int64, copy=True)
    span = bins  # key < span
    for c in cols[1:]:
        if span * bins > _INT64_LIMIT:
            uniq, key = np.unique(key, return_inverse=True)
            key = key.reshape(-1).astype(np.int64, copy=False)
            span = max(len(uniq), 1)
        key = key * bins + c
        span *= bins
    return key


def _count_subset(cols: Sequence[np.ndarray], bins: int) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct keys or rows, counts) of the tuples formed by `cols`."""
    if joint_key_fits_int64(bins, len(cols)):
        keys, counts = np.unique(_mixed_radix_key(cols, bins), return_counts=True)
        return keys, counts.astype(np.int64, copy=False)
    ids = _lexicographic_ids(cols, bins)
    _, first, counts = np.unique(ids, return_index=True, return_counts=True)
    rows = np.stack([np.asarray(c)[first] for c in cols], axis=1).astype(np.int64, copy=False)
    return rows, counts.astype(np.int64, copy=False)


def _sum_duplicates(keys: np.ndarray, counts: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Re-aggregate concatenated (keys or rows, counts) pairs into sorted distinct entries."""
    if keys.ndim == 1:
        uniq, inverse = np.unique(keys, return_inverse=True)
        out_keys = uniq
    else:
        ids = _lexicographic_ids([keys[:, j] for j in range(keys.shape[1])], bins)
        uniq, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
        out_keys = keys[first]
    inverse = inverse.reshape(-1)
    # float64 sums are exact for totals below 2**53 frames
    summed = np.bincount(inverse, weights=counts.astype(np.float64), minlength=len(uniq))
    return out_keys, np.rint(summed).astype(np.int64)


class CodeCounts:
    """Marginal and sparse joint counts of K codebooks with `bins` codes each, accumulated over batches.

    `subsets` adds joint histograms for extra codebook subsets; with `include_default_subsets` (the default)
    all pairs, each "all but k" and the full tuple are kept, which is everything `independence_report` uses.
    """

    def __init__(self, num_codebooks: int, bins: int, subsets: Iterable[Sequence[int]] | None = None,
                 include_default_subsets: bool = True):
        if int(num_codebooks) < 1:
            raise ValueError(f"num_codebooks: expected >= 1, got {num_codebooks}")
        if int(bins) < 1:
            raise ValueError(f"bins: expected >= 1, got {bins}")
        self.num_codebooks = int(num_codebooks)
        self.bins = int(bins)
        chosen: set[tuple[int, ...]] = set(default_subsets(self.num_codebooks)) if include_default_subsets \
            else set()
        for s in subsets or ():
            chosen.update(self._normalise_subsets([s]))
        self.subsets: tuple[tuple[int, ...], ...] = tuple(sorted(chosen, key=lambda s: (len(s), s)))
        self.n_frames = 0
        self.marginals = np.zeros((self.num_codebooks, self.bins), dtype=np.int64)
        empty_rows = {s: np.zeros((0,) if joint_key_fits_int64(self.bins, len(s)) else (0, len(s)),
                                  dtype=np.int64) for s in self.subsets}
        self._joint: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray]] = {
            s: (empty_rows[s], np.zeros(0, dtype=np.int64)) for s in self.subsets}

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_codes(cls, codes, bins: int, subsets: Iterable[Sequence[int]] | None = None,
                   include_default_subsets: bool = True) -> CodeCounts:
        """Count codes [n, K] in one go."""
        arr = as_numpy(codes)
        if arr.ndim != 2:
            raise ValueError(f"codes: expected integer codes of shape [n, K], got shape {tuple(arr.shape)}")
        out = cls(arr.shape[1], bins, subsets=subsets, include_default_subsets=include_default_subsets)
        return out.update(arr)

    def _normalise_subsets(self, subsets) -> list[tuple[int, ...]]:
        out = []
        for s in subsets:
            t = tuple(sorted({int(i) for i in s}))
            if any(i < 0 or i >= self.num_codebooks for i in t):
                raise ValueError(f"subsets: codebook indices must lie in [0, {self.num_codebooks}), got {s}")
            if len(t) >= 2:  # single codebooks are the marginals, always kept
                out.append(t)
        return out

    def update(self, codes) -> CodeCounts:
        """Add codes [n, K] (each row one tuple of codes predicted together). Returns self."""
        arr = _check_code_indices(codes, self.num_codebooks, self.bins)
        if arr.shape[0] == 0:
            return self
        cols = [np.ascontiguousarray(arr[:, k]) for k in range(self.num_codebooks)]
        for k, c in enumerate(cols):
            self.marginals[k] += np.bincount(c, minlength=self.bins)
        for s in self.subsets:
            keys, counts = _count_subset([cols[i] for i in s], self.bins)
            old_keys, old_counts = self._joint[s]
            if len(old_counts):
                keys, counts = _sum_duplicates(np.concatenate([old_keys, keys]),
                                               np.concatenate([old_counts, counts]), self.bins)
            self._joint[s] = (keys, counts)
        self.n_frames += arr.shape[0]
        return self

    def merge(self, other: CodeCounts) -> CodeCounts:
        """Add the counts of `other` (same K, bins and subsets) into self. Returns self."""
        if not isinstance(other, CodeCounts):
            raise ValueError(f"other: expected a CodeCounts, got {type(other).__name__}")
        if (other.num_codebooks, other.bins) != (self.num_codebooks, self.bins):
            raise ValueError(f"other: expected K={self.num_codebooks}, bins={self.bins}, "
                             f"got K={other.num_codebooks}, bins={other.bins}")
        if other.subsets != self.subsets:
            raise ValueError(f"other: subsets differ ({other.subsets} vs {self.subsets})")
        self.marginals += other.marginals
        for s in self.subsets:
            k1, c1 = self._joint[s]
            k2, c2 = other._joint[s]
            if len(c2) == 0:
                continue
            if len(c1) == 0:
                self._joint[s] = (k2.copy(), c2.copy())
            else:
                self._joint[s] = _sum_duplicates(np.concatenate([k1, k2]), np.concatenate([c1, c2]),
                                                 self.bins)
        self.n_frames += other.n_frames
        return self

    def __iadd__(self, other: CodeCounts) -> CodeCounts:
        return self.merge(other)

    def __add__(self, other: CodeCounts) -> CodeCounts:
        return self.copy().merge(other)

    def copy(self) -> CodeCounts:
        out = CodeCounts(self.num_codebooks, self.bins, subsets=self.subsets, include_default_subsets=False)
        out.n_frames = self.n_frames
        out.marginals = self.marginals.copy()
        out._joint = {s: (k.copy(), c.copy()) for s, (k, c) in self._joint.items()}
        return out

    # ---------------------------------------------------------------- access
    def has_subset(self, subset: Sequence[int]) -> bool:
        t = tuple(sorted({int(i) for i in subset}))
        return len(t) <= 1 or t in self._joint

    def joint(self, subset: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(sorted distinct keys [u] or rows [u, |S|], counts [u]) of a kept subset, codebooks ascending."""
        t = tuple(sorted({int(i) for i in subset}))
        if t not in self._joint:
            raise ValueError(f"subset: joint counts of codebooks {t} were not kept; construct CodeCounts "
                             f"with subsets=[{t}] (kept: {self.subsets})")
        return self._joint[t]

    def counts_of(self, subset: Sequence[int]) -> np.ndarray:
        """Non-zero counts of the joint histogram of `subset` (a marginal for one codebook, [n] for none)."""
        t = tuple(sorted({int(i) for i in subset}))
        if len(t) == 0:
            return np.array([self.n_frames], dtype=np.int64) if self.n_frames else np.zeros(0, np.int64)
        if len(t) == 1:
            m = self.marginals[t[0]]
            return m[m > 0]
        return self.joint(t)[1]

    def distinct(self, subset: Sequence[int]) -> int:
        """Number of distinct observed tuples of `subset`."""
        return int(len(self.counts_of(subset)))

    def nbytes(self) -> int:
        return int(self.marginals.nbytes + sum(k.nbytes + c.nbytes for k, c in self._joint.values()))

    def __repr__(self) -> str:
        return (f"CodeCounts(num_codebooks={self.num_codebooks}, bins={self.bins}, n_frames={self.n_frames}, "
                f"subsets={len(self.subsets)}, nbytes={self.nbytes()})")


def codes_to_rows(codes, pattern="parallel", delays: Sequence[int] | None = None) -> np.ndarray:
    """Integer codes [B, K, T] (numpy or torch) -> rows [n, K'] int64 of the tuples an LM predicts together.

    The grouping of :func:`mmd_audiocraft.core.patterns.group_rows`, the loss's own (same steps, same order,
    same errors): "parallel" gives frame-aligned tuples, n = B * T; "delay" MusicGen's delay pattern, codebook k
    shifted by delays[k] frames (default k), only the steps where all K codes exist, n = B * (T - max + min
    delay); an audiocraft Pattern or provider the codebooks its steps predict together (K' <= K). Item-major.
    Raises ValueError for codes that are not [B, K, T] integers, or as the grouping does.
    """
    from ..patterns import group_rows

    arr = as_numpy(codes)
    if arr.ndim != 3:
        raise ValueError(f"codes: expected shape [B, K, T], got shape {tuple(arr.shape)}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"codes: expected an integer dtype, got {arr.dtype}")
    return np.ascontiguousarray(group_rows(arr.astype(np.int64, copy=False), pattern, delays))
