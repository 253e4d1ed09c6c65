"""Unbiased MMD^2 between two row samples (paper eq. 7), dense for small n and row-tiled for large n, and the
block U-statistic (:func:`mmd2_blocks`) whose cost is linear in rows.

eq. (7) with n rows in x and m rows in y:
    sum_{i!=j} k(x_i, x_j) / (n(n-1)) + sum_{i!=j} k(y_i, y_j) / (m(m-1)) - 2 sum_{i,j} k(x_i, y_j) / (n m)
The normalisers count ROWS (the authors' code divided by the number of clips instead).

Numerics: always computed in fp32 (float64 inputs stay float64, for precision checks), outside autocast and
with TF32 off: squared distances come from |x|^2 + |y|^2 - 2 x.y, whose cancellation error in bf16/TF32 is
O(1) at |x|^2 ~ 512. They are clamped at 0 and computed once per pair of samples, shared by all bandwidths.
No square root is taken, so identical rows (silence) give finite gradients. (The dense path, used for tiny
problems only, runs its backward under the caller's precision settings, as autograd does.)

Memory: the tiled path is a custom autograd function that only ever holds [tile, tile] blocks (extra memory
O(tile^2 + (n + m) d), never n x m). When gradients are needed it forms them in the same pass as the value
(analytic gradient of each block: for k = f(d2), dk/dx_i = 2 f'(d2_ij)(x_i - y_j); for k = f(x.y),
dk/dx_i = f'(x_i.y_j) y_j) and stores [n, d] + [m, d] gradients; backward only scales them. That halves the
kernel evaluations and saves a third of the matmuls compared to recomputing blocks in backward. The within-
sample sums use symmetry (only blocks on or above the diagonal).
"""
from __future__ import annotations

import contextlib

import torch

from .kernels import Kernel, ResolvedKernel, median_pairwise_distance
from .sampling import random_permutation
from .validation import check_tensor

# Auto path selection: dense (plain autograd) when n*m is at most this, tiled otherwise. Measured on CPU
# (2 cores, d = 24 and 512): the tiled path, which forms its gradient in the same pass, is as fast as dense
# from 32 rows on and 2-10x faster beyond 256 rows, so dense only serves tiny problems.
DENSE_MAX_ELEMENTS = 64 * 64
# Block size of the tiled path. On CPU the elementwise passes (one per bandwidth) dominate once a block leaves
# the core's L2 cache: 384 keeps the three [tile, tile] fp32 buffers within 2 MB and, fwd+bwd with 1 thread
# (6 bandwidths), ran 2.0x faster than 2048 at n = 24,064, d = 128 (13.2 s vs 26.9 s), 1.2x at d = 512 and
# within 10 % of the best of 256-2048 at d = 24, 128 and 512. The CUDA value is not measured here (fewer, larger
# kernels amortise launch costs); benchmarks/bench_mmd.py --device cuda --tile T measures it.
DEFAULT_TILE = {"cpu": 384, "cuda": 8192}


@contextlib.contextmanager
def full_fp32_precision(device_type: str):
    """Disable autocast and TF32 (restoring the caller's settings afterwards)."""
    cuda_matmul = torch.backends.cuda.matmul.allow_tf32
    cudnn = torch.backends.cudnn.allow_tf32
    precision = torch.get_float32_matmul_precision()
    try:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        if precision != "highest":
            torch.set_float32_matmul_precision("highest")
        with torch.autocast(device_type=device_type, enabled=False):
            yield
    finally:
        if precision != "highest":
            torch.set_float32_matmul_precision(precision)
        torch.backends.cuda.matmul.allow_tf32 = cuda_matmul
        torch.backends.cudnn.allow_tf32 = cudnn


def _check_samples(x: torch.Tensor, y: torch.Tensor) -> None:
    for name, t in (("x", x), ("y", y)):
        check_tensor(t, name, ("rows", "d"))
        if t.shape[0] < 2:
            raise ValueError(f"{name} needs at least 2 rows for the U-statistic, got {t.shape[0]}")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same number of dims, got {x.shape[1]} and {y.shape[1]}")
    if x.device != y.device:
        raise ValueError(f"x and y must be on the same device, got {x.device} and {y.device}")


