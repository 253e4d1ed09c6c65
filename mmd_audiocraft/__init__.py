"""mmd-audiocraft: the independence-promoting MMD loss (Lemercier et al., ICML 2024) for audiocraft codecs.

Three layers, one folder each; a layer imports only the layers above it in this list (tests/test_layers.py):

    core/         the math: kernels, the MMD estimator, shuffling, pattern grouping, the loss, information
                  measures. torch and numpy only: works in any training loop.
    integration/  the glue into audiocraft, Dora and Hydra: the solver, its hooks, options checks, the codebook
                  guard, multi-process training, codec loading, PVQ; every seam listed in `seams.py`.
    apps/         what users run: the `mmd-audiocraft` command (measure, compare) and the demo.

Beside them: `train.py` (the Dora main, `dora -P mmd_audiocraft`), and the repository's top-level `config/` and
`grids/`, shipped as `mmd_audiocraft.config` and `mmd_audiocraft.grids`. Importing this package loads the math
only and changes nothing in the process: the Dora main and the CLI set up what audiocraft needs when they start.
"""
from .core.kernels import Kernel
from .core.loss import MMDIndependenceLoss, independence_loss, independence_loss_from_rows
from .core.mmd import mmd2_blocks, mmd2_unbiased
from .core.options import LossOptions
from .core.patterns import group_by_pattern
from .core.shuffle import factorized_sample, shuffle_codebooks

__version__ = "0.1.0"
__all__ = ["MMDIndependenceLoss", "independence_loss", "independence_loss_from_rows", "LossOptions", "Kernel",
           "mmd2_unbiased", "mmd2_blocks", "group_by_pattern", "factorized_sample", "shuffle_codebooks"]
