"""The independence loss end to end: shuffling, estimator bias, reproducibility, configuration, errors."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from mmd_audiocraft.core.kernels import Kernel
from mmd_audiocraft.core.loss import MMDIndependenceLoss, independence_loss
from mmd_audiocraft.core.mmd import mmd2_blocks
from mmd_audiocraft.core.options import LossOptions
from mmd_audiocraft.core.patterns import group_rows
from mmd_audiocraft.core.shuffle import factorized_sample, shuffle_codebooks

UNIT = Kernel(bandwidths=(1.0,))  # one sigma of 1: the tests' codes are unit-variance Gaussians


def gaussian_codes(b=2, k=3, t=50, n=4, dependent=False, seed=0, noise=0.1):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(b, k, t, n, generator=g)
    if dependent:  # every codebook = codebook 0 + small noise, frame by frame
        z = z[:, :1] + noise * torch.randn(b, k, t, n, generator=g)
    return z


# ---------------------------------------------------------------- shuffling
def test_shuffle_permutes_each_codebook_without_replacement():
    n, k = 50, 3
    z = torch.arange(n, dtype=torch.float32)[:, None, None].repeat(1, k, 2) + 1000 * torch.arange(k)[:, None]
    zs = shuffle_codebooks(z, torch.Generator().manual_seed(0))
    for c in range(k):
        src = (zs[:, c, 0] - 1000 * c).long()
        assert sorted(src.tolist()) == list(range(n))  # a permutation of the rows
        assert torch.equal(zs[:, c, 1], zs[:, c, 0])  # the block moves as a whole
    assert not torch.equal(zs[:, 0, 0], zs[:, 1, 0] - 1000)  # codebooks use different permutations
    z.requires_grad_(True)
    shuffle_codebooks(z, torch.Generator().manual_seed(0))[:, 1].sum().backward()
    assert torch.equal(z.grad[:, 1], torch.ones(n, 2)) and torch.equal(z.grad[:, 0], torch.zeros(n, 2))


def test_disjoint_sample_uses_distinct_source_rows():
    n, k = 43, 3
    z = torch.arange(n, dtype=torch.float32)[:, None, None].repeat(1, k, 1)  # value = source row
    joint, fact = factorized_sample(z, "disjoint", torch.Generator().manual_seed(0))
    m = n // (k + 1)
    assert joint.shape == (m, k, 1) and fact.shape == (m, k, 1)
    joint_src = set(joint[:, 0, 0].long().tolist())
    fact_src = fact[:, :, 0].long()
    assert len(joint_src) == m
    used = fact_src.flatten().tolist()
    assert len(set(used)) == m * k  # every block from its own source row
    assert not joint_src & set(used)  # none shared with the joint sample
    assert all(len(set(row)) == k for row in fact_src.tolist())


def test_paper_sample_is_full_rows_and_their_shuffle():
    z = gaussian_codes(b=1, t=30)[0].permute(1, 0, 2)  # [30, 3, 4]
    joint, fact = factorized_sample(z, "paper", torch.Generator().manual_seed(3))
    assert joint is z
    assert torch.equal(fact, shuffle_codebooks(z, torch.Generator().manual_seed(3)))


# ---------------------------------------------------------------- statistical behaviour
def test_independent_codes_near_zero_dependent_codes_large(one_thread):
    g = torch.Generator().manual_seed(1)
    for est in ("paper", "disjoint"):
        ind = [independence_loss(gaussian_codes(seed=s), pattern="parallel", estimator=est, generator=g).item()
               for s in range(20)]
        dep = [independence_loss(gaussian_codes(dependent=True, seed=s), pattern="parallel", estimator=est,
                                 generator=g).item() for s in range(20)]
        se_ind, se_dep = (np.std(v, ddof=1) / np.sqrt(len(v)) for v in (ind, dep))
        assert abs(np.mean(ind)) < 0.02
        assert np.mean(dep) - np.mean(ind) > 5 * np.hypot(se_ind, se_dep)
        if est == "paper":  # low variance: every dependent draw beats every independent one
            assert min(dep) > max(ind)
    # The delay pattern pairs codebook k with frames k steps earlier: frame-aligned dependence is invisible.
    delayed = independence_loss(gaussian_codes(dependent=True), pattern="delay", generator=g).item()
    aligned = independence_loss(gaussian_codes(dependent=True), pattern="parallel", generator=g).item()
    assert delayed < 0 < aligned


def test_estimator_bias_paper_reads_low_disjoint_unbiased(one_thread):
    """Issue 9: over many independent draws, 'disjoint' averages 0 and 'paper' averages below 0."""
    g = torch.Generator().manual_seed(0)
    draws = {"paper": [], "disjoint": []}
    for _ in range(200):
        z = torch.randn(1, 3, 64, 2, generator=g)  # n = 64 rows, K = 3, N = 2, independent codebooks
        for est in draws:
            draws[est].append(independence_loss(z, pattern="parallel", kernel=UNIT, estimator=est,
                                                generator=g).item())
    stats = {est: (np.mean(v), np.std(v, ddof=1) / np.sqrt(len(v))) for est, v in draws.items()}
    assert abs(stats["disjoint"][0]) < 2 * stats["disjoint"][1]
    assert stats["paper"][0] < -3 * stats["paper"][1]
    for est in draws:  # on dependent data both are clearly positive
        dep = [independence_loss(gaussian_codes(b=1, t=64, n=2, dependent=True, noise=0.3, seed=s),
                                 pattern="parallel", kernel=UNIT, estimator=est, generator=g).item()
               for s in range(20)]
        assert np.mean(dep) > 4 * np.std(dep, ddof=1) / np.sqrt(len(dep))


def test_clamp_and_max_rows():
    z = gaussian_codes(t=40)
    raw = [independence_loss(z, kernel=UNIT, generator=torch.Generator().manual_seed(s)) for s in range(8)]
    assert min(v.item() for v in raw) < 0  # near independence the unbiased estimate goes negative
    clamped = [independence_loss(z, kernel=UNIT, clamp=True, generator=torch.Generator().manual_seed(s))
               for s in range(8)]
    assert all(c.item() == max(r.item(), 0.0) for c, r in zip(clamped, raw))
    zg = z.clone().requires_grad_(True)
    neg = next(s for s in range(8) if raw[s].item() < 0)
    independence_loss(zg, kernel=UNIT, clamp=True, generator=torch.Generator().manual_seed(neg)).backward()
    assert torch.count_nonzero(zg.grad) == 0  # the clamp switches the gradient off
    # max_rows: only that many rows enter, so rows outside the subset get no gradient.
    zg = z.clone().requires_grad_(True)
    independence_loss(zg, max_rows=20, generator=torch.Generator().manual_seed(0)).backward()
    touched = (zg.grad.abs().sum(dim=(1, 3)) > 0).sum().item()  # (item, frame) pairs with a gradient
    assert touched <= 20 * 3  # each of 20 delayed rows touches 3 (codebook, frame) cells
    assert touched > 0


def test_block_rows_is_the_block_statistic_and_uses_every_row():
    z = gaussian_codes(t=40)  # delay rows: 2 items x 38 frames = 76
    zg = z.clone().requires_grad_(True)
    value = independence_loss(zg, kernel=UNIT, block_rows=16, generator=torch.Generator().manual_seed(0))
    value.backward()
    g = torch.Generator().manual_seed(0)  # replayed: shuffles first, then the block partitions
    joint, factorized = factorized_sample(group_rows(z, "delay", None), "paper", g)
    ref = mmd2_blocks(joint.flatten(1), factorized.flatten(1), 16, generator=g, kernel=UNIT)
    assert value.item() == ref.item()
    zf = z.clone().requires_grad_(True)
    independence_loss(zf, kernel=UNIT, generator=torch.Generator().manual_seed(0)).backward()
    assert torch.equal(zg.grad != 0, zf.grad != 0)  # the same (item, codebook, frame) cells as all pairs


def mean_abs_correlation(z):
    """Mean |Pearson correlation| between matching coordinates of codebooks 0 and 1 (frame-aligned)."""
    a, b = z[:, 0].reshape(-1, z.shape[-1]), z[:, 1].reshape(-1, z.shape[-1])
    return np.mean([abs(np.corrcoef(a[:, i], b[:, i])[0, 1]) for i in range(z.shape[-1])])


def test_gradient_reduces_dependence(one_thread):
    z = gaussian_codes(dependent=True, t=30, noise=0.5).requires_grad_(True)
    before = mean_abs_correlation(z.detach().numpy())
    opt = torch.optim.SGD([z], lr=300.0)
    g = torch.Generator().manual_seed(0)
    for _ in range(15):
        opt.zero_grad()
        independence_loss(z, pattern="parallel", kernel=Kernel(bandwidths=(1.0, 2.0)), generator=g).backward()
        opt.step()
    assert before > 0.7
    assert mean_abs_correlation(z.detach().numpy()) < before - 0.15


# ---------------------------------------------------------------- reproducibility and configuration
def test_seeded_generator_reproduces_value():
    z = gaussian_codes()
    a = independence_loss(z, generator=torch.Generator().manual_seed(7), estimator="disjoint")
    b = independence_loss(z, generator=torch.Generator().manual_seed(7), estimator="disjoint")
    c = independence_loss(z, generator=torch.Generator().manual_seed(8), estimator="disjoint")
    assert a.item() == b.item() and a.item() != c.item()


def test_module_state_dict_round_trip_reproduces_next_value():
    z = gaussian_codes()
    loss = MMDIndependenceLoss(seed=3, max_rows=60)
    loss(z)
    state = copy.deepcopy(loss.state_dict())
    expected = loss(z).item()
    resumed = MMDIndependenceLoss(seed=99, max_rows=60)
    resumed.load_state_dict(state)
    assert resumed(z).item() == expected
    assert resumed.seed == 3
    fresh = MMDIndependenceLoss(seed=3, max_rows=60)
    assert fresh(z).item() != expected  # the state, not the seed alone, made the match


def test_module_matches_function():
    z = gaussian_codes()
    mod = MMDIndependenceLoss(kernel="inverse", estimator="disjoint", seed=5, delays=[0, 1, 1])
    ref = independence_loss(z, kernel="inverse", estimator="disjoint", delays=[0, 1, 1],
                            generator=torch.Generator().manual_seed(5))
    assert mod(z).item() == ref.item()


def test_options_from_a_flat_config_node_carry_the_kernel_whole():
    """The `inde` node's flat kernel keys become one Kernel, and the loss it gives is the loss of that Kernel."""
    z = gaussian_codes()
    node = {"kernel": "gaussian", "bandwidths": [1.0, 2.0], "bandwidth_mode": "variance", "median_heuristic": False,
            "estimator": "disjoint", "max_rows": None, "block_rows": None, "clamp": False}
    options = LossOptions.from_config(node)
    assert options.kernel == Kernel("gaussian", (1.0, 2.0), "variance", False) and options.estimator == "disjoint"
    got = independence_loss(z, delays=[0, 2, 3], options=options, generator=torch.Generator().manual_seed(0))
    ref = independence_loss(z, delays=[0, 2, 3], kernel=Kernel(bandwidths=(1.0, 2.0), bandwidth_mode="variance"),
                            estimator="disjoint", generator=torch.Generator().manual_seed(0))
    assert got.item() == ref.item()
    assert LossOptions.from_config(options.as_config()) == options
    with pytest.raises(ValueError, match=r"inde\.bandwidth_mode='std'"):
        LossOptions.from_config({"bandwidth_mode": "std"})