def _pair_matrix(kernel: ResolvedKernel, a: torch.Tensor, b: torch.Tensor, a_norm, b_norm) -> torch.Tensor:
    """d2 (distance kernels, clamped at 0) or a.b (dot kernels) for all pairs, with autograd."""
    s = a @ b.T
    if kernel.kind == "dot":
        return s
    return (a_norm[:, None] + b_norm[None, :] - 2.0 * s).clamp_min(0.0)


def _mmd2_dense(x: torch.Tensor, y: torch.Tensor, kernel: ResolvedKernel) -> torch.Tensor:
    """eq. (7) with full n x m matrices and plain autograd (small n)."""
    n, m = x.shape[0], y.shape[0]
    nx, ny = (x * x).sum(1), (y * y).sum(1)
    kxx = kernel.value(_pair_matrix(kernel, x, x, nx, nx))
    kyy = kernel.value(_pair_matrix(kernel, y, y, ny, ny))
    kxy = kernel.value(_pair_matrix(kernel, x, y, nx, ny))
    sxx = kxx.sum() - kxx.diagonal().sum()
    syy = kyy.sum() - kyy.diagonal().sum()
    return sxx / (n * (n - 1)) + syy / (m * (m - 1)) - 2.0 * kxy.sum() / (n * m)


class _Sample:
    """Rows of one sample with the operands of the block matmul.

    For distance kernels, left = [x, |x|^2, 1] and right = [-2x, 1, |x|^2], so that one matmul
    left_i . right_j gives |x_i|^2 + |x_j|^2 - 2 x_i.x_j = d2_ij directly (no elementwise passes).
    """

    def __init__(self, rows: torch.Tensor, kernel: ResolvedKernel):
        self.rows = rows
        if kernel.kind == "dot":
            self.left = self.right = rows
            return
        norm = (rows * rows).sum(1, keepdim=True)
        ones = torch.ones_like(norm)
        self.left = torch.cat([rows, norm, ones], dim=1)
        self.right = torch.cat([rows * -2.0, ones, norm], dim=1)


def _block(kernel: ResolvedKernel, a: _Sample, b: _Sample, rows_a: slice, rows_b: slice, zero_diagonal: bool,
           want_grad: bool):
    """Kernel sum over the pairs (a_i, b_j), i in rows_a, j in rows_b, and optionally its gradients."""
    t = a.left[rows_a] @ b.right[rows_b].T
    diagonal = None
    if kernel.kind == "distance":
        t.clamp_(min=0.0)
        if zero_diagonal:
            t.diagonal().fill_(float("inf"))  # k(inf) = 0 and k'(inf) = 0 for both distance kernels
        d2_range = None
        if kernel.name == "gaussian" and t.device.type == "cpu":
            # Reading the block's range on the host lets the kernel skip underflowed bandwidths and avoid
            # subnormals; worth a sync on CPU only (on GPU exponents are clamped unconditionally).
            lo, hi = torch.aminmax(t)
            d2_range = (lo.item(), hi.item() if torch.isfinite(hi) else float(torch.finfo(t.dtype).max))
        total, deriv = kernel.sum_and_derivative(t, want_grad, d2_range)
    else:
        if zero_diagonal:
            diagonal = t.diagonal().clone()
        total, deriv = kernel.sum_and_derivative(t, want_grad)
        if diagonal is not None:
            total = total - kernel.value(diagonal).sum().double()
            if deriv is not None:
                deriv.diagonal().zero_()
    if not want_grad:
        return total, None, None
    xa, xb = a.rows[rows_a], b.rows[rows_b]
    if kernel.kind == "distance":
        # d/da_i sum_j f(d2_ij) = 2 sum_j f'_ij (a_i - b_j); symmetric for b.
        grad_a = deriv.sum(1, keepdim=True) * xa
        grad_a.addmm_(deriv, xb, alpha=-1.0).mul_(2.0)
        grad_b = deriv.sum(0)[:, None] * xb
        grad_b.addmm_(deriv.T, xa, alpha=-1.0).mul_(2.0)
    else:
        grad_a = deriv @ xb
        grad_b = deriv.T @ xa
    return total, grad_a, grad_b


