"""Kernels for the MMD independence loss, resolved once into a small spec the estimators share.

Two families, because their gradients have different shapes:
- distance kernels k = f(d2) with d2 = |x - y|^2 (``gaussian``, ``inverse``): the squared distances are
  computed once per pair of samples and every bandwidth reuses them;
- dot kernels k = f(s) with s = x . y (``linear``, ``quadratic``).

A :class:`Kernel` carries f and f' evaluated on a whole block, so the tiled estimator can form the analytic
gradient without autograd, and the dense estimator can differentiate the same formula with autograd.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch

KERNELS = ("gaussian", "inverse", "linear", "quadratic")
BANDWIDTH_MODES = ("sigma", "variance")
DEFAULT_BANDWIDTHS = {"gaussian": (0.1, 1.0, 5.0, 10.0, 20.0, 50.0), "inverse": (12.0,)}
# Rows used by the median heuristic: pairwise distances of more rows cost O(n^2) memory for no gain.
MEDIAN_HEURISTIC_ROWS = 1024


@dataclass(frozen=True)
class Kernel:
    """A kernel with its bandwidths resolved to plain numbers.

    ``kind`` is "distance" (argument d2) or "dot" (argument x . y). ``scales`` are the per-bandwidth
    multipliers of d2: 1 / (2 sigma^2) for ``gaussian``, 1 / sigma^2 for ``inverse``; empty for dot kernels.
    """

    name: str
    kind: str
    scales: tuple[float, ...] = ()

    def value(self, t: torch.Tensor) -> torch.Tensor:
        """Kernel values on a block of d2 (distance kernels) or x . y (dot kernels); autograd friendly."""
        if self.name == "gaussian":
            floor = exp_floor(t.dtype)
            return sum(torch.exp((t * (-c)).clamp_min(floor)) for c in self.scales)
        if self.name == "inverse":
            return sum(1.0 / (1.0 + t * c) for c in self.scales)
        if self.name == "linear":
            return t
        return t * t

    def sum_and_derivative(self, t: torch.Tensor, want_derivative: bool, d2_range: tuple[float, float] | None = None):
        """(sum of k over the block as a float64 0-dim tensor, dk/dt block or None). May overwrite ``t``.

        ``d2_range``: for the Gaussian, (min, max) of ``t``, used to skip bandwidths whose every exponential
        is below the smallest normal float and to clamp exponents only on blocks that need it
        (see :func:`exp_floor`).
        """
        if self.name == "linear":
            return t.sum().double(), (torch.ones_like(t) if want_derivative else None)
        if self.name == "quadratic":
            deriv = t * 2.0 if want_derivative else None
            return (t * t).sum().double(), deriv
        total = torch.zeros((), dtype=torch.float64, device=t.device)
        deriv = torch.zeros_like(t) if want_derivative else None
        buf = torch.empty_like(t)
        if self.name == "gaussian":
            floor = exp_floor(t.dtype)
            lo, hi = d2_range if d2_range is not None else (None, None)
            for c in self.scales:
                if lo is not None and -lo * c < floor:
                    continue  # every value of this bandwidth is below exp(floor) ~ 1e-37: treated as 0
                torch.mul(t, -c, out=buf)
                if hi is None or -hi * c < floor:
                    buf.clamp_(min=floor)
                buf.exp_()
                total += buf.sum()
                if deriv is not None:
                    deriv.add_(buf, alpha=-c)
            return total, deriv
        for c in self.scales:  # inverse: f = 1 / (1 + c d2), f' = -c f^2
            torch.mul(t, c, out=buf)
            buf.add_(1.0).reciprocal_()
            total += buf.sum()
            if deriv is not None:
                deriv.addcmul_(buf, buf, value=-c)
        return total, deriv


def exp_floor(dtype: torch.dtype) -> float:
    """Smallest exponent the Gaussian kernel evaluates: 1 above log(smallest normal float).

    exp() of a more negative argument is subnormal or 0, and is ~250x slower on CPU (measured); clamping the
    exponent there changes each kernel value by less than 1e-37 (fp32) and its gradient accordingly.
    """
    return math.log(torch.finfo(dtype).tiny) + 1.0


def median_pairwise_distance(x: torch.Tensor, max_rows: int = MEDIAN_HEURISTIC_ROWS) -> torch.Tensor:
    """Median Euclidean distance between distinct rows of ``x`` (detached, float64).

    Pairs of identical rows are left out: when codes collapse (or audio is silent) most rows repeat, the plain
    median is 0, and bandwidths scaled by it would blow the gradient up. With no distinct pair at all, 1.
    Uses at most ``max_rows`` rows spread evenly over ``x`` (rows are usually ordered by clip and time, so a
    prefix would see one clip only); that keeps the cost O(max_rows^2) whatever n is.
    """
    with torch.no_grad():
        x = x.detach().double()
        n = x.shape[0]
        if n > max_rows:
            x = x[torch.linspace(0, n - 1, max_rows, device=x.device).round().long()]
            n = max_rows
        norm = (x * x).sum(1)
        d2 = (norm[:, None] + norm[None, :] - 2.0 * (x @ x.T)).clamp_min(0.0)  # float64: cancellation is harmless
        iu = torch.triu_indices(n, n, offset=1, device=x.device)
        dist = d2[iu[0], iu[1]].sqrt()
        dist = dist[dist > 0]
        if dist.numel() == 0:
            return torch.ones((), dtype=torch.float64, device=x.device)
        half = dist.numel() // 2  # interpolated median, as numpy's, by selection rather than sorting
        upper = dist.kthvalue(half + 1).values
        return upper if dist.numel() % 2 else 0.5 * (dist.kthvalue(half).values + upper)


def make_kernel(
    kernel: str = "gaussian",
    bandwidths: Sequence[float] | None = None,
    bandwidth_mode: str = "sigma",
    median: float | None = None,
    *,
    warn: bool = True,
) -> Kernel:
    """Resolve a kernel name and bandwidths into a :class:`Kernel`.

    ``bandwidths`` are sigmas (``bandwidth_mode="sigma"``, the paper's reading) or sigma^2 (``"variance"``,
    how the authors' code used the same list). ``median`` (from the median heuristic) multiplies every sigma.
    Dot kernels ignore bandwidths. The linear kernel warns: per-codebook shuffling keeps each block's column
    sums, so the statistic is ~0 whatever the dependence and its gradient carries no independence signal.
    """
    if kernel not in KERNELS:
        raise ValueError(f"kernel={kernel!r} is unknown; expected one of {KERNELS}")
    if bandwidth_mode not in BANDWIDTH_MODES:
        raise ValueError(f"bandwidth_mode={bandwidth_mode!r} is unknown; expected one of {BANDWIDTH_MODES}")
    if kernel in ("linear", "quadratic"):
        if kernel == "linear" and warn:
            warnings.warn(
                "kernel='linear' is degenerate for the independence loss: shuffling each codebook's rows keeps "
                "its column sums, so the MMD is ~0 whatever the dependence between codebooks.",
                UserWarning,
                stacklevel=3,
            )
        return Kernel(kernel, "dot")
    if bandwidths is None:
        bandwidths = DEFAULT_BANDWIDTHS[kernel]
    elif isinstance(bandwidths, (int, float)):
        bandwidths = (bandwidths,)
    values = tuple(float(b) for b in bandwidths)
    if not values:
        raise ValueError("bandwidths is empty; expected at least one positive bandwidth")
    for b in values:
        if not (b > 0 and math.isfinite(b)):
            raise ValueError(f"bandwidths must be finite and > 0, got {b!r} in {values}")
    variances = [b if bandwidth_mode == "variance" else b * b for b in values]
    if median is not None:
        median = float(median)
        if not (median > 0 and math.isfinite(median)):
            raise ValueError(
                f"median heuristic gave a median pairwise distance of {median!r}; it needs rows that differ"
            )
        variances = [v * median * median for v in variances]
    if kernel == "gaussian":
        return Kernel(kernel, "distance", tuple(0.5 / v for v in variances))
    return Kernel(kernel, "distance", tuple(1.0 / v for v in variances))