def test_low_precision_and_autocast_give_fp32():
    z = gaussian_codes()
    for dtype in (torch.float16, torch.bfloat16):
        zl = z.to(dtype)
        ref = independence_loss(zl.float(), generator=torch.Generator().manual_seed(0))
        got = independence_loss(zl, generator=torch.Generator().manual_seed(0))
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-7)
    ref = independence_loss(z, generator=torch.Generator().manual_seed(0))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = independence_loss(z, generator=torch.Generator().manual_seed(0))
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-8)


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("fields,match", [({"bandwidths": [1.0, -1.0]}, "bandwidths must be finite and > 0"),
                                          ({"bandwidths": []}, "bandwidths is empty"),
                                          ({"bandwidth_mode": "std"}, "bandwidth_mode='std'"),
                                          ({"name": "rbf"}, "kernel='rbf'")])
def test_a_bad_kernel_is_refused_when_it_is_made(fields, match):
    with pytest.raises(ValueError, match=match):
        Kernel(**fields)


@pytest.mark.parametrize(
    "z,kwargs,match",
    [
        (torch.zeros(3, 4, 5), {}, r"shape \[B, K, T, N\]"),
        (gaussian_codes(k=1), {}, "K >= 2"),
        (gaussian_codes(b=1, t=2), {}, "frames is too few"),
        (gaussian_codes(b=1, t=3), {}, "only 1 row"),
        (gaussian_codes(b=1, k=3, t=3), {"pattern": "parallel", "estimator": "disjoint"}, "at least 2 rows per"),
        (gaussian_codes(b=1, t=1), {"pattern": "parallel"}, "only 1 row"),
        (gaussian_codes().masked_fill(gaussian_codes() > 2.5, float("inf")), {}, "NaN or infinite"),
        (gaussian_codes(), {"kernel": "rbf"}, "kernel='rbf'"),
        (gaussian_codes(), {"pattern": "flatten"}, "pattern='flatten': .* trivially independent"),
        (gaussian_codes(), {"bandwidths": [1.0, 2.0]}, r"bandwidths is not an option of the loss: .*kernel=Kernel"),
        (gaussian_codes(), {"delays": [0, 1]}, "delays has 2 entries"),
        (gaussian_codes(), {"estimator": "split"}, "estimator='split'"),
        (gaussian_codes(), {"max_rows": 1}, "max_rows"),
        (gaussian_codes(), {"block_rows": 1}, "block_rows"),
    ],
)
def test_bad_input_raises(z, kwargs, match):
    with pytest.raises(ValueError, match=match):
        independence_loss(z, **kwargs)


def test_module_validates_options_at_construction():
    with pytest.raises(ValueError, match="estimator"):
        MMDIndependenceLoss(estimator="unbiased")
    with pytest.raises(ValueError, match="kernel"):
        MMDIndependenceLoss(kernel="rbf")
