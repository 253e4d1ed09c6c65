"""Independence metrics of the held-out codes, gathered while the stock evaluate stage encodes them.

Logged names (evaluate stage, every compression XP run through our main, `losses.inde` = 0 included):
  inde_heldout          MMD^2 of held-out per-codebook vectors (configured kernel, pattern and estimator)
  tc_pair_pct           paper protocol: TC of 5 seeded codebook pairs, % of joint entropy, shuffle-corrected
  tc_pair_raw_pct       the same, raw plug-in/Miller-Madow value (what the paper reports)
  tc_pair_null_pct      the same on per-codebook shuffled codes (the estimator's bias)
  tc_all_bits           total correlation of all codebooks, corrected, bits
  mi_rest_q{k}_bits     I(z_k; z_-k), corrected, bits (paper appendix E)
  entropy_q{k}_bits     entropy of codebook k (usage)
Codes and vectors are grouped along the configured codebooks pattern, like the loss.
"""
from __future__ import annotations

import dataclasses

from ..core.metrics import CodeCounts, codes_to_rows, independence_report
from ..core.patterns import group_rows
from ..core.sampling import VectorSample
from ..core.validation import is_int_at_least
from .capture import QuantizerPass


@dataclasses.dataclass(frozen=True)
class EvaluateOptions:
    """The `inde.evaluate` node: whether the evaluate stage measures independence, and how.

    Fields: metrics (on/off), max_rows (held-out vector rows sampled for `inde_heldout`, >= 2), null_shuffles
    (per-codebook shuffles averaged for the shuffle-null, >= 1), seed. Raises ValueError naming
    `inde.evaluate.<key>`."""
    metrics: bool = True
    max_rows: int = 4096
    null_shuffles: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [("metrics", isinstance(self.metrics, bool), "true or false"),
                  ("max_rows", is_int_at_least(self.max_rows, 2), "an int >= 2"),
                  ("null_shuffles", is_int_at_least(self.null_shuffles, 1), "an int >= 1"),
                  ("seed", is_int_at_least(self.seed, 0), "an int >= 0")]
        for key, ok, expected in checks:
            if not ok:
                raise ValueError(f"inde.evaluate.{key}={getattr(self, key)!r}: expected {expected}")


class IndependenceEvaluation:
    """Streams quantizer passes into sparse code counts and a bounded random sample of vectors."""

    def __init__(self, bins: int, pattern, rows_independence, options: EvaluateOptions, rank: int = 0):
        self.bins, self.pattern, self.rows_independence = bins, pattern, rows_independence
        self.null_shuffles, self.seed = options.null_shuffles, options.seed
        self.counts: CodeCounts | None = None
        # uniform over every row seen; keys drawn independently on each process, so that the sample merged
        # across processes is uniform over all of them
        self.sample = VectorSample(options.max_rows, options.seed + 1000 * rank)

    def add(self, qpass: QuantizerPass) -> None:
        if len(qpass.vectors) < 2:
            return
        pattern = self.pattern(len(qpass.vectors))
        rows = codes_to_rows(qpass.stacked_codes().cpu(), pattern)
        if self.counts is None:
            self.counts = CodeCounts(rows.shape[1], self.bins)
        self.counts.update(rows)
        self.sample.add(group_rows(qpass.stacked().detach().float().cpu(), pattern))

    def metrics(self) -> dict:
        if self.counts is None:
            return {}
        report = independence_report(self.counts, null_shuffles=self.null_shuffles, seed=self.seed)
        out = {"inde_heldout": float(self.rows_independence(self.sample.rows))}
        protocol = report["protocol"]
        out.update(tc_pair_pct=protocol["corrected_pct_joint"], tc_pair_raw_pct=protocol["raw_pct_joint"],
                   tc_pair_null_pct=protocol["null_pct_joint"],
                   tc_all_bits=report["total_correlation"]["corrected_bits"])
        for rec in report["each_vs_rest"]:
            out[f"mi_rest_q{rec['codebook']}_bits"] = rec["corrected_bits"]
        for rec in report["usage"]:
            out[f"entropy_q{rec['codebook']}_bits"] = rec["entropy_bits"]
        return {k: float(v) for k, v in out.items() if v is not None}  # plain floats: checkpoints stay simple