def _within_sum(kernel: ResolvedKernel, x: _Sample, tile: int, grad: torch.Tensor | None, weight: float):
    """weight * sum_{i != j} k(x_i, x_j), from blocks on or above the diagonal (the others count twice).

    Adds the gradient of that quantity to ``grad`` when given.
    """
    n = x.rows.shape[0]
    total = torch.zeros((), dtype=torch.float64, device=x.rows.device)
    for i0 in range(0, n, tile):
        ri = slice(i0, min(i0 + tile, n))
        for j0 in range(i0, n, tile):
            rj = slice(j0, min(j0 + tile, n))
            diag = j0 == i0
            s, ga, gb = _block(kernel, x, x, ri, rj, diag, grad is not None)
            w = weight if diag else 2.0 * weight
            total += w * s
            if grad is not None:
                grad[ri].add_(ga, alpha=w)
                grad[rj].add_(gb, alpha=w)
    return total


def _cross_sum(kernel: ResolvedKernel, x: _Sample, y: _Sample, tile: int, grad_x, grad_y, weight: float):
    """weight * sum_{i, j} k(x_i, y_j) block by block, adding its gradients to grad_x, grad_y when given."""
    want = grad_x is not None
    n, m = x.rows.shape[0], y.rows.shape[0]
    total = torch.zeros((), dtype=torch.float64, device=x.rows.device)
    for i0 in range(0, n, tile):
        ri = slice(i0, min(i0 + tile, n))
        for j0 in range(0, m, tile):
            rj = slice(j0, min(j0 + tile, m))
            s, ga, gb = _block(kernel, x, y, ri, rj, False, want)
            total += weight * s
            if want:
                grad_x[ri].add_(ga, alpha=weight)
                grad_y[rj].add_(gb, alpha=weight)
    return total


class _TiledMMD2(torch.autograd.Function):
    """eq. (7) computed block by block; gradients formed in the forward pass when they are needed."""

    @staticmethod
    def forward(ctx, x, y, kernel: ResolvedKernel, tile: int):
        want = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        n, m = x.shape[0], y.shape[0]
        grad_x = torch.zeros_like(x) if want else None
        grad_y = torch.zeros_like(y) if want else None
        xs, ys = _Sample(x, kernel), _Sample(y, kernel)
        value = _within_sum(kernel, xs, tile, grad_x, 1.0 / (n * (n - 1)))
        value += _within_sum(kernel, ys, tile, grad_y, 1.0 / (m * (m - 1)))
        value += _cross_sum(kernel, xs, ys, tile, grad_x, grad_y, -2.0 / (n * m))
        if want:
            ctx.save_for_backward(grad_x, grad_y)
        return value.to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        grad_x, grad_y = ctx.saved_tensors
        gx = grad_x * grad_out if ctx.needs_input_grad[0] else None
        gy = grad_y * grad_out if ctx.needs_input_grad[1] else None
        return gx, gy, None, None


