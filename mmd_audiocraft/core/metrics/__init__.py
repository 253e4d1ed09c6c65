"""Information measures between the codebooks of a discrete codec, in bits (numpy; torch tensors accepted).

Count codes with `CodeCounts` (streams and merges), then estimate entropy, mutual information and total
correlation with a shuffle-null baseline, or get everything at once with `independence_report`.
"""

from .agreement import code_agreement
from .counts import CodeCounts, codes_to_rows, default_subsets, joint_key_fits_int64
from .information import (
    ENTROPY_ESTIMATORS,
    each_vs_rest,
    entropy_from_counts,
    joint_entropy,
    miller_madow_entropy,
    mutual_information,
    plugin_entropy,
    shuffle_null,
    shuffled_counts,
    total_correlation,
)
from .plot import plot_each_vs_rest
from .report import NORMALISATIONS, SCHEMA_VERSION, codebook_usage, independence_report

__all__ = [
    "code_agreement",
    "CodeCounts",
    "codes_to_rows",
    "default_subsets",
    "joint_key_fits_int64",
    "ENTROPY_ESTIMATORS",
    "each_vs_rest",
    "entropy_from_counts",
    "joint_entropy",
    "miller_madow_entropy",
    "mutual_information",
    "plugin_entropy",
    "shuffle_null",
    "shuffled_counts",
    "total_correlation",
    "plot_each_vs_rest",
    "NORMALISATIONS",
    "SCHEMA_VERSION",
    "codebook_usage",
    "independence_report",
]
