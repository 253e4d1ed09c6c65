"""mmd-audiocraft: the independence-promoting MMD loss (Lemercier et al., ICML 2024) for audiocraft codecs.

The math (`mmd`, `loss`, `patterns`, `metrics`) is plain torch/numpy and works in any training loop; the
audiocraft glue (`train`, `solvers`, `capture`) is only imported by the Dora main and the CLI.
"""
from .environment import ensure_user

ensure_user()  # audiocraft's config interpolates $USER at import time

__version__ = "0.1.0"
