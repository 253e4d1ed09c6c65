"""Discrete-code information measures against independent references (scipy, sklearn, dense numpy tables)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mmd_audiocraft.core.metrics import (
    CodeCounts,
    codebook_usage,
    codes_to_rows,
    each_vs_rest,
    entropy_from_counts,
    independence_report,
    joint_entropy,
    joint_key_fits_int64,
    miller_madow_entropy,
    mutual_information,
    plot_each_vs_rest,
    plugin_entropy,
    shuffle_null,
    shuffled_counts,
    total_correlation,
)

LN2 = math.log(2.0)


def _skewed_codes(rng, n, K, M, alpha=1.2):
    """Zipf-like marginals with some dependence between codebooks."""
    p = 1.0 / np.arange(1, M + 1) ** alpha
    p /= p.sum()
    base = rng.choice(M, size=n, p=p)
    cols = [base]
    for _ in range(1, K):
        own = rng.choice(M, size=n, p=p)
        keep = rng.random(n) < 0.5
        cols.append(np.where(keep, (base + rng.integers(0, 3, n)) % M, own))
    return np.stack(cols, axis=1)


def _dense_entropy_bits(pmf):
    p = pmf[pmf > 0]
    return float(-(p * np.log2(p)).sum())


# ------------------------------------------------------------------ agreement with scipy / sklearn
@pytest.mark.parametrize("M", [2, 7, 64, 2048])
def test_entropy_and_mi_match_scipy_and_sklearn(M):
    stats = pytest.importorskip("scipy.stats")
    skm = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(M)
    codes = _skewed_codes(rng, 20_000, 3, M)
    cc = CodeCounts.from_codes(codes, M)
    for k in range(3):
        ref = stats.entropy(np.bincount(codes[:, k], minlength=M), base=2)
        assert abs(joint_entropy(cc, k) - ref) < 1e-9
        assert abs(plugin_entropy(np.bincount(codes[:, k])) - ref) < 1e-9
    for a, b in [(0, 1), (0, 2), (1, 2)]:
        ref = skm.mutual_info_score(codes[:, a], codes[:, b]) / LN2
        assert abs(mutual_information(cc, a, b) - ref) < 1e-9
        assert abs(mutual_information(codes, a, b, bins=M) - ref) < 1e-9  # raw-codes path
        assert abs(total_correlation(cc, (a, b)) - ref) < 1e-9
        _, joint_counts = np.unique(codes[:, [a, b]], axis=0, return_counts=True)
        assert abs(joint_entropy(cc, (a, b)) - stats.entropy(joint_counts, base=2)) < 1e-9
    _, full_counts = np.unique(codes, axis=0, return_counts=True)
    assert abs(joint_entropy(cc) - stats.entropy(full_counts, base=2)) < 1e-9


def test_miller_madow_by_hand():
    # counts (3, 1, 0): N = 4, m = 2 non-zero bins
    h_plugin = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))
    assert abs(plugin_entropy([3, 1, 0]) - h_plugin) < 1e-12
    assert abs(miller_madow_entropy([3, 1, 0]) - (h_plugin + 1 / (8 * LN2))) < 1e-12
    assert abs(entropy_from_counts([3, 1, 0], "miller_madow") - (h_plugin + 1 / (8 * LN2))) < 1e-12
    assert miller_madow_entropy([5]) == 0.0 and plugin_entropy([]) == 0.0
    # MI with Miller-Madow: each entropy term corrected with its own bin count
    codes = np.array([[0, 0], [0, 0], [1, 1], [1, 0]])
    hx = 1 + 1 / (2 * 4 * LN2)  # (2, 2)
    hy = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25)) + 1 / (2 * 4 * LN2)  # (3, 1)
    hxy = 1.5 + 2 / (2 * 4 * LN2)  # (2, 1, 1)
    assert abs(mutual_information(codes, 0, 1, estimator="miller_madow") - (hx + hy - hxy)) < 1e-12


# ------------------------------------------------------------------ known distributions
def test_xor_total_correlation_is_one_bit():
    table = np.array([[0, 0, 0], [0, 1, 1], [1, 0, 1], [1, 1, 0]])
    assert total_correlation(table, estimator="plugin") == pytest.approx(1.0, abs=1e-12)
    for a, b in [(0, 1), (0, 2), (1, 2)]:  # pairwise independent
        assert mutual_information(table, a, b) == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(each_vs_rest(table), [1.0, 1.0, 1.0], atol=1e-12)
    rng = np.random.default_rng(0)
    ab = rng.integers(0, 2, (100_000, 2))
    big = np.concatenate([ab, ab[:, :1] ^ ab[:, 1:]], axis=1)
    assert total_correlation(big, estimator="plugin") == pytest.approx(1.0, abs=1e-3)
    assert total_correlation(big, estimator="miller_madow") == pytest.approx(1.0, abs=1e-3)


def test_each_vs_rest_by_hand():
    # z0 uniform on 4, z1 = z0 mod 2, z2 an independent fair bit:
    # I(z0; z1 z2) = 1, I(z1; z0 z2) = 1, I(z2; z0 z1) = 0
    table = np.array([[a, a % 2, c] for a in range(4) for c in range(2)])
    np.testing.assert_allclose(each_vs_rest(table), [1.0, 1.0, 0.0], atol=1e-12)


def test_each_vs_rest_matches_dense_pmf():
    rng = np.random.default_rng(3)
    K, M = 3, 4
    cell_counts = rng.integers(0, 6, size=(M,) * K)
    cell_counts[0, 0, 0] += 50  # some dependence
    codes = np.array([idx for idx in np.ndindex(*cell_counts.shape) for _ in range(cell_counts[idx])])
    pmf = cell_counts / cell_counts.sum()
    h_full = _dense_entropy_bits(pmf)
    expected = [_dense_entropy_bits(pmf.sum(axis=tuple(j for j in range(K) if j != k)))
                + _dense_entropy_bits(pmf.sum(axis=k)) - h_full for k in range(K)]
    np.testing.assert_allclose(each_vs_rest(CodeCounts.from_codes(codes, M)), expected, atol=1e-12)
    marginals = [pmf.sum(axis=tuple(j for j in range(K) if j != k)) for k in range(K)]
    tc = sum(_dense_entropy_bits(m) for m in marginals) - h_full
    assert total_correlation(codes, bins=M) == pytest.approx(tc, abs=1e-12)


# ------------------------------------------------------------------ bias and the shuffle-null
def test_shuffle_null_removes_bias_of_independent_uniform_codes():
    rng = np.random.default_rng(1)
    M, n = 2048, 200_000
    codes = rng.integers(0, M, size=(n, 3))
    cc = CodeCounts.from_codes(codes, M)
    rep = independence_report(cc, estimator="plugin", null_shuffles=3, seed=0)
    for row in rep["pairwise"]:
        assert row["raw_bits"] > 0.5  # plug-in MI of independent codes: large positive bias
        assert abs(row["corrected_bits"]) < 0.05
        assert abs(row["corrected_pct_joint"]) < 0.5
    assert rep["protocol"]["raw_pct_joint"] > 2.0 and abs(rep["protocol"]["corrected_pct_joint"]) < 0.5
    assert abs(rep["total_correlation"]["corrected_bits"]) < 0.05
    mm = independence_report(cc, estimator="miller_madow", null_shuffles=1, seed=0)
    assert all(abs(r["corrected_bits"]) < 0.05 for r in mm["pairwise"])


def test_shuffled_counts_keep_marginals_and_detect_dependence():
    rng = np.random.default_rng(2)
    M = 16
    a = rng.integers(0, M, 50_000)
    codes = np.stack([a, (a + rng.integers(0, 2, a.size)) % M], axis=1)  # I = 4 - 1 = 3 bits
    cc = CodeCounts.from_codes(codes, M)
    sh = shuffled_counts(cc, seed=5)
    np.testing.assert_array_equal(sh.marginals, cc.marginals)
    assert sh.n_frames == cc.n_frames
    null = shuffle_null(cc, lambda c: mutual_information(c, 0, 1), shuffles=3, seed=0)
    assert null == shuffle_null(cc, lambda c: mutual_information(c, 0, 1), shuffles=3, seed=0)
    assert 0 <= null < 0.01
    assert mutual_information(cc, 0, 1) - null == pytest.approx(3.0, abs=0.02)


# ------------------------------------------------------------------ streaming and the int64 fallback
def test_streaming_equals_counting_at_once():
    rng = np.random.default_rng(4)
    codes = _skewed_codes(rng, 30_000, 4, 300)
    whole = CodeCounts.from_codes(codes, 300)
    streamed = CodeCounts(4, 300)
    parts = []
    for lo, hi in [(0, 1), (1, 5000), (5000, 5000), (5000, 17_000), (17_000, 30_000)]:
        streamed.update(codes[lo:hi])
        parts.append(CodeCounts.from_codes(codes[lo:hi], 300))
    merged = parts[0].copy()
    for p in parts[1:]:
        merged += p
    for other in (streamed, merged, parts[0] + parts[1] + parts[2] + parts[3] + parts[4]):
        assert other.n_frames == whole.n_frames
        np.testing.assert_array_equal(other.marginals, whole.marginals)
        for s in whole.subsets:
            for x, y in zip(other.joint(s), whole.joint(s)):
                np.testing.assert_array_equal(x, y)
        for est in ("plugin", "miller_madow"):
            assert json.dumps(independence_report(other, estimator=est)) == \
                json.dumps(independence_report(whole, estimator=est))


def test_wide_tuples_fall_back_to_unique_rows():
    K, M = 8, 2048  # 88 bits per full tuple: no int64 key
    assert joint_key_fits_int64(M, 5) and not joint_key_fits_int64(M, 6)
    rng = np.random.default_rng(5)
    levels = np.array([0, 1, 1023, 2047])
    codes = levels[rng.integers(0, 4, size=(40_000, K))]
    codes[:, 3] = codes[:, 0]  # a dependence
    cc = CodeCounts(K, M)
    for chunk in np.array_split(codes, 3):
        cc.update(chunk)
    rows, counts = cc.joint(tuple(range(K)))
    assert rows.shape[1] == K
    ref_rows, full_counts = np.unique(codes, axis=0, return_counts=True)
    np.testing.assert_array_equal(rows, ref_rows)
    np.testing.assert_array_equal(counts, full_counts)
    rest_rows, rest_counts = cc.joint(tuple(range(1, K)))
    ref_rows, ref_counts = np.unique(codes[:, 1:], axis=0, return_counts=True)
    np.testing.assert_array_equal(rest_rows, ref_rows)
    np.testing.assert_array_equal(rest_counts, ref_counts)
    stats = pytest.importorskip("scipy.stats")
    assert joint_entropy(cc) == pytest.approx(stats.entropy(full_counts, base=2), abs=1e-9)
    evr = each_vs_rest(cc)
    assert evr[0] == pytest.approx(2.0, abs=1e-3) and evr[3] == pytest.approx(2.0, abs=1e-3)
    assert cc.nbytes() < 64 * codes.size  # bounded by distinct tuples, not by M^K


def test_extra_subsets_on_request():
    rng = np.random.default_rng(6)
    codes = rng.integers(0, 5, size=(1000, 5))
    cc = CodeCounts.from_codes(codes, 5, subsets=[(4, 0, 2)])
    assert cc.has_subset((0, 2, 4))
    _, ref = np.unique(codes[:, [0, 2, 4]], axis=0, return_counts=True)
    np.testing.assert_array_equal(cc.joint((0, 2, 4))[1], ref)
    with pytest.raises(ValueError, match="subset"):
        cc.joint((0, 1, 2))


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize("bad", [
    np.zeros(10, dtype=np.int64),                  # wrong rank
    np.zeros((10, 2), dtype=np.int64),             # wrong K
    np.full((10, 3), -1, dtype=np.int64),          # negative
    np.full((10, 3), 8, dtype=np.int64),           # >= bins
    np.zeros((10, 3), dtype=np.float32),           # not integer
])
def test_bad_codes_raise(bad):
    with pytest.raises(ValueError, match="codes"):
        CodeCounts(3, 8).update(bad)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="other"):
        CodeCounts(3, 8).merge(CodeCounts(3, 9))
    with pytest.raises(ValueError, match="estimator"):
        mutual_information(np.zeros((4, 2), dtype=int), 0, 1, estimator="nsb")
    with pytest.raises(ValueError, match="disjoint"):
        mutual_information(np.zeros((4, 2), dtype=int), 0, (0, 1))
    with pytest.raises(ValueError, match="counts"):
        independence_report(CodeCounts(2, 4))
    with pytest.raises(ValueError, match="bins"):
        codebook_usage(np.zeros((2, 3), dtype=int))


# ------------------------------------------------------------------ report, usage, layout, plot
def test_report_json_seeded_and_protocol_pairs():
    stats = pytest.importorskip("scipy.stats")
    skm = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(7)
    codes = _skewed_codes(rng, 20_000, 4, 64)
    cc = CodeCounts.from_codes(codes, 64)
    rep = independence_report(cc, estimator="plugin", seed=3)
    text = json.dumps(rep, allow_nan=False)
    assert json.loads(text) == rep
    assert json.dumps(independence_report(cc, estimator="plugin", seed=3)) == text
    pairs = [tuple(p) for p in rep["protocol"]["pairs"]]
    assert len(pairs) == 5 and len(set(pairs)) == 5 and all(a < b for a, b in pairs)
    reps = [independence_report(cc, seed=s, null_shuffles=0) for s in range(6)]
    seeds_pairs = {tuple(tuple(p) for p in r["protocol"]["pairs"]) for r in reps}
    assert len(seeds_pairs) > 1  # the seed picks the pairs
    # the paper's protocol number, rebuilt from sklearn + scipy
    ref = np.mean([100 * skm.mutual_info_score(codes[:, a], codes[:, b]) / LN2
                   / stats.entropy(np.unique(codes[:, [a, b]], axis=0, return_counts=True)[1], base=2)
                   for a, b in pairs])
    assert rep["protocol"]["raw_pct_joint"] == pytest.approx(ref, abs=1e-9)
    ref_m = np.mean([100 * skm.mutual_info_score(codes[:, a], codes[:, b]) / LN2
                     / (stats.entropy(np.bincount(codes[:, a]), base=2)
                        + stats.entropy(np.bincount(codes[:, b]), base=2)) for a, b in pairs])
    assert rep["protocol"]["raw_pct_marginal_sum"] == pytest.approx(ref_m, abs=1e-9)
    for row in rep["pairwise"] + rep["each_vs_rest"] + [rep["total_correlation"]]:
        assert row["corrected_bits"] == pytest.approx(row["raw_bits"] - row["null_bits"], abs=1e-12)
    assert rep["pairwise"][0]["raw_bits"] > 1.0  # codebooks 0 and 1 are dependent by construction
    # two codebooks: only one pair exists, repeated
    two = independence_report(codes[:, :2], bins=64, protocol_pairs=5)
    assert two["protocol"]["pairs"] == [[0, 1]] * 5
    assert independence_report(codes[:, :1], bins=64)["protocol"] is None


def test_codebook_usage_on_a_batch():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(8)
    codes = rng.integers(0, 40, size=(3, 4, 50))  # [B, K, T]; only 40 of 64 codes can appear
    usage = codebook_usage(codes, bins=64)
    for k, u in enumerate(usage):
        flat = codes[:, k, :].ravel()
        assert u["entropy_bits"] == pytest.approx(stats.entropy(np.bincount(flat), base=2), abs=1e-9)
        assert u["used_fraction"] == len(np.unique(flat)) / 64
        assert u["perplexity"] == pytest.approx(2 ** u["entropy_bits"])
    torch = pytest.importorskip("torch")
    assert codebook_usage(torch.from_numpy(codes), bins=64) == usage
    rows = codes_to_rows(codes, "parallel")
    from_torch = CodeCounts.from_codes(torch.from_numpy(rows), 64)
    assert json.dumps(independence_report(from_torch)) == json.dumps(independence_report(rows, bins=64))


def test_codes_to_rows_parallel_and_delay():
    rng = np.random.default_rng(9)
    B, K, T = 2, 3, 7
    codes = rng.integers(0, 100, size=(B, K, T))
    par = codes_to_rows(codes, "parallel")
    assert par.shape == (B * T, K)
    assert [list(r) for r in par[:T]] == [[codes[0, k, t] for k in range(K)] for t in range(T)]
    delay = codes_to_rows(codes, "delay")
    expected = [[codes[b, k, s - k] for k in range(K)] for b in range(B) for s in range(K - 1, T)]
    assert delay.shape == (B * (T - K + 1), K)
    assert delay.tolist() == expected
    with pytest.raises(ValueError, match="pattern"):
        codes_to_rows(codes, "flatten")


def test_plot_writes_png(tmp_path):
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(10)
    reps = [independence_report(_skewed_codes(rng, 5000, 4, 32), bins=32, null_shuffles=1) for _ in range(2)]
    out = plot_each_vs_rest(reps, tmp_path / "evr.png", labels=["baseline", "mmd"])
    data = out.read_bytes()
    assert len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"


def test_codes_to_rows_agrees_with_group_by_pattern():
    torch = pytest.importorskip("torch")
    from mmd_audiocraft.core.patterns import group_by_pattern

    rng = np.random.default_rng(11)
    codes = rng.integers(0, 2048, size=(3, 4, 9))
    z = torch.from_numpy(codes.astype(np.float64))[..., None]
    for pattern, delays in [("parallel", None), ("delay", None), ("delay", [0, 2, 2, 5])]:
        ref = group_by_pattern(z, pattern, delays=delays)[..., 0].numpy().astype(np.int64)
        np.testing.assert_array_equal(codes_to_rows(codes, pattern, delays=delays), ref)

    class Coord:  # duck-typed audiocraft LayoutCoord / Pattern: delay layout, one step per frame
        def __init__(self, t, q):
            self.t, self.q = t, q

    class DelayPattern:
        n_q = 4
        layout = [[]] + [[Coord(s - q, q) for q in range(4) if 0 <= s - q < 9] for s in range(12)]

    np.testing.assert_array_equal(codes_to_rows(codes, DelayPattern()), codes_to_rows(codes, "delay"))
