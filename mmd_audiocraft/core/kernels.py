"""Kernels for the MMD independence loss: the kernel as chosen (:class:`Kernel`, one object from the config to
the estimator) and the same kernel resolved into the numbers the estimators evaluate (:class:`ResolvedKernel`).

Two families, because their gradients have different shapes:
- distance kernels k = f(d2) with d2 = |x - y|^2 (``gaussian``, ``inverse``): the squared distances are
  computed once per pair of samples and every bandwidth reuses them;
- dot kernels k = f(s) with s = x . y (``linear``, ``quadratic``).

A :class:`ResolvedKernel` carries f and f' evaluated on a whole block, so the tiled estimator can form the
analytic gradient without autograd, and the dense estimator can differentiate the same formula with autograd.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch

KERNELS = ("gaussian", "inverse", "linear", "quadratic")
BANDWIDTH_MODES = ("sigma", "variance")
DEFAULT_BANDWIDTHS = {"gaussian": (0.1, 1.0, 5.0, 10.0, 20.0, 50.0), "inverse": (12.0,)}
# Rows used by the median heuristic: pairwise distances of more rows cost O(n^2) memory for no gain.
MEDIAN_HEURISTIC_ROWS = 1024


@dataclass(frozen=True)
class Kernel:
    """The kernel k of the paper's eq. (7) as a user chooses it; validated at construction.

    Fields (the config keys `inde.kernel`, `inde.bandwidths`, `inde.bandwidth_mode`, `inde.median_heuristic`):
        name: "gaussian" (sum over sigmas of exp(-d2 / (2 sigma^2)), the paper's multi-scale kernel, default
            sigmas 0.1, 1, 5, 10, 20, 50), "inverse" (sum of (1 + d2 / sigma^2)^-1, default sigma 12), "linear"
            (x . y: degenerate under per-codebook shuffling, see :meth:`warn_if_degenerate`) or "quadratic"
            ((x . y)^2).
        bandwidths: the sigmas, in the units of the code vectors (None: the kernel's defaults above; ignored by
            the dot kernels).
        bandwidth_mode: "sigma" (the paper's reading) or "variance" (the list read as sigma^2, how the authors'
            code used the same numbers).
        median_heuristic: multiply every sigma by the median pairwise distance between the joint sample's rows.

    Raises ValueError naming the config key, its value and what was expected.
    """

    name: str = "gaussian"
    bandwidths: tuple[float, ...] | None = None
    bandwidth_mode: str = "sigma"
    median_heuristic: bool = False

    def __post_init__(self) -> None:
        if self.name not in KERNELS:
            raise ValueError(f"kernel={self.name!r} is unknown; expected one of {KERNELS}")
        if self.bandwidth_mode not in BANDWIDTH_MODES:
            raise ValueError(f"bandwidth_mode={self.bandwidth_mode!r} is unknown; expected one of {BANDWIDTH_MODES}")
        if not isinstance(self.median_heuristic, bool):
            raise ValueError(f"median_heuristic={self.median_heuristic!r}: expected true or false")
        if self.bandwidths is None:
            return
        values = (self.bandwidths,) if isinstance(self.bandwidths, (int, float)) else tuple(self.bandwidths)
        try:
            values = tuple(float(b) for b in values)
        except (TypeError, ValueError):
            raise ValueError(f"bandwidths={self.bandwidths!r}: expected a list of numbers > 0") from None
        if not values:
            raise ValueError("bandwidths is empty; expected at least one positive bandwidth")
        for b in values:
            if not (b > 0 and math.isfinite(b)):
                raise ValueError(f"bandwidths must be finite and > 0, got {b!r} in {values}")
        object.__setattr__(self, "bandwidths", values)

    @classmethod
    def of(cls, kernel: Kernel | str | None) -> Kernel:
        """A Kernel from a Kernel, a kernel name (its default bandwidths) or None (the paper's)."""
        if kernel is None:
            return cls()
        if isinstance(kernel, str):
            return cls(kernel)
        if not isinstance(kernel, cls):
            raise ValueError(f"kernel must be a Kernel or a kernel name, got {type(kernel).__name__}")
        return kernel

    @property
    def uses_bandwidths(self) -> bool:
        return self.name in DEFAULT_BANDWIDTHS

    @property
    def bandwidths_used(self) -> tuple[float, ...]:
        """The bandwidths this kernel evaluates with: the given ones, else its defaults; () for dot kernels."""
        if not self.uses_bandwidths:
            return ()
        return self.bandwidths if self.bandwidths is not None else DEFAULT_BANDWIDTHS[self.name]

    def warn_if_degenerate(self, stacklevel: int = 2) -> None:
        """The linear kernel warns: shuffling each codebook's rows keeps its column sums, so the statistic is ~0
        whatever the dependence and its gradient carries no independence signal."""
        if self.name == "linear":
            warnings.warn(
                "kernel='linear' is degenerate for the independence loss: shuffling each codebook's rows keeps "
                "its column sums, so the MMD is ~0 whatever the dependence between codebooks.",
                UserWarning, stacklevel=stacklevel + 1)

    def resolve(self, median: float | None = None) -> ResolvedKernel:
        """The numbers the estimators evaluate. ``median`` (the median heuristic's distance) multiplies every
        sigma; ValueError when it is not a positive finite number."""
        if not self.uses_bandwidths:
            return ResolvedKernel(self.name, "dot")
        variances = [b if self.bandwidth_mode == "variance" else b * b for b in self.bandwidths_used]
        if median is not None:
            median = float(median)
            if not (median > 0 and math.isfinite(median)):
                raise ValueError(
                    f"median heuristic gave a median pairwise distance of {median!r}; it needs rows that differ")
            variances = [v * median * median for v in variances]
        if self.name == "gaussian":
            return ResolvedKernel(self.name, "distance", tuple(0.5 / v for v in variances))
        return ResolvedKernel(self.name, "distance", tuple(1.0 / v for v in variances))


@dataclass(frozen=True)
class ResolvedKernel:
    """A :class:`Kernel` with its bandwidths resolved to plain numbers.

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
