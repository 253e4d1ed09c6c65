"""MMD^2 estimator (paper eq. 7) against independent float64 numpy references and a dHSIC oracle."""
from __future__ import annotations

import warnings
from unittest import mock

import numpy as np
import pytest
import torch

import mmd_audiocraft.core.mmd as mmd_module
from mmd_audiocraft.core.kernels import DEFAULT_BANDWIDTHS, Kernel
from mmd_audiocraft.core.mmd import mmd2_blocks, mmd2_unbiased
from mmd_audiocraft.core.shuffle import shuffle_codebooks


def kernel_of(kernel="gaussian", bandwidths=None, bandwidth_mode="sigma", median_heuristic=False) -> Kernel:
    """The Kernel of the tests' flat keyword arguments (the config's `inde.kernel`, `inde.bandwidths`, ...)."""
    return Kernel(kernel, bandwidths, bandwidth_mode, median_heuristic)


def mmd(x, y, path, tile=None, **kernel):
    """mmd2_unbiased on a chosen path: "dense" (raising the auto threshold), "auto", or an int tile."""
    if path == "dense":
        with mock.patch.object(mmd_module, "DENSE_MAX_ELEMENTS", 10**9):
            return mmd2_unbiased(x, y, kernel_of(**kernel))
    return mmd2_unbiased(x, y, kernel_of(**kernel), tile=tile if tile is not None else None if path == "auto" else path)


