"""The independence-promoting loss: MMD^2 between codes predicted together and their shuffled copy.

Pipeline (paper Algorithm 1): z [B, K, T, N] -> rows of codes one LM step predicts together
(:func:`~mmd_audiocraft.patterns.group_by_pattern`) -> optional random subset of rows -> (joint, factorized) samples
(:func:`factorized_sample`) -> unbiased MMD^2 (:func:`mmd2_unbiased`, or :func:`mmd2_blocks` over random blocks
of rows when ``block_rows`` is set). Codec-agnostic: any tensor of code vectors works.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .kernels import make_kernel
from .mmd import mmd2_blocks, mmd2_unbiased
from .patterns import PATTERN_NAMES, check_codes, group_rows
from .shuffle import ESTIMATORS, factorized_sample


def _check_options(kernel, bandwidths, bandwidth_mode, estimator, max_rows, block_rows, pattern) -> None:
    make_kernel(kernel, bandwidths, bandwidth_mode, warn=False)  # raises ValueError on bad kernel settings
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator={estimator!r} is unknown; expected one of {ESTIMATORS}")
    if max_rows is not None and (not isinstance(max_rows, int) or max_rows < 2):
        raise ValueError(f"max_rows must be an int >= 2 or None, got {max_rows!r}")
    if block_rows is not None and (not isinstance(block_rows, int) or block_rows < 2):
        raise ValueError(f"block_rows must be an int >= 2 or None, got {block_rows!r}")
    if isinstance(pattern, str) and pattern not in PATTERN_NAMES:
        raise ValueError(f"pattern={pattern!r} is unknown; expected one of {PATTERN_NAMES}, an audiocraft "
                         "Pattern or a pattern provider")


def independence_loss(
    z: torch.Tensor,
    *,
    pattern="delay",
    delays: Sequence[int] | None = None,
    kernel: str = "gaussian",
    bandwidths: Sequence[float] | None = None,
    bandwidth_mode: str = "sigma",
    median_heuristic: bool = False,
    estimator: str = "paper",
    max_rows: int | None = None,
    block_rows: int | None = None,
    clamp: bool = False,
    generator: torch.Generator | None = None,
    tile: int | None = None,
) -> torch.Tensor:
    """MMD^2 between the joint distribution of codes predicted together and the product of their marginals.

    Args:
        z: quantized code vectors [B, K, T, N] (gradients flow back to it).
        pattern, delays: which codes form a row, see :func:`~mmd_audiocraft.patterns.group_by_pattern`.
        kernel, bandwidths, bandwidth_mode, median_heuristic, tile: see :func:`mmd2_unbiased`.
        estimator: "paper" (same rows shuffled; reads slightly low) or "disjoint" (exactly unbiased, noisier);
            see :func:`factorized_sample`.
        max_rows: if set and there are more rows, use a random subset of this many rows (bounds the cost).
        block_rows: if set, the block U-statistic over random blocks of about this many rows
            (:func:`mmd2_blocks`): cost linear in rows, every row used; None = eq. (7) over all pairs.
        clamp: return max(MMD^2, 0). The estimator is unbiased so it goes negative near independence; the
            clamp then zeroes the gradient, i.e. it switches the loss off near independence.
        generator: torch.Generator for the row subset and permutations (reproducible shuffles).

    Returns a 0-dim fp32 tensor (float64 for float64 inputs).
    """
    _check_options(kernel, bandwidths, bandwidth_mode, estimator, max_rows, block_rows, pattern)
    check_codes(z)
    rows = group_rows(z, pattern, delays)
    n = rows.shape[0]
    if n < 2:
        raise ValueError(f"z gives only {n} row after grouping by the pattern; the loss needs at least 2 "
                         f"(z has shape {tuple(z.shape)})")
    if max_rows is not None and n > max_rows:
        gen_device = generator.device if generator is not None else torch.device("cpu")
        keep = torch.randperm(n, generator=generator, device=gen_device)[:max_rows].to(rows.device)
        rows = rows[keep]
    joint, factorized = factorized_sample(rows, estimator, generator)
    options = dict(kernel=kernel, bandwidths=bandwidths, bandwidth_mode=bandwidth_mode,
                   median_heuristic=median_heuristic, tile=tile)
    if block_rows is None:
        value = mmd2_unbiased(joint.flatten(1), factorized.flatten(1), **options)
    else:
        value = mmd2_blocks(joint.flatten(1), factorized.flatten(1), block_rows, generator=generator, **options)
    return value.clamp(min=0.0) if clamp else value


class MMDIndependenceLoss(nn.Module):
    """:func:`independence_loss` configured once, with its own seeded generator.

    The generator state is part of the module's ``state_dict`` (extra state), so a resumed run draws the same
    permutations as an uninterrupted one. Options are validated at construction.
    """

    def __init__(
        self,
        *,
        pattern="delay",
        delays: Sequence[int] | None = None,
        kernel: str = "gaussian",
        bandwidths: Sequence[float] | None = None,
        bandwidth_mode: str = "sigma",
        median_heuristic: bool = False,
        estimator: str = "paper",
        max_rows: int | None = None,
        block_rows: int | None = None,
        clamp: bool = False,
        tile: int | None = None,
        seed: int = 0,
    ):
        super().__init__()
        _check_options(kernel, bandwidths, bandwidth_mode, estimator, max_rows, block_rows, pattern)
        self.options = dict(
            pattern=pattern,
            delays=None if delays is None else [int(d) for d in delays],
            kernel=kernel,
            bandwidths=None if bandwidths is None else [float(b) for b in bandwidths],
            bandwidth_mode=bandwidth_mode,
            median_heuristic=bool(median_heuristic),
            estimator=estimator,
            max_rows=max_rows,
            block_rows=block_rows,
            clamp=bool(clamp),
            tile=tile,
        )
        self.seed = int(seed)
        self.generator = torch.Generator()
        self.generator.manual_seed(self.seed)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return independence_loss(z, generator=self.generator, **self.options)

    def get_extra_state(self):
        return {"seed": self.seed, "generator_state": self.generator.get_state()}

    def set_extra_state(self, state) -> None:
        self.seed = int(state["seed"])
        self.generator.set_state(state["generator_state"])

    def extra_repr(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items() if not (k == "pattern" and
                                                                              not isinstance(v, str)))
        return f"{opts}, seed={self.seed}"

    @classmethod
    def from_config(cls, cfg, pattern_provider=None, seed: int | None = None) -> MMDIndependenceLoss:
        """Build from a dict-like ``inde`` node.

        Keys: kernel, bandwidths, bandwidth_mode, median_heuristic, estimator, max_rows, block_rows, clamp, tile,
        seed and codebooks_pattern (the LM schema ``{modeling: delay|parallel|..., delay: {delays: [...]}}``).
        Delay and parallel use the built-in grouping; other modelings need ``pattern_provider`` (an audiocraft
        CodebooksPatternProvider), which also takes precedence when given.
        """
        def get(node, key, default=None):
            value = node.get(key, default) if node is not None else default
            return default if value is None else value

        bandwidths = get(cfg, "bandwidths")
        options = dict(
            kernel=get(cfg, "kernel", "gaussian"),
            bandwidths=None if bandwidths is None else list(bandwidths),
            bandwidth_mode=get(cfg, "bandwidth_mode", "sigma"),
            median_heuristic=get(cfg, "median_heuristic", False),
            estimator=get(cfg, "estimator", "paper"),
            max_rows=get(cfg, "max_rows"),
            block_rows=get(cfg, "block_rows"),
            clamp=get(cfg, "clamp", False),
            tile=get(cfg, "tile"),
            seed=seed if seed is not None else get(cfg, "seed", 0),
        )
        pattern_cfg = get(cfg, "codebooks_pattern")
        modeling = get(pattern_cfg, "modeling", "delay")
        if pattern_provider is not None:
            return cls(pattern=pattern_provider, **options)
        if modeling == "parallel":
            return cls(pattern="parallel", **options)
        if modeling == "delay":
            delay_cfg = get(pattern_cfg, "delay")
            if get(delay_cfg, "flatten_first", 0):
                raise NotImplementedError("codebooks_pattern.delay.flatten_first > 0: pass pattern_provider")
            delays = get(delay_cfg, "delays")
            return cls(pattern="delay", delays=None if delays is None else list(delays), **options)
        raise NotImplementedError(
            f"codebooks_pattern.modeling={modeling!r}: pass pattern_provider (an audiocraft pattern provider) "
            "to group the codes it predicts together"
        )