def mmd2_unbiased(
    x: torch.Tensor,
    y: torch.Tensor,
    kernel: Kernel | str | None = None,
    *,
    median: float | None = None,
    tile: int | None = None,
) -> torch.Tensor:
    """Unbiased MMD^2 (paper eq. 7) between row samples ``x`` [n, d] and ``y`` [m, d]; n may differ from m (d: a row's
    dimension, K x N for the loss's rows of K codebook vectors of N dims).

    Args:
        kernel: a :class:`~mmd_audiocraft.core.kernels.Kernel` (name, bandwidths, bandwidth mode, median
            heuristic), a kernel name with its default bandwidths, or None for the paper's multi-scale Gaussian.
            With ``median_heuristic`` every sigma is multiplied by the median pairwise distance between rows of
            ``x`` (computed without gradient on at most 1024 evenly spaced rows): the bandwidths become scale-free.
        median: with the median heuristic, use this median distance instead of computing it from ``x``.
        tile: force the row-tiled path with this block size; by default the dense path is used when
            n * m <= DENSE_MAX_ELEMENTS and the tiled path (block size DEFAULT_TILE) otherwise.

    Returns a 0-dim fp32 tensor (float64 for float64 inputs). It can be negative: the estimator is unbiased.
    Raises ValueError for samples that are not [rows >= 2, same d] tensors on one device, or a bad tile.
    The linear kernel warns (:meth:`Kernel.warn_if_degenerate`).
    """
    _check_samples(x, y)
    kernel = Kernel.of(kernel)
    if tile is not None and (not isinstance(tile, int) or tile < 1):
        raise ValueError(f"tile must be a positive int or None, got {tile!r}")
    kernel.warn_if_degenerate(stacklevel=2)
    dtype = torch.float64 if (x.dtype == torch.float64 and y.dtype == torch.float64) else torch.float32
    with full_fp32_precision(x.device.type):
        x, y = x.to(dtype), y.to(dtype)
        if not (kernel.median_heuristic and kernel.uses_bandwidths):
            median = None
        elif median is None:
            median = median_pairwise_distance(x).item()
        spec = kernel.resolve(median)
        n, m = x.shape[0], y.shape[0]
        if tile is None and n * m <= DENSE_MAX_ELEMENTS:
            return _mmd2_dense(x, y, spec)
        return _TiledMMD2.apply(x, y, spec, tile or DEFAULT_TILE.get(x.device.type, DEFAULT_TILE["cuda"]))


def mmd2_blocks(
    x: torch.Tensor,
    y: torch.Tensor,
    block_rows: int,
    kernel: Kernel | str | None = None,
    *,
    generator: torch.Generator | None = None,
    tile: int | None = None,
) -> torch.Tensor:
    """Block (incomplete) U-statistic: the mean of eq. (7) over random disjoint blocks of ~``block_rows`` rows.

    Why: eq. (7) costs O(n m) kernel evaluations, this O((n + m) block_rows), and every row still enters (and
    gets a gradient). x [n, d] and y [m, d] are each cut into the same number of blocks, min(n, m) // block_rows,
    along random permutations drawn from ``generator``; block i of x is compared with block i of y only. Each
    block estimate is eq. (7) on a uniformly random subset of the rows, so it is unbiased for the same MMD^2 and
    so is the mean (with equal block sizes its expectation over the partition is exactly the full statistic). To
    leading order its variance equals the full statistic's away from independence, and near it, that of the
    full statistic on sqrt(n block_rows) rows, the same as a random subset of that many rows at equal cost.
    The median heuristic is computed once on all of ``x``, so every block uses the same bandwidths. ``kernel``
    and ``tile``: as in :func:`mmd2_unbiased`. With fewer than 2 blocks this is :func:`mmd2_unbiased` on all
    rows. Raises ValueError for block_rows < 2 and for bad samples.
    """
    if not isinstance(block_rows, int) or block_rows < 2:
        raise ValueError(f"block_rows must be an int >= 2, got {block_rows!r}")
    _check_samples(x, y)
    kernel = Kernel.of(kernel)
    n, m = x.shape[0], y.shape[0]
    n_blocks = min(n, m) // block_rows
    median = None
    if kernel.median_heuristic and kernel.uses_bandwidths:
        median = median_pairwise_distance(x).item()
    if n_blocks < 2:
        return mmd2_unbiased(x, y, kernel, median=median, tile=tile)
    x_blocks = random_permutation(n, generator, x.device).tensor_split(n_blocks)
    y_blocks = random_permutation(m, generator, y.device).tensor_split(n_blocks)
    total = sum(mmd2_unbiased(x[bx], y[by], kernel, median=median, tile=tile) for bx, by in zip(x_blocks, y_blocks))
    return total / n_blocks
