"""mmd-audiocraft: the independence-promoting MMD loss (Lemercier et al., ICML 2024) for audiocraft codecs.

The math (`mmd`, `loss`, `patterns`, `shuffle`, `metrics`) is plain torch/numpy and works in any training
loop; the audiocraft glue (`train`, `solvers`, `capture`) is only imported by the Dora main and the CLI.
"""
from .environment import ensure_user

ensure_user()  # audiocraft's config interpolates $USER when it is imported

from .loss import MMDIndependenceLoss, independence_loss  # noqa: E402
from .mmd import mmd2_unbiased  # noqa: E402
from .patterns import group_by_pattern  # noqa: E402
from .shuffle import factorized_sample, shuffle_codebooks  # noqa: E402

__version__ = "0.1.0"
__all__ = ["MMDIndependenceLoss", "independence_loss", "mmd2_unbiased", "group_by_pattern",
           "factorized_sample", "shuffle_codebooks"]
