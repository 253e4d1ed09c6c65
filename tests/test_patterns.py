"""Grouping of codes by decoding pattern, checked on hand-made tensors and against audiocraft's providers."""
from __future__ import annotations

import os
from collections import namedtuple
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mmd_audiocraft.core.patterns import group_by_pattern

Coord = namedtuple("Coord", ["t", "q"])


def labelled(b=2, k=4, t=7, n=2):
    """z[b, k, t, :] = 100 b + 10 k + t (second dim negated), so every value names its coordinates."""
    bb, kk, tt = torch.meshgrid(torch.arange(b), torch.arange(k), torch.arange(t), indexing="ij")
    code = (100 * bb + 10 * kk + tt).float()
    return torch.stack([code, -code], dim=-1)[..., :n]


def test_delay_grouping_default_delays_crops_k_minus_1_frames():
    z = labelled(b=2, k=3, t=5, n=2)
    rows = group_by_pattern(z, "delay")
    # Step s holds codebook k at frame s - k; full steps s = 2, 3, 4 (T - (K - 1) = 3 per item).
    expected = [[100 * b + 10 * k + (s - k) for k in range(3)] for b in range(2) for s in (2, 3, 4)]
    assert rows.shape == (6, 3, 2)
    assert rows[..., 0].tolist() == expected
    assert rows[..., 1].tolist() == [[-v for v in r] for r in expected]


def test_delay_grouping_custom_delays():
    z = labelled(b=1, k=3, t=6, n=1)
    rows = group_by_pattern(z, "delay", delays=[1, 1, 3])  # steps s in [3, 6 + 1): frames s-1, s-1, s-3
    expected = [[(s - 1), 10 + (s - 1), 20 + (s - 3)] for s in (3, 4, 5, 6)]
    assert rows[..., 0].tolist() == expected


def test_parallel_grouping_keeps_every_frame():
    z = labelled(b=2, k=3, t=4, n=1)
    rows = group_by_pattern(z, "parallel")
    expected = [[100 * b + 10 * k + t for k in range(3)] for b in range(2) for t in range(4)]
    assert rows[..., 0].tolist() == expected


def test_gradient_flows_through_grouping():
    z = labelled(b=2, k=3, t=5).requires_grad_(True)
    group_by_pattern(z, "delay").sum().backward()
    # Each codebook loses K-1 = 2 frames: codebook 0 (paired with earlier frames of the delayed codebooks)
    # its first two, codebook 2 its last two.
    assert z.grad[0, 0, :, 0].tolist() == [0, 0, 1, 1, 1]
    assert z.grad[0, 2, :, 0].tolist() == [1, 1, 1, 0, 0]


def test_duck_typed_pattern_object():
    # Layout as audiocraft builds it: an empty first step, steps with 2 codebooks, singles, a step past T.
    layout = [[], [Coord(0, 0)], [Coord(1, 0), Coord(0, 1)], [Coord(1, 1), Coord(2, 0)],
              [Coord(2, 1), Coord(3, 0)], [Coord(3, 1)]]
    pattern = SimpleNamespace(layout=layout, n_q=2, timesteps=3)
    z = labelled(b=1, k=2, t=3, n=1)
    rows = group_by_pattern(z, pattern)
    assert rows[..., 0].tolist() == [[1, 10], [2, 11]]  # the step with t = 3 (>= T) is dropped
    provider = SimpleNamespace(get_pattern=lambda timesteps: SimpleNamespace(layout=layout, n_q=2))
    assert torch.equal(group_by_pattern(z, provider), rows)


def test_single_codebook_steps_raise():
    layout = [[], [Coord(0, 0)], [Coord(0, 1)], [Coord(1, 0)], [Coord(1, 1)]]
    with pytest.raises(ValueError, match="trivially independent"):
        group_by_pattern(labelled(k=2, t=2), SimpleNamespace(layout=layout, n_q=2))


@pytest.mark.parametrize(
    "z,kwargs,match",
    [
        (labelled(k=3), dict(delays=[0, 1]), "delays has 2 entries"),
        (labelled(k=3, t=2), dict(), "too few"),
        (labelled(k=3), dict(pattern="interleave"), "pattern='interleave'"),
        (labelled(k=3), dict(pattern="parallel", delays=[0, 1, 2]), "parallel"),
        (labelled(k=1), dict(), "K >= 2"),
        (torch.zeros(2, 3, 4), dict(), r"\[B, K, T, N\]"),
        (labelled().masked_fill(labelled() == 3, float("nan")), dict(), "NaN"),
        (labelled().long(), dict(), "floating point"),
        (labelled(k=3), dict(pattern=SimpleNamespace(layout=[[]], n_q=4)), "n_q = 4"),
    ],
)
def test_bad_inputs_raise(z, kwargs, match):
    with pytest.raises(ValueError, match=match):
        group_by_pattern(z, **kwargs)


