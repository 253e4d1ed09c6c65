"""The factorization gap against the delay/flatten LM pair, at a scale where both LMs converge.

On real codecs a tiny flatten (unroll) LM never catches up with the delay LM (K times longer sequences), so
"delay CE - flatten CE" there measures training difficulty. Here the codes are small synthetic ones
(`mmd_audiocraft.core.metrics.planted_codes`: 2 codebooks of 6 codes, 50 frames) whose exact entropy rate is known,
and audiocraft's own MusicGen LM (`audiocraft.models.lm.LMModel`, 2 layers x 64 dims, no conditioning) is
trained on fresh samples for each pattern until both reach that rate. Then, per frame in bits:

    delay LM CE - flatten LM CE   should equal   factorization_gap(pattern="delay")

for a planted link the delay pattern loses (z0[t] copies z1[t-1]: one delay step holds both; exact value
log2 6 - H(copy channel) = 1.19 bits per step) and for one it keeps (z1[t] copies z0[t]: exact value 0). The
LMs' CE is averaged over all 50 frames, of which 49 hold a lost link: their difference should read 49/50 of it.

    python scripts/check_gap_against_lms.py [--steps 300] [--seeds 0 1] [--out benchmarks/results/gap_vs_lm.json]
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

CARD, FRAMES = 6, 50
CASES = {"delay loses it": "z0 copies previous z1", "delay keeps it": "same frame"}


def tiny_lm(pattern: str, n_q: int = 2, card: int = CARD):
    """audiocraft's MusicGen LM with no conditioner: the pattern's step layout is the only difference."""
    from audiocraft.models.lm import LMModel
    from audiocraft.modules.codebooks_patterns import DelayedPatternProvider, UnrolledPatternProvider
    from audiocraft.modules.conditioners import ConditionFuser, ConditioningProvider

    provider = {"delay": DelayedPatternProvider, "unroll": UnrolledPatternProvider}[pattern](n_q=n_q)
    return LMModel(provider, ConditioningProvider({}), ConditionFuser({m: [] for m in ConditionFuser.FUSING_METHODS}),
                   n_q=n_q, card=card, dim=64,
                   num_heads=4, num_layers=2, hidden_scale=4, norm_first=True, causal=True)


def cross_entropy_bits_per_frame(lm, codes: torch.Tensor) -> torch.Tensor:
    """Mean CE over the valid positions, nats per code -> bits per frame (x K / ln 2), as MusicGenSolver's
    `_compute_cross_entropy` masks it."""
    out = lm.compute_predictions(codes, conditions=[], condition_tensors={})
    logits, mask = out.logits, out.mask  # [B, K, T, card], [B, K, T]
    ce = torch.nn.functional.cross_entropy(logits[mask], codes[mask])
    return ce * codes.shape[1] / math.log(2)


def train_lm(pattern: str, source: str, steps: int, seed: int, batch: int = 64) -> dict:
    from mmd_audiocraft.core.metrics.planted_codes import planted_chain

    torch.manual_seed(seed)
    rng = np.random.default_rng(1000 + seed)
    lm = tiny_lm(pattern)
    opt = torch.optim.AdamW(lm.parameters(), lr=2e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.1)
    held_out = torch.from_numpy(planted_chain(1024, FRAMES, source, np.random.default_rng(7), card=CARD))
    start = time.perf_counter()
    for _ in range(steps):
        codes = torch.from_numpy(planted_chain(batch, FRAMES, source, rng, card=CARD))  # fresh: no overfitting
        loss = cross_entropy_bits_per_frame(lm, codes)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    lm.eval()
    with torch.no_grad():
        ce = float(cross_entropy_bits_per_frame(lm, held_out))
    return {"ce_bits_per_frame": ce, "seconds": round(time.perf_counter() - start, 1)}


def gap(source: str, seed: int) -> dict:
    from mmd_audiocraft.core.metrics.factorization_gap import GapOptions, factorization_gap
    from mmd_audiocraft.core.metrics.planted_codes import planted_chain

    rng = np.random.default_rng(seed)
    fit, test = (planted_chain(n, FRAMES, source, rng, card=CARD) for n in (400, 160))
    options = GapOptions(context=2, embed=8, hidden=64, batch_size=256, lr=3e-3, patience=3, seeds=(seed,))
    res = factorization_gap(fit, test, CARD, pattern="delay", options=options)
    return {"total_bits": res["total_bits"], "converged": res["converged"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300, help="LM updates (64 fresh sequences each)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gap_vs_lm.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    h = lambda p: -(p * math.log2(p) + (1 - p) * math.log2((1 - p) / (CARD - 1)))  # noqa: E731 a sticky channel
    copy, stay = h(0.7 + 0.3 / CARD), h(0.6 + 0.4 / CARD)
    exact = {"delay loses it": math.log2(CARD) - copy, "delay keeps it": 0.0}
    expected = {c: e * (FRAMES - 1) / FRAMES for c, e in exact.items()}  # frame 0 has no link
    # the flatten LM's floor: the codes' entropy rate per frame (frame 0: both uniform), over FRAMES frames
    rate = {"delay loses it": math.log2(CARD) + copy, "delay keeps it": stay + copy}
    floor = {c: (2 * math.log2(CARD) + (FRAMES - 1) * r) / FRAMES for c, r in rate.items()}
    results = {}
    for case, source in CASES.items():
        rows = []
        for seed in args.seeds:
            lms = {p: train_lm(p, source, args.steps, seed) for p in ("delay", "unroll")}
            row = {"seed": seed, "delay_ce": lms["delay"]["ce_bits_per_frame"],
                   "unroll_ce": lms["unroll"]["ce_bits_per_frame"],
                   "lm_difference": lms["delay"]["ce_bits_per_frame"] - lms["unroll"]["ce_bits_per_frame"],
                   "gap": gap(source, seed)["total_bits"],
                   "lm_seconds": {p: lms[p]["seconds"] for p in lms}}
            rows.append(row)
            print(f"{case} seed {seed}: delay LM {row['delay_ce']:.3f}, flatten LM {row['unroll_ce']:.3f} bits/frame "
                  f"(entropy rate {floor[case]:.3f}); difference {row['lm_difference']:.3f}, factorization gap "
                  f"{row['gap']:.3f}, exact {exact[case]:.3f} per step ({expected[case]:.3f} over {FRAMES} frames)",
                  flush=True)
        results[case] = {"source": source, "exact_bits": exact[case],
                         "lm_difference_expected": expected[case], "entropy_rate_bits": floor[case], "runs": rows,
                         "lm_difference_mean": float(np.mean([r["lm_difference"] for r in rows])),
                         "gap_mean": float(np.mean([r["gap"] for r in rows]))}
    from mmd_audiocraft.apps.json_output import provenance, write_json

    write_json({**provenance(), "steps": args.steps, "frames": FRAMES, "card": CARD, "cases": results}, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
