"""One JSON-ready summary of how independent (and how healthy) a codec's codebooks are.

`independence_report(counts)` returns a dict whose keys are stable and carry their unit (`_bits`, `_pct_...`);
undefined ratios (a zero denominator) are None. Schema (version 1):

    schema_version        1
    estimator             "plugin" | "miller_madow" (entropy estimator used throughout)
    n_frames, num_codebooks, bins, null_shuffles, seed
    normalisations        {"pct_joint": ..., "pct_marginal_sum": ...}  what each % divides by
    usage                 [{codebook, entropy_bits, max_entropy_bits, used_codes, used_fraction, perplexity}]
    pairwise              [{a, b, raw_bits, null_bits, corrected_bits, joint_entropy_bits,
                            marginal_entropy_sum_bits, joint_distinct_fraction, raw_pct_joint,
                            null_pct_joint, corrected_pct_joint, raw_pct_marginal_sum,
                            null_pct_marginal_sum, corrected_pct_marginal_sum}]
                          I(z_a; z_b) for every pair a < b
    each_vs_rest          [{codebook, raw_bits, null_bits, corrected_bits, entropy_bits,
                            joint_distinct_fraction}]
                          I(z_k; z_-k), the quantity of the paper's appendix E (Figures 4 and 5)
    total_correlation     {codebooks, raw_bits, null_bits, corrected_bits, joint_entropy_bits,
                           marginal_entropy_sum_bits, joint_distinct_fraction, raw_pct_joint, ...,
                           corrected_pct_marginal_sum}
                          sum_k H(z_k) - H(z_0..z_{K-1}) over all K codebooks
    protocol              {pairs, raw_bits, null_bits, corrected_bits, raw_pct_joint, null_pct_joint,
                           corrected_pct_joint, raw_pct_marginal_sum, null_pct_marginal_sum,
                           corrected_pct_marginal_sum} or None when K < 2
                          the paper's Section 5.1 number: TC of two random codebooks, averaged over
                          `protocol_pairs` seeded pairs (all distinct while possible); the paper quotes
                          raw_pct_joint (the mean over pairs of 100 * TC / H(joint))

joint_distinct_fraction (distinct observed tuples / n_frames of the joint histogram the record relies on)
flags saturation: near 1, almost every tuple is seen once, the joint entropy reads log2(n_frames) whatever
the truth, and raw, null and corrected values carry no information about dependence; count more frames.

raw is the estimate on the data; null the same estimator on per-codebook-shuffled codes (mean over
`null_shuffles` seeded shuffles; None when null_shuffles = 0); corrected = raw - null. Every percentage of a
quantity uses the *data's* denominator (the raw joint entropy, or the sum of the marginal entropies), so
corrected_pct = raw_pct - null_pct holds exactly, as corrected_bits = raw_bits - null_bits does.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from .counts import CodeCounts, as_numpy
from .information import _check_estimator, entropy_from_counts, shuffled_counts

__all__ = ["SCHEMA_VERSION", "NORMALISATIONS", "independence_report", "codebook_usage"]

SCHEMA_VERSION = 1
NORMALISATIONS = {
    "pct_joint": "100 * TC / H(joint of the same codebooks): the ratio the paper's text describes",
    "pct_marginal_sum": "100 * TC / sum_k H(z_k): the ratio the authors' research code computed",
}


def codebook_usage(codes_or_counts, bins: int | None = None, estimator: str = "plugin") -> list[dict]:
    """Per codebook entropy_bits, max_entropy_bits, used_codes, used_fraction and perplexity (2**entropy).

    Takes a CodeCounts, codes [n, K] or a batch of codes [B, K, T] (numpy or torch); cheap enough for a
    training step's metrics (one bincount). `bins` is required for raw codes.
    """
    _check_estimator(estimator)
    if isinstance(codes_or_counts, CodeCounts):
        marg, M = codes_or_counts.marginals, codes_or_counts.bins
    else:
        if bins is None:
            raise ValueError("bins: required when passing raw codes")
        M = int(bins)
        arr = as_numpy(codes_or_counts)
        if arr.ndim == 2:
            arr = arr.T  # [K, n]
        elif arr.ndim == 3:
            arr = arr.transpose(1, 0, 2).reshape(arr.shape[1], -1)  # [K, B*T]
        else:
            raise ValueError(f"codes: expected shape [n, K] or [B, K, T], got shape {tuple(arr.shape)}")
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"codes: expected an integer dtype, got {arr.dtype}")
        if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= M):
            raise ValueError(f"codes: values must lie in [0, {M}), got min {int(arr.min())} and max "
                             f"{int(arr.max())}")
        K = arr.shape[0]
        offset = (np.arange(K, dtype=np.int64) * M)[:, None]
        marg = np.bincount((arr.astype(np.int64) + offset).ravel(), minlength=K * M).reshape(K, M)
    out = []
    for k, m in enumerate(marg):
        h = entropy_from_counts(m, estimator)
        used = int(np.count_nonzero(m))
        out.append({"codebook": k, "entropy_bits": h, "max_entropy_bits": math.log2(M), "used_codes": used,
                    "used_fraction": used / M, "perplexity": 2.0 ** h})
    return out


def _entropies(cc: CodeCounts, estimator: str) -> dict[tuple[int, ...], float]:
    subsets = [(k,) for k in range(cc.num_codebooks)] + list(cc.subsets)
    return {s: entropy_from_counts(cc.counts_of(s), estimator) for s in subsets}


def _pct(num: float | None, den: float) -> float | None:
    if num is None or not den > 0:
        return None
    return 100.0 * num / den


def _sub(a: float, b: float | None) -> float | None:
    return None if b is None else a - b


def _tc_record(subset, h_raw, h_null, counts: CodeCounts) -> dict:
    """Raw/null/corrected TC of `subset` in bits and both percentages (data's denominators)."""
    marg_sum = sum(h_raw[(k,)] for k in subset)
    joint = h_raw[subset]
    raw = marg_sum - joint
    null = None if h_null is None else sum(h_null[(k,)] for k in subset) - h_null[subset]
    corr = _sub(raw, null)
    rec = {"raw_bits": raw, "null_bits": null, "corrected_bits": corr,
           "joint_entropy_bits": joint, "marginal_entropy_sum_bits": marg_sum,
           "joint_distinct_fraction": counts.distinct(subset) / counts.n_frames}
    for norm, den in (("pct_joint", joint), ("pct_marginal_sum", marg_sum)):
        rec[f"raw_{norm}"] = _pct(raw, den)
        rec[f"null_{norm}"] = _pct(null, den)
        rec[f"corrected_{norm}"] = _pct(corr, den)
    return rec


def _protocol_pairs(K: int, n: int, seed: int) -> list[tuple[int, int]]:
    pairs = list(itertools.combinations(range(K), 2))
    rng = np.random.default_rng([int(seed), 1])  # a stream apart from the shuffles'
    chosen: list[tuple[int, int]] = []
    while len(chosen) < n:  # distinct until every pair has been used, then a fresh permutation
        chosen.extend(pairs[i] for i in rng.permutation(len(pairs))[: n - len(chosen)])
    return chosen


def _mean_or_none(values):
    vals = list(values)
    if any(v is None for v in vals):
        return None
    return float(np.mean(vals))


def independence_report(counts, *, bins: int | None = None, estimator: str = "miller_madow",
                        null_shuffles: int = 3, seed: int = 0, protocol_pairs: int = 5) -> dict:
    """Usage, pairwise MI, each-vs-rest MI, total correlation and the paper's protocol; see module docstring.

    `counts` is a CodeCounts with the default subsets, or codes [n, K] together with `bins`.
    """
    _check_estimator(estimator)
    if not isinstance(counts, CodeCounts):
        if bins is None:
            raise ValueError("bins: required when passing raw codes instead of a CodeCounts")
        counts = CodeCounts.from_codes(counts, bins)
    if counts.n_frames == 0:
        raise ValueError("counts: no frames were counted")
    if null_shuffles < 0:
        raise ValueError(f"null_shuffles: expected >= 0, got {null_shuffles}")
    if protocol_pairs < 1:
        raise ValueError(f"protocol_pairs: expected >= 1, got {protocol_pairs}")
    K = counts.num_codebooks
    full = tuple(range(K))
    pairs = list(itertools.combinations(full, 2))
    rests = [tuple(j for j in full if j != k) for k in full]
    for s in [*pairs, *rests, full]:
        if not counts.has_subset(s):
            raise ValueError(f"counts: joint counts of codebooks {s} are missing; build CodeCounts with the "
                             "default subsets")

    h_raw = _entropies(counts, estimator)
    h_null = None
    if null_shuffles:
        runs = [_entropies(shuffled_counts(counts, s), estimator)
                for s in np.random.SeedSequence(int(seed)).spawn(null_shuffles)]
        h_null = {s: float(np.mean([r[s] for r in runs])) for s in h_raw}
        h_null[()] = 0.0
    h_raw[()] = 0.0  # empty "rest" when K = 1

    pairwise = [{"a": a, "b": b, **_tc_record((a, b), h_raw, h_null, counts)} for a, b in pairs]
    by_pair = {(r["a"], r["b"]): r for r in pairwise}

    evr = []
    if K >= 2:
        for k in full:
            raw = h_raw[(k,)] + h_raw[rests[k]] - h_raw[full]
            null = None if h_null is None else h_null[(k,)] + h_null[rests[k]] - h_null[full]
            evr.append({"codebook": k, "raw_bits": raw, "null_bits": null, "corrected_bits": _sub(raw, null),
                        "entropy_bits": h_raw[(k,)],
                        "joint_distinct_fraction": counts.distinct(full) / counts.n_frames})

    protocol = None
    if K >= 2:
        chosen = _protocol_pairs(K, protocol_pairs, seed)
        recs = [by_pair[p] for p in chosen]
        protocol = {"pairs": [list(p) for p in chosen]}
        for key in ("raw_bits", "null_bits", "corrected_bits", "raw_pct_joint", "null_pct_joint",
                    "corrected_pct_joint", "raw_pct_marginal_sum", "null_pct_marginal_sum",
                    "corrected_pct_marginal_sum"):
            protocol[key] = _mean_or_none(r[key] for r in recs)

    return {
        "schema_version": SCHEMA_VERSION,
        "estimator": estimator,
        "n_frames": int(counts.n_frames),
        "num_codebooks": K,
        "bins": counts.bins,
        "null_shuffles": int(null_shuffles),
        "seed": int(seed),
        "normalisations": dict(NORMALISATIONS),
        "usage": codebook_usage(counts, estimator=estimator),
        "pairwise": pairwise,
        "each_vs_rest": evr,
        "total_correlation": {"codebooks": list(full), **_tc_record(full, h_raw, h_null, counts)},
        "protocol": protocol,
    }
