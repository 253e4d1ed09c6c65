"""mmd-audiocraft: the independence-promoting MMD loss (Lemercier et al., ICML 2024) for audiocraft codecs.

The math (`mmd`, `loss`, `patterns`, `shuffle`, `metrics`) is plain torch/numpy and works in any training
loop; the audiocraft glue (`train`, `solvers`, `capture`) is only imported by the Dora main and the CLI.
Importing the package changes nothing in the process: the Dora main and the CLI set up what audiocraft needs
when they start.
"""
from .loss import MMDIndependenceLoss, independence_loss, independence_loss_from_rows
from .mmd import mmd2_unbiased
from .options import LossOptions
from .patterns import group_by_pattern
from .shuffle import factorized_sample, shuffle_codebooks

__version__ = "0.1.0"
__all__ = ["MMDIndependenceLoss", "independence_loss", "independence_loss_from_rows", "LossOptions",
           "mmd2_unbiased", "group_by_pattern", "factorized_sample", "shuffle_codebooks"]
