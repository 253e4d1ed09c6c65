"""The sweep behind the recommended small-codec setting (README, `solver=compression/encodec_mmd_tiny_recommended`).

Trains the demo's tiny codec (same corpus and overrides as `make demo`, but batches of 16: `SWEEP`) for each
candidate setting and seed, in the demo's Dora dir, then measures each codec on the valid split (where the setting
is chosen) and on the evaluate split (where it is reported): corrected pairwise TC, per-codebook entropy, log-mel
L1, and the delay pattern's factorization gap (predictors fit on train codes, stopped on valid codes, scored on
evaluate).

    python scripts/sweep_recommended.py --seeds 42 43 [--settings baseline paper grad_ratio=1 ...]
        [--out benchmarks/results/sweep_recommended.json]

The criteria (issue 14): TC <= 0.4x the baseline's, every codebook's entropy >= 0.9x, log-mel L1 no worse,
and a gap smaller than the baseline's by more than the seed-to-seed spread. Results merge into --out's "runs", so
seeds and settings can be added run by run; its "command" and "date" are the last run's.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

CANDIDATES = {
    "baseline": ["losses.inde=0"],
    "paper": ["losses.inde=1000"],
    "grad_ratio=1": ["losses.inde=1000", "inde.grad_ratio=1"],
    "grad_ratio=3": ["losses.inde=1000", "inde.grad_ratio=3"],
    "inde=10": ["losses.inde=10"],
    "inde=100 disjoint": ["losses.inde=100", "inde.estimator=disjoint"],
    "grad_ratio=10": ["losses.inde=1000", "inde.grad_ratio=10"],
}


def measure(name: str, sig: str, manifests: Path, gap, splits=("valid", "evaluate")) -> dict:
    from mmd_audiocraft.apps.demo.run import evaluate_codec, training_summary
    from mmd_audiocraft.integration import xps
    from mmd_audiocraft.train import main as dora_main

    out = {"xp": sig, "training": training_summary(xps.xp_folder(sig, dora_main.dora.dir))}
    for split in splits:
        res = evaluate_codec(sig, manifests, quick=False, gap=gap if split == "evaluate" else None, split=split)
        report = res["report"]
        out[split] = {"tc_corrected_pct": report["protocol"]["corrected_pct_joint"],
                      "tc_raw_pct": report["protocol"]["raw_pct_joint"],
                      "entropy_bits": [u["entropy_bits"] for u in report["usage"]],
                      "log_mel_l1": res["reconstruction"]["log_mel_l1"], "gap": res["gap"]}
        print(f"{name} {split}: {json.dumps(out[split])}", flush=True)
    return out


def table(results: dict) -> str:
    """Markdown table of the evaluate split, one row per setting (mean over its seeds, each seed's value listed),
    with each criterion against the baseline's mean."""
    import numpy as np

    by_setting: dict[str, list[dict]] = {}
    for name, res in results.items():
        by_setting.setdefault(name.rsplit(" seed=", 1)[0], []).append(res["evaluate"])
    base = by_setting["baseline"]
    b_tc = np.mean([r["tc_corrected_pct"] for r in base])
    b_ent = np.mean([r["entropy_bits"] for r in base], axis=0)
    b_mel = np.mean([r["log_mel_l1"] for r in base])
    b_gap = [r["gap"]["total_bits"] for r in base if r.get("gap")]
    b_std = [r["gap"]["spread_bits"] for r in base if r.get("gap")]
    lines = ["| setting | seeds | corrected TC, % joint H | min entropy ratio | log-mel L1 | gap, bits/step | "
             "criteria met |", "|---|---|---|---|---|---|---|"]
    for name, runs in by_setting.items():
        tc = [r["tc_corrected_pct"] for r in runs]
        ent = min(float(np.min(np.mean([r["entropy_bits"] for r in runs], axis=0) / b_ent)), 9.99)
        mel = [r["log_mel_l1"] for r in runs]
        gap = [r["gap"]["total_bits"] for r in runs if r.get("gap")]
        std = [r["gap"]["spread_bits"] for r in runs if r.get("gap")]
        # the larger of the codec seeds' range and the predictor seeds' std (within one codec), either setting
        spread = max(np.ptp(gap) if len(gap) > 1 else 0.0, np.ptp(b_gap) if len(b_gap) > 1 else 0.0,
                     *std, *b_std)
        met = [np.mean(tc) <= 0.4 * b_tc, ent >= 0.9, np.mean(mel) <= b_mel,
               bool(gap) and bool(b_gap) and np.mean(b_gap) - np.mean(gap) > spread and len(gap) > 1]
        cell = lambda v, f: " / ".join(format(x, f) for x in v)  # noqa: E731
        seeds = [len(r["gap"]["seeds"]) for r in runs if r.get("gap")]
        gaps = " / ".join(f"{g:.3f} ± {d:.3f}" if n > 1 else f"{g:.3f} (1 predictor)"
                          for g, d, n in zip(gap, std, seeds)) or "-"
        lines.append(f"| {name} | {len(runs)} | {cell(tc, '.2f')} | {ent:.2f} | {cell(mel, '.3f')} | {gaps} | "
                     f"{'TC ' if met[0] else ''}{'H ' if met[1] else ''}{'mel ' if met[2] else ''}"
                     f"{'gap' if met[3] else ''} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    parser.add_argument("--settings", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/sweep_recommended.json"))
    parser.add_argument("--measure-only", action="store_true", help="measure finished XPs, train nothing")
    parser.add_argument("--splits", nargs="+", default=["valid", "evaluate"], choices=["valid", "evaluate"],
                        help="where to measure: valid (choosing), evaluate (reporting, with the gap)")
    parser.add_argument("--table", type=Path, nargs="+", metavar="RESULTS.json",
                        help="print the markdown table of these results files (merged) and exit")
    args = parser.parse_args()
    if args.table:
        merged = {}
        for path in args.table:
            merged.update(json.loads(path.read_text())["runs"])
        print(table(merged))
        return 0

    from mmd_audiocraft.apps.demo import corpus
    from mmd_audiocraft.apps.demo.run import GAP_FULL, SWEEP, cache_dir, common_args, train_all
    from mmd_audiocraft.integration.process import prepare_process

    prepare_process()
    root = corpus.build(sample_rates=(16000,), quick=False)
    env = dict(os.environ, MMD_AUDIOCRAFT_CORPUS=str(root), AUDIOCRAFT_DORA_DIR=str(cache_dir() / "demo" / "dora"),
               HF_HUB_OFFLINE="1")
    os.environ.update({k: env[k] for k in ("MMD_AUDIOCRAFT_CORPUS", "AUDIOCRAFT_DORA_DIR", "HF_HUB_OFFLINE")})
    runs = {f"{name} seed={seed}": common_args(SWEEP, seed) + CANDIDATES[name]
            for seed in args.seeds for name in args.settings}
    if args.measure_only:
        from mmd_audiocraft.train import main as dora_main

        sigs = {name: dora_main.get_xp(overrides).sig for name, overrides in runs.items()}
    else:
        sigs = train_all(runs, env)
    from mmd_audiocraft.apps.json_output import provenance, write_json

    for name, sig in sigs.items():
        result = measure(name, sig, root / "music_16khz", GAP_FULL, args.splits)
        recorded = json.loads(args.out.read_text())["runs"] if args.out.exists() else {}
        recorded[name] = {**recorded.get(name, {}), **result}  # a split not measured now keeps its numbers
        write_json({**provenance(), "runs": recorded}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