# ---------------------------------------------------------------- independent references (numpy, float64)
def np_kernel(x, y, kernel, bandwidths=None, mode="sigma", median=1.0):
    """k(x_i, y_j) for all pairs, written from the definitions with explicit differences (no expansion)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if kernel == "linear":
        return x @ y.T
    if kernel == "quadratic":
        return (x @ y.T) ** 2
    diff = x[:, None, :] - y[None, :, :]
    d2 = np.einsum("ijk,ijk->ij", diff, diff)
    bandwidths = DEFAULT_BANDWIDTHS[kernel] if bandwidths is None else bandwidths
    out = np.zeros_like(d2)
    for b in bandwidths:
        var = (b if mode == "variance" else b * b) * median**2
        out += np.exp(-d2 / (2 * var)) if kernel == "gaussian" else 1.0 / (1.0 + d2 / var)
    return out


def np_mmd2(x, y, **kw):
    """eq. (7) with explicit loops over i != j for the within-sample terms."""
    n, m = len(x), len(y)
    kxx, kyy, kxy = np_kernel(x, x, **kw), np_kernel(y, y, **kw), np_kernel(y=y, x=x, **kw)
    sxx = sum(kxx[i, j] for i in range(n) for j in range(n) if i != j)
    syy = sum(kyy[i, j] for i in range(m) for j in range(m) if i != j)
    return sxx / (n * (n - 1)) + syy / (m * (m - 1)) - 2.0 * kxy.sum() / (n * m)


def samples(n=23, m=17, d=5, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=dtype)
    y = 1.3 * torch.randn(m, d, generator=g, dtype=dtype) + 0.4
    return x, y


KERNEL_CASES = [
    ("gaussian", None, "sigma"),
    ("gaussian", (0.5, 2.0, 4.0), "sigma"),
    ("gaussian", (0.5, 2.0, 9.0), "variance"),
    ("inverse", None, "sigma"),
    ("inverse", (1.5, 3.0), "variance"),
    ("quadratic", None, "sigma"),
    ("linear", None, "sigma"),
]


@pytest.mark.parametrize("kernel,bandwidths,mode", KERNEL_CASES)
@pytest.mark.parametrize("path", ["dense", "auto", 7])
def test_matches_numpy_reference(kernel, bandwidths, mode, path):
    x, y = samples()
    ref = np_mmd2(x.numpy(), y.numpy(), kernel=kernel, bandwidths=bandwidths, mode=mode)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        got = mmd(x, y, path, kernel=kernel, bandwidths=bandwidths, bandwidth_mode=mode)
        got32 = mmd(x.float(), y.float(), path, kernel=kernel, bandwidths=bandwidths, bandwidth_mode=mode)
    assert got.dtype == torch.float64 and got32.dtype == torch.float32
    assert abs(got.item() - ref) <= 1e-6 * abs(ref)
    assert abs(got32.item() - ref) <= 1e-4 * abs(ref)


def test_median_heuristic_scales_sigmas():
    x, y = samples(n=30, m=26, d=4, seed=3)
    diff = x.numpy()[:, None] - x.numpy()[None]
    dist = np.sqrt((diff**2).sum(-1))[np.triu_indices(30, k=1)]
    med = float(np.median(dist))
    ref = np_mmd2(x.numpy(), y.numpy(), kernel="gaussian", bandwidths=(0.5, 1.0), median=med)
    for path in ("dense", 8):
        got = mmd(x, y, path, bandwidths=(0.5, 1.0), median_heuristic=True).item()
        assert abs(got - ref) <= 1e-9 * abs(ref)
    # Scale-free: scaling the data leaves the statistic unchanged.
    scaled = mmd2_unbiased(7.0 * x, 7.0 * y, kernel=kernel_of(bandwidths=(0.5, 1.0), median_heuristic=True)).item()
    assert abs(scaled - ref) <= 1e-9 * abs(ref)


def test_identical_distributions_near_zero_and_different_ones_positive():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(400, 3, generator=g), torch.randn(400, 3, generator=g)
    assert abs(mmd2_unbiased(x, y, kernel=kernel_of(bandwidths=(1.0,))).item()) < 5e-3
    assert mmd2_unbiased(x, y + 1.0, kernel=kernel_of(bandwidths=(1.0,))).item() > 0.1


# ---------------------------------------------------------------- dHSIC oracle for the shuffled statistic
def np_dhsic_mean_over_shuffles(z, sigmas):
    """Exact mean over independent per-codebook permutations of eq. (7) with the Gaussian kernel.

    The Gaussian kernel factorises over codebooks, k = prod_k K^k, so averaging over uniform permutations
    gives U_xx + prod_k [sum_{a!=b} K^k_ab / (n(n-1))] - (2/n) sum_i prod_k ((1/n) sum_b K^k_ib).
    """
    n, k_books, _ = z.shape
    total = 0.0
    for s in sigmas:
        grams = []
        for k in range(k_books):
            diff = z[:, None, k, :] - z[None, :, k, :]
            grams.append(np.exp(-(diff**2).sum(-1) / (2 * s * s)))
        prod = np.prod(grams, axis=0)
        off = ~np.eye(n, dtype=bool)
        u_xx = prod[off].sum() / (n * (n - 1))
        u_yy = np.prod([gk[off].sum() / (n * (n - 1)) for gk in grams])
        cross = np.mean(np.prod([gk.mean(axis=1) for gk in grams], axis=0))
        total += u_xx + u_yy - 2.0 * cross
    return total


def test_mean_over_shuffles_matches_dhsic_oracle():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # 1500 tiny calls: avoid thread hand-offs
    try:
        _check_dhsic_oracle()
    finally:
        torch.set_num_threads(before)


def _check_dhsic_oracle():
    g = torch.Generator().manual_seed(5)
    n, k_books, dim = 24, 3, 2
    base = torch.randn(n, 1, dim, generator=g, dtype=torch.float64)
    z = base + 0.3 * torch.randn(n, k_books, dim, generator=g, dtype=torch.float64)  # dependent codebooks
    sigmas = (1.0, 2.0)
    oracle = np_dhsic_mean_over_shuffles(z.numpy(), sigmas)
    shuffler = torch.Generator().manual_seed(11)
    draws = np.array([
        mmd2_unbiased(z.flatten(1), shuffle_codebooks(z, shuffler).flatten(1),
                      kernel=kernel_of(bandwidths=sigmas)).item()
        for _ in range(1500)
    ])
    se = draws.std(ddof=1) / np.sqrt(len(draws))
    assert abs(draws.mean() - oracle) < 4 * se
    assert abs(oracle) > 20 * se  # far from 0, so the comparison is informative


# ---------------------------------------------------------------- gradients
@pytest.mark.parametrize("kernel", ["gaussian", "inverse", "quadratic", "linear"])
def test_gradcheck_dense_and_tiled(kernel):
    x, y = samples(n=12, m=9, d=3, seed=2)
    x.requires_grad_(True)
    y.requires_grad_(True)
    bw = (0.7, 2.0) if kernel in ("gaussian", "inverse") else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for path in ("dense", 5):
            assert torch.autograd.gradcheck(
                lambda a, b, p=path: mmd(a, b, p, kernel=kernel, bandwidths=bw), (x, y)
            )


@pytest.mark.parametrize("kernel", ["gaussian", "inverse", "quadratic"])
def test_tiled_equals_dense_fp32(kernel):
    x, y = samples(n=70, m=53, d=16, seed=4, dtype=torch.float32)
    bw = (1.0, 4.0, 8.0) if kernel != "quadratic" else None
    if kernel == "quadratic":
        x, y = x / 4, y / 4
    values, grads = [], []
    for path in ("dense", 16, "auto"):
        xx, yy = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
        v = mmd(xx, yy, path, kernel=kernel, bandwidths=bw)
        v.backward()
        values.append(v.item())
        grads.append((xx.grad, yy.grad))
    for v, (gx, gy) in zip(values[1:], grads[1:]):
        assert v == pytest.approx(values[0], rel=1e-5, abs=1e-7)
        torch.testing.assert_close(gx, grads[0][0], rtol=1e-4, atol=1e-7)
        torch.testing.assert_close(gy, grads[0][1], rtol=1e-4, atol=1e-7)


def test_duplicate_rows_give_finite_gradients():
    x = torch.zeros(40, 8)
    x[20:] = 1.0  # silence: many identical rows
    y = x.flip(0).clone()
    for path in ("dense", 16):
        xx, yy = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
        v = mmd(xx, yy, path)
        v.backward()
        assert torch.isfinite(v) and torch.isfinite(xx.grad).all() and torch.isfinite(yy.grad).all()


def test_auto_path_choice():
    small, large = samples(n=8, m=8, d=3), samples(n=100, m=90, d=3)
    x, y = (t.clone().requires_grad_(True) for t in small)
    assert "Tiled" not in type(mmd2_unbiased(x, y).grad_fn).__name__
    x, y = (t.clone().requires_grad_(True) for t in large)
    assert "Tiled" in type(mmd2_unbiased(x, y).grad_fn).__name__


def test_no_grad_and_single_input_grad():
    x, y = samples(n=30, m=20, d=4, dtype=torch.float32)
    with torch.no_grad():
        v = mmd2_unbiased(x, y, tile=8)
    assert not v.requires_grad
    xx = x.clone().requires_grad_(True)
    mmd2_unbiased(xx, y, tile=8).backward()
    xd = x.clone().requires_grad_(True)
    mmd(xd, y, "dense").backward()
    torch.testing.assert_close(xx.grad, xd.grad, rtol=1e-4, atol=1e-7)


# ---------------------------------------------------------------- linear kernel degeneracy
def test_linear_kernel_is_degenerate_under_shuffling_and_warns():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(200, 1, 3, generator=g)
    z = torch.cat([base, base + 0.05 * torch.randn(200, 1, 3, generator=g)], dim=1)  # strongly dependent
    zs = shuffle_codebooks(z, torch.Generator().manual_seed(1))
    with pytest.warns(UserWarning, match="degenerate"):
        lin = mmd2_unbiased(z.flatten(1), zs.flatten(1), kernel=kernel_of(kernel="linear")).item()
    quad = mmd2_unbiased(z.flatten(1), zs.flatten(1), kernel=kernel_of(kernel="quadratic")).item()
    assert quad > 1.0
    assert abs(lin) < 0.02 * quad


# ---------------------------------------------------------------- precision
def test_low_precision_inputs_and_autocast_compute_in_fp32():
    x, y = samples(n=40, m=40, d=64, seed=6, dtype=torch.float32)
    for dtype in (torch.float16, torch.bfloat16):
        xl, yl = x.to(dtype), y.to(dtype)
        ref = mmd2_unbiased(xl.float(), yl.float(), kernel=kernel_of(bandwidths=(2.0, 8.0)))
        for path in ("dense", "auto"):
            got = mmd(xl, yl, path, bandwidths=(2.0, 8.0))
            assert got.dtype == torch.float32
            torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-7)
    for path in ("dense", "auto"):
        ref = mmd(x, y, path, bandwidths=(2.0, 8.0))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = mmd(x, y, path, bandwidths=(2.0, 8.0))
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-8)


def test_tf32_settings_restored():
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
              torch.get_float32_matmul_precision())
    x, y = samples(n=10, m=10, d=3, dtype=torch.float32)
    mmd2_unbiased(x, y)
    after = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             torch.get_float32_matmul_precision())
    assert before == after


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(kernel="laplace"), "kernel='laplace'"),
        (dict(bandwidths=(1.0, 0.0)), "bandwidths"),
        (dict(bandwidths=(-2.0,)), "bandwidths"),
        (dict(bandwidths=()), "bandwidths"),
        (dict(bandwidth_mode="std"), "bandwidth_mode='std'"),
        (dict(tile=0), "tile"),
    ],
)
def test_bad_options_raise(kwargs, match):
    x, y = samples(n=5, m=5, d=2)
    with pytest.raises(ValueError, match=match):
        mmd(x, y, "auto", **kwargs)


@pytest.mark.parametrize(
    "x,y,match",
    [
        (torch.zeros(5), torch.zeros(5, 2), "x must have shape"),
        (torch.zeros(5, 2), torch.zeros(5, 2, 1), "y must have shape"),
        (torch.zeros(1, 2), torch.zeros(5, 2), "at least 2 rows"),
        (torch.zeros(5, 2), torch.zeros(5, 3), "same number of dims"),
    ],
)
def test_bad_shapes_raise(x, y, match):
    with pytest.raises(ValueError, match=match):
        mmd2_unbiased(x, y)


def test_median_heuristic_without_distinct_rows_falls_back_to_unit_scale():
    """A fully collapsed batch (every row the same) must not stop training: the bandwidths stay as given."""
    with_heuristic = mmd2_unbiased(torch.ones(6, 3), torch.zeros(6, 3), kernel=Kernel(median_heuristic=True))
    assert torch.equal(with_heuristic, mmd2_unbiased(torch.ones(6, 3), torch.zeros(6, 3)))


def test_median_heuristic_ignores_duplicate_rows():
    """Collapsed codes repeat rows: the median over distinct pairs keeps the bandwidth (and gradient) sane."""
    from mmd_audiocraft.core.kernels import median_pairwise_distance

    g = torch.Generator().manual_seed(0)
    distinct = torch.randn(10, 4, generator=g)
    x = torch.cat([distinct, distinct[:1].repeat(90, 1)])  # 90 % of the rows are one row
    d = torch.cdist(distinct.double(), distinct.double())
    pairs = torch.cat([d[torch.triu_indices(10, 10, 1).unbind()], d[0, 1:]])  # distinct rows vs the repeated one
    assert median_pairwise_distance(x).item() == pytest.approx(pairs.median().item(), rel=0.3)
    assert median_pairwise_distance(distinct[:1].repeat(5, 1)).item() == 1.0
    y = x.clone().requires_grad_(True)
    value = mmd2_unbiased(y, y.roll(1, 0).detach(), kernel=Kernel(median_heuristic=True))
    value.backward()
    assert torch.isfinite(y.grad).all()


# ---------------------------------------------------------------- block U-statistic (mmd2_blocks)
def test_blocks_match_numpy_mean_over_the_drawn_blocks():
    x, y = samples(n=23, m=17, d=4, seed=6)
    got = mmd2_blocks(x, y, 5, kernel=kernel_of(bandwidths=(0.7, 2.0)),
                      generator=torch.Generator().manual_seed(3)).item()
    # Same draws, replayed: permutation of x's rows then of y's, each cut into min(23, 17) // 5 = 3 blocks.
    g = torch.Generator().manual_seed(3)
    px, py = torch.randperm(23, generator=g).numpy(), torch.randperm(17, generator=g).numpy()
    bx, by = np.array_split(px, 3), np.array_split(py, 3)
    assert [len(b) for b in bx] == [8, 8, 7] and [len(b) for b in by] == [6, 6, 5]
    ref = np.mean([np_mmd2(x.numpy()[i], y.numpy()[j], kernel="gaussian", bandwidths=(0.7, 2.0))
                   for i, j in zip(bx, by)])
    assert abs(got - ref) <= 1e-9 * abs(ref)


def test_blocks_average_to_the_full_statistic_over_partitions():
    # With equal block sizes, every pair is in a common block with the same probability, so the mean over
    # random partitions is exactly eq. (7) on all rows.
    x, y = samples(n=24, m=24, d=3, seed=7)
    y = y + 0.5
    full = mmd2_unbiased(x, y, kernel=kernel_of(bandwidths=(1.0,))).item()
    g = torch.Generator().manual_seed(0)
    unit = kernel_of(bandwidths=(1.0,))
    draws = np.array([mmd2_blocks(x, y, 6, kernel=unit, generator=g).item() for _ in range(3000)])
    se = draws.std(ddof=1) / np.sqrt(len(draws))
    assert abs(draws.mean() - full) < 4 * se
    assert 4 * se < 0.05 * full  # precise enough to see a 5 % bias (b^2 instead of b(b-1) would be 17 %)


def test_blocks_gradient_reaches_every_row_and_passes_gradcheck():
    x, y = samples(n=20, m=16, d=3, seed=8)
    x.requires_grad_(True)
    y.requires_grad_(True)
    mmd2_blocks(x, y, 4, kernel=kernel_of(bandwidths=(0.7, 2.0)), generator=torch.Generator().manual_seed(1)).backward()
    assert (x.grad.abs().sum(1) > 0).all() and (y.grad.abs().sum(1) > 0).all()
    assert torch.autograd.gradcheck(
        lambda a, b: mmd2_blocks(a, b, 4, kernel=kernel_of(bandwidths=(0.7, 2.0)),
                                 generator=torch.Generator().manual_seed(1), tile=3), (x, y))


def test_blocks_share_one_median_and_fall_back_to_all_pairs():
    x, y = samples(n=40, m=40, d=3, seed=9)
    diff = x.numpy()[:, None] - x.numpy()[None]
    med = float(np.median(np.sqrt((diff**2).sum(-1))[np.triu_indices(40, k=1)]))
    got = mmd2_blocks(x, y, 10, kernel=kernel_of(bandwidths=(0.5,), median_heuristic=True),
                      generator=torch.Generator().manual_seed(2)).item()
    g = torch.Generator().manual_seed(2)
    px, py = torch.randperm(40, generator=g).numpy(), torch.randperm(40, generator=g).numpy()
    ref = np.mean([np_mmd2(x.numpy()[i], y.numpy()[j], kernel="gaussian", bandwidths=(0.5,), median=med)
                   for i, j in zip(np.array_split(px, 4), np.array_split(py, 4))])
    assert abs(got - ref) <= 1e-9 * abs(ref)
    # Fewer than two blocks: eq. (7) on all rows, and the generator is not drawn from.
    g = torch.Generator().manual_seed(5)
    state = g.get_state()
    assert mmd2_blocks(x, y, 21, generator=g).item() == mmd2_unbiased(x, y).item()
    assert torch.equal(g.get_state(), state)


@pytest.mark.parametrize("block_rows", [1, 0, 2.5, None])
def test_blocks_bad_block_rows_raise(block_rows):
    x, y = samples()
    with pytest.raises(ValueError, match="block_rows"):
        mmd2_blocks(x, y, block_rows)
