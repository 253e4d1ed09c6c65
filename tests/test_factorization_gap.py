"""The factorization gap estimator against closed-form conditional mutual information on synthetic codes.

Codes come from small Markov chains whose within-step dependence given the past is known exactly (computed
here with a hand-written entropy formula); sklearn's mutual_info_score gives the unconditional dependence.
"""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import mutual_info_score

from mmd_audiocraft.core.metrics import codes_to_rows
from mmd_audiocraft.core.metrics.factorization_gap import GapOptions, factorization_gap, split_by_index, step_codes
from mmd_audiocraft.core.metrics.planted_codes import planted_chain

C = 6        # codebook size
STAY = 0.6   # codebook 0: keeps its previous code with this probability, else uniform
COPY = 0.7   # the planted link: copies its source with this probability, else uniform
FAST = GapOptions(context=2, embed=8, hidden=64, batch_size=256, lr=3e-3, patience=3, seeds=(0,))
TWO_SEEDS = GapOptions(context=2, embed=8, hidden=64, batch_size=256, lr=3e-3, patience=3, seeds=(0, 1))


def entropy_bits(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def copy_channel(prob: float) -> np.ndarray:
    """P[b | a]: b = a with probability prob, else uniform over C codes."""
    return prob * np.eye(C) + (1 - prob) / C


def chain(items: int, frames: int, source: str, rng: np.random.Generator) -> np.ndarray:
    return planted_chain(items, frames, source, rng, card=C, stay=STAY, copy=COPY)


def planted_same_frame_bits() -> float:
    """I(z1[t]; z0[t] | past) = H(z1[t] | z0[t-1]) - H(z1[t] | z0[t]): z1[t] depends on the past only through
    z0[t], and z0[t] on the past only through z0[t-1] (the same for every value of it, by symmetry)."""
    z0_given_prev = copy_channel(STAY)[0]
    z1_given_prev = z0_given_prev @ copy_channel(COPY)
    return entropy_bits(z1_given_prev) - entropy_bits(copy_channel(COPY)[0])


def planted_delay_step_bits() -> float:
    """Delay step s holds (z0[s], z1[s-1]); z1 is i.i.d. uniform and z0[s] copies z1[s-1]: the past says nothing
    of z1[s-1], so I(z0[s]; z1[s-1] | past) = log2 C - H(copy channel)."""
    return np.log2(C) - entropy_bits(copy_channel(COPY)[0])


def gap_of(source: str, pattern: str, seed: int = 0, options: GapOptions = FAST) -> dict:
    rng = np.random.default_rng(seed)
    return factorization_gap(chain(200, 50, source, rng), chain(80, 50, source, rng), C, pattern=pattern,
                             options=options)


def test_recovers_a_planted_within_frame_dependence_given_the_past():
    truth = planted_same_frame_bits()
    gap = gap_of("same frame", "parallel")
    assert truth > 0.3
    assert gap["total_bits"] == pytest.approx(truth, rel=0.1)
    assert gap["per_codebook_bits"][0] == 0.0 and gap["per_codebook_bits"][1] == pytest.approx(gap["total_bits"])
    assert gap["converged"] and gap["test_entropy_bits"][1] == pytest.approx(np.log2(C), abs=0.05)


def test_under_trained_predictors_are_flagged_not_converged():
    rng = np.random.default_rng(2)
    short = GapOptions(context=2, embed=2, hidden=2, max_epochs=1, lr=1e-5)
    gap = factorization_gap(chain(60, 40, "same frame", rng), chain(20, 40, "same frame", rng), C,
                            pattern="parallel", options=short)
    assert not gap["converged"]


def test_reads_zero_on_codes_independent_given_the_past_though_dependent_unconditionally():
    rng = np.random.default_rng(1)
    codes = chain(240, 60, "previous frame", rng)
    unconditional = mutual_info_score(codes[:, 0].ravel(), codes[:, 1].ravel()) / np.log(2)
    assert unconditional > 0.1  # a frame-level TC would call these codes dependent
    gap = gap_of("previous frame", "parallel", seed=1, options=TWO_SEEDS)
    assert len(gap["seeds"]) == 2 and gap["spread_bits"] < 0.03
    assert abs(gap["total_bits"]) <= max(3 * gap["spread_bits"], 0.03)


def test_the_gap_is_the_patterns_own_a_dependence_across_frames_costs_delay_not_parallel():
    truth = planted_delay_step_bits()
    delay, parallel = gap_of("z0 copies previous z1", "delay"), gap_of("z0 copies previous z1", "parallel")
    assert delay["total_bits"] == pytest.approx(truth, rel=0.1)
    assert abs(parallel["total_bits"]) <= max(3 * parallel["spread_bits"], 0.03)


def test_step_codes_follow_the_patterns_rows():
    codes = np.random.default_rng(0).integers(0, C, (3, 4, 9))
    for pattern in ("delay", "parallel"):
        steps = step_codes(codes, pattern)
        assert len(steps) == 3
        np.testing.assert_array_equal(np.concatenate(steps), codes_to_rows(codes, pattern))
    assert steps[0].shape == (9, 4) and step_codes(codes, "delay")[0].shape == (6, 4)


def test_split_by_index_keeps_every_item_once():
    fit, valid, test = split_by_index(list(range(12)))
    assert sorted(fit + valid + test) == list(range(12))
    assert valid == [3, 8] and test == [4, 9]
    with pytest.raises(ValueError, match="at least 3"):
        split_by_index([1, 2])


@pytest.mark.parametrize("bad, match", [
    (lambda c: c + C, r"outside \[0, card=6\)"),
    (lambda c: c[:, :1], "K = 1"),
    (lambda c: c[:, :, :2], "context=2"),
])
def test_bad_codes_are_refused_with_the_reason(bad, match):
    codes = np.random.default_rng(0).integers(0, C, (20, 2, 30))
    with pytest.raises(ValueError, match=match):
        factorization_gap(bad(codes), bad(codes), C, pattern="parallel", options=FAST)


def test_options_are_checked():
    with pytest.raises(ValueError, match="GapOptions.context=0"):
        GapOptions(context=0)
