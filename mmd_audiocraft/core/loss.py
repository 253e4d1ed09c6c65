"""The independence-promoting loss: MMD^2 between codes predicted together and their shuffled copy.

Pipeline (paper Algorithm 1): z [B, K, T, N] -> rows of codes one LM step predicts together
(:func:`~mmd_audiocraft.core.patterns.group_by_pattern`) -> optional random subset of rows -> (joint,
factorized) samples (:func:`factorized_sample`) -> unbiased MMD^2 (:func:`mmd2_unbiased`, or :func:`mmd2_blocks`
over random blocks of rows when ``block_rows`` is set). Codec-agnostic: any tensor of code vectors works.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .kernels import Kernel
from .mmd import mmd2_blocks, mmd2_unbiased
from .options import LossOptions
from .patterns import check_code_vectors, check_pattern_name, group_rows
from .sampling import random_permutation
from .shuffle import factorized_sample


def _options(options: LossOptions | None, kwargs: dict) -> LossOptions:
    if options is None:
        fields = LossOptions.__dataclass_fields__
        for key in kwargs:
            if key not in fields:
                where = (f" ({key} is a field of the kernel: kernel=Kernel(..., {key}=...))"
                         if key in Kernel.__dataclass_fields__ else "")
                raise ValueError(f"{key} is not an option of the loss: its options are {', '.join(fields)}{where}")
        return LossOptions(**kwargs)
    if kwargs:
        raise ValueError(f"give the loss options either as options= or as keywords, not both: {sorted(kwargs)}")
    return options


def independence_loss(
    z: torch.Tensor,
    *,
    pattern="delay",
    delays: Sequence[int] | None = None,
    generator: torch.Generator | None = None,
    options: LossOptions | None = None,
    **option_kwargs,
) -> torch.Tensor:
    """MMD^2 between the joint distribution of codes predicted together and the product of their marginals.

    Args:
        z: quantized code vectors [B, K, T, N] (gradients flow back to it).
        pattern, delays: which codes form a row, see :func:`~mmd_audiocraft.core.patterns.group_by_pattern`.
        generator: torch.Generator for the row subset, permutations and blocks (reproducible shuffles).
        options: a :class:`~mmd_audiocraft.core.options.LossOptions`, or its fields as keywords: kernel (a
            :class:`~mmd_audiocraft.core.kernels.Kernel` or a kernel name), tile (see :func:`mmd2_unbiased`);
            estimator ("paper": the same rows shuffled, reads slightly low; "disjoint": exactly unbiased,
            noisier; see :func:`factorized_sample`); max_rows (random subset of rows); block_rows (block
            U-statistic over random blocks of about this many rows, :func:`mmd2_blocks`: cost linear in rows;
            None = eq. (7) over all pairs); clamp (max(MMD^2, 0): zeroes the gradient near independence).

    Returns a 0-dim fp32 tensor (float64 for float64 inputs). Raises ValueError for a bad option (named), a
    z that is not [B, K >= 2, T, N] finite floats, or too few frames or rows for the pattern and estimator.
    """
    options = _options(options, option_kwargs)
    check_pattern_name(pattern)
    check_code_vectors(z)
    return independence_loss_from_rows(group_rows(z, pattern, delays), generator=generator, options=options)


def independence_loss_from_rows(
    rows: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    options: LossOptions | None = None,
    **option_kwargs,
) -> torch.Tensor:
    """:func:`independence_loss` on rows [n, K, N] already grouped by a decoding pattern (paper Algorithm 1
    after its grouping step): optional row subset, (joint, factorized) samples, MMD^2. Same options.

    For callers that hold grouped rows: a sample of held-out rows, or rows gathered from every process."""
    options = _options(options, option_kwargs)
    n = rows.shape[0]
    if n < 2:
        raise ValueError(f"only {n} row of codes predicted together; the loss needs at least 2 (rows have "
                         f"shape {tuple(rows.shape)})")
    if options.max_rows is not None and n > options.max_rows:
        rows = rows[random_permutation(n, generator, rows.device)[:options.max_rows]]
    joint, factorized = factorized_sample(rows, options.estimator, generator)
    if options.block_rows is None:
        value = mmd2_unbiased(joint.flatten(1), factorized.flatten(1), options.kernel, tile=options.tile)
    else:
        value = mmd2_blocks(joint.flatten(1), factorized.flatten(1), options.block_rows, options.kernel,
                            generator=generator, tile=options.tile)
    return value.clamp(min=0.0) if options.clamp else value


class MMDIndependenceLoss(nn.Module):
    """:func:`independence_loss` configured once, with its own seeded generator.

    Args: pattern, delays (see :func:`independence_loss`), seed, and the loss options (a
    :class:`~mmd_audiocraft.core.options.LossOptions` as ``options=``, or its fields as keywords), validated here.
    The generator state is part of the module's ``state_dict`` (extra state), so a resumed run draws the same
    permutations as an uninterrupted one.
    """

    def __init__(self, *, pattern="delay", delays: Sequence[int] | None = None, seed: int = 0,
                 options: LossOptions | None = None, **option_kwargs):
        super().__init__()
        check_pattern_name(pattern)
        self.pattern = pattern
        self.delays = None if delays is None else [int(d) for d in delays]
        self.loss_options = _options(options, option_kwargs)
        self.seed = int(seed)
        self.generator = torch.Generator()
        self.generator.manual_seed(self.seed)

    @property
    def options(self) -> dict:
        """pattern, delays and every loss option, by its config key."""
        return {"pattern": self.pattern, "delays": self.delays, **self.loss_options.as_config()}

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return independence_loss(z, pattern=self.pattern, delays=self.delays, generator=self.generator,
                                 options=self.loss_options)

    def get_extra_state(self):
        return {"seed": self.seed, "generator_state": self.generator.get_state()}

    def set_extra_state(self, state) -> None:
        self.seed = int(state["seed"])
        self.generator.set_state(state["generator_state"])

    def extra_repr(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items() if not (k == "pattern" and
                                                                              not isinstance(v, str)))
        return f"{opts}, seed={self.seed}"