def test_matches_audiocraft_pattern_providers():
    """Rows equal the full steps of audiocraft's own interleaved sequence (build_pattern_sequence)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cp = pytest.importorskip("audiocraft.modules.codebooks_patterns")
    b, k, t = 2, 4, 9
    z = labelled(b=b, k=k, t=t, n=2)
    ids = torch.arange(b * k * t).view(b, k, t)  # token id = position in z[:, :, :, :]

    def expected_rows(pattern, codebooks):
        seq, _, mask = pattern.build_pattern_sequence(ids, special_token=-1)
        want = torch.zeros(k, dtype=torch.bool)
        want[list(codebooks)] = True
        steps = [s for s in range(mask.shape[1]) if torch.equal(mask[:, s], want)]
        picked = seq[:, list(codebooks)][:, :, steps]  # [B, K', S]
        flat = z.reshape(b * k * t, -1)
        return flat[picked.permute(0, 2, 1).reshape(-1)].view(-1, len(codebooks), z.shape[-1])

    cases = [
        (cp.DelayedPatternProvider(k), range(k), dict(pattern="delay")),
        (cp.DelayedPatternProvider(k, delays=[0, 2, 3, 5]), range(k), dict(pattern="delay", delays=[0, 2, 3, 5])),
        (cp.DelayedPatternProvider(k, empty_initial=2), range(k), dict(pattern="delay")),
        (cp.ParallelPatternProvider(k), range(k), dict(pattern="parallel")),
        (cp.CoarseFirstPattern(k, delays=[0, 1, 2]), range(1, k), None),
        (cp.UnrolledPatternProvider(k, flattening=[0, 1, 1, 1], delays=[0, 3, 3, 3]), range(1, k), None),
    ]
    for provider, codebooks, string_path in cases:
        ref = expected_rows(provider.get_pattern(t), codebooks)
        assert ref.shape[0] > 0
        assert torch.equal(group_by_pattern(z, provider), ref), provider
        assert torch.equal(group_by_pattern(z, provider.get_pattern(t)), ref), provider
        if string_path is not None:
            assert torch.equal(group_by_pattern(z, **string_path), ref), provider
    assert group_by_pattern(z, "delay").shape[0] == b * (t - (k - 1))
    for flat in (cp.UnrolledPatternProvider(k), cp.MusicLMPattern(k)):
        with pytest.raises(ValueError, match="trivially independent"):
            group_by_pattern(z, flat)


@pytest.mark.parametrize("delays", [None, [0, 2, 3, 5], [1, 1, 2, 3]])
def test_short_inputs_fail_alike_on_every_path_and_never_drop_a_codebook(delays):
    """The string path, audiocraft's provider and its Pattern, and the numpy code grouping agree for every T:
    the same rows from min_frames on, the same error below it (no smaller codebook set that happens to fit)."""
    cp = pytest.importorskip("audiocraft.modules.codebooks_patterns")
    from mmd_audiocraft.core.metrics import codes_to_rows
    from mmd_audiocraft.core.patterns import min_frames

    k = 4
    provider = cp.DelayedPatternProvider(k, delays=delays)
    spread = k if delays is None else max(delays) - min(delays) + 1  # hand count: first step holding all K
    assert min_frames("delay", k, delays) == min_frames(provider, k) == spread
    for t in range(1, spread + 3):
        z = labelled(b=2, k=k, t=t, n=1)
        codes = z[..., 0].long().numpy()
        paths = {"string": (group_by_pattern, z, "delay", delays),
                 "provider": (group_by_pattern, z, provider, None),
                 "pattern": (group_by_pattern, z, provider.get_pattern(t), None),
                 "numpy": (codes_to_rows, codes, "delay", delays)}
        if t < spread:
            for group, data, pattern, d in paths.values():
                with pytest.raises(ValueError, match=f"T = {t} frames is too few.*T >= {spread} frames"):
                    group(data, pattern, delays=d)
        else:
            rows = {name: torch.as_tensor(group(data, pattern, delays=d)).reshape(-1, k, 1).float()
                    for name, (group, data, pattern, d) in paths.items()}
            assert all(r.shape == (2 * (t - spread + 1), k, 1) for r in rows.values())
            assert all(torch.equal(r, rows["string"]) for r in rows.values())


def test_min_frames_of_patterns_without_a_full_step():
    cp = pytest.importorskip("audiocraft.modules.codebooks_patterns")
    from mmd_audiocraft.core.patterns import min_frames

    assert min_frames("parallel", 4) == 1
    assert min_frames(cp.ParallelPatternProvider(4), 4) == 1
    assert min_frames(cp.CoarseFirstPattern(4, delays=[0, 1, 2]), 4) == 3  # codebooks 1-3 delayed by 0, 1, 2
    with pytest.raises(ValueError, match="trivially independent"):
        min_frames(cp.UnrolledPatternProvider(4), 4)


def test_codes_and_vectors_are_grouped_by_one_rule_negative_delays_included():
    """The information measures (integer codes, numpy) and the loss (vectors, torch) use one grouping: the same
    rows for delays of any sign, written out here from the definition (step s holds codebook q at frame
    s - delays[q], for the steps where every codebook exists)."""
    from mmd_audiocraft.core.metrics import codes_to_rows

    delays, b, k, t = [1, 0, -1], 2, 3, 6
    z = labelled(b=b, k=k, t=t, n=1)
    codes = z[..., 0].long().numpy()
    hi, lo = max(delays), min(delays)
    expected = np.array([[codes[i, q, s - delays[q]] for q in range(k)] for i in range(b) for s in range(hi, t + lo)])
    np.testing.assert_array_equal(codes_to_rows(codes, "delay", delays), expected)
    np.testing.assert_array_equal(group_by_pattern(z, "delay", delays)[..., 0].long().numpy(), expected)
