"""Memory soak: RSS of a few hundred real training steps of the tiny codec, with the loss off and on; prints JSON.

Issue 13: with `losses.inde` on, the RSS of `make demo` grew ~9 MB per step (1.9 GB -> 4.5 GB in 300 steps)
while the stock step stayed flat, which a 600k-step run cannot afford. Each case trains
solver=compression/encodec_mmd_tiny through audiocraft's own train loop (`common_train_valid`: the real
loader, flashy's averagers, EMA, progress logging; one epoch of `--steps` updates) in a fresh subprocess with
glibc's default malloc (MALLOC_* tuning and LD_PRELOAD removed), and reads VmRSS after every step. Cases:
- base:  losses.inde=0 (the stock step);
- live:  losses.inde=1000 (the MMD on the live batch every step, the demo's setting);
- macro: losses.inde=1000 inde.macro_batch=8 inde.every=8 (every 8th step re-encodes the 8 stored batches).
Reported per case: the peak RSS over the training steps (VmHWM, reset after the solver is built) and the RSS
slope over the second half of the steps (least squares, MB per 100 steps), with their ratios to the base case
of the same invocation: peak / base peak, and the fitted rise over the second half / base peak.
Targets: peak <= 1.2x base, and no growth after warm-up: second-half rise <= 2% of base's peak.

    python benchmarks/bench_soak.py [--steps 300] [--batch 16] [--threads 1] [--cases base live macro]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np
from bench_solver_step import build as _build  # same composition and corpus
from process_memory import MB, peak_rss_bytes, reset_peak_rss, status_kb
from solver_harness import fixture_env

CASES = {"base": ["losses.inde=0"], "live": ["losses.inde=1000"],
         "macro": ["losses.inde=1000", "inde.macro_batch=8", "inde.every=8"]}
TARGETS = {"peak_vs_base": 1.2, "second_half_rise_vs_base_peak": 0.02}


def glibc_default_env() -> dict:
    """This environment without allocator tuning (MALLOC_* variables) or a preloaded allocator."""
    return {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "LD_PRELOAD"}


def run_case(name: str, steps: int, batch: int) -> dict:
    """In this (fresh) process: RSS after each of `steps` training updates of one case, and the peak."""
    overrides = [*CASES[name], f"dataset.train.num_samples={steps * batch}", f"optim.updates_per_epoch={steps}"]
    solver = _build(overrides, batch)
    rss: list[float] = []
    step = solver.run_step

    def sampled_step(*args, **kwargs):
        out = step(*args, **kwargs)
        rss.append(status_kb("VmRSS") / 1024)
        return out

    solver.run_step = sampled_step
    solver._current_formatter = solver.get_formatter("train")  # the rest of what flashy's run_stage sets
    after_build = status_kb("VmRSS") / 1024
    reset_peak_rss()  # VmHWM := current RSS, so the peak is the training's
    solver.common_train_valid("train")
    return {"steps": len(rss), "rss_after_build_mb": after_build, "peak_rss_mb": peak_rss_bytes() / MB,
            "rss_mb": rss}


def summarise(rss: list[float]) -> dict:
    """Least-squares slope of RSS over the second half of the steps (MB per 100 steps) and the fitted rise."""
    half = len(rss) // 2
    x = np.arange(half, len(rss))
    slope = float(np.polyfit(x, np.asarray(rss[half:]), 1)[0])
    return {"slope_mb_per_100_steps": 100 * slope, "second_half_rise_mb": slope * (len(rss) - 1 - half),
            "rss_first_last_mb": [rss[0], rss[-1]], "rss_every_25_steps_mb": [round(v) for v in rss[::25]]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=300, help="training updates per case")
    ap.add_argument("--batch", type=int, default=16, help="batch size (the tiny config's is 16)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--case", choices=list(CASES), help=argparse.SUPPRESS)  # one case, in a subprocess
    args = ap.parse_args()
    if args.steps < 8:
        ap.error(f"--steps={args.steps}: need at least 8 to fit a slope over the second half")

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    if args.case:
        print(json.dumps(run_case(args.case, args.steps, args.batch)))
        return
    cases = ["base", *[c for c in args.cases if c != "base"]]  # the ratios need the base case
    results: dict = {}
    with fixture_env():
        env = glibc_default_env()
        for name in cases:
            out = subprocess.run([sys.executable, __file__, "--case", name, "--steps", str(args.steps), "--batch",
                                  str(args.batch), "--threads", str(args.threads)], capture_output=True, text=True,
                                 env=env)
            if out.returncode != 0:
                sys.exit(f"bench_soak: case {name} failed ({out.returncode}):\n{out.stderr[-4000:]}")
            case = json.loads(out.stdout.strip().splitlines()[-1])
            results[name] = {"overrides": CASES[name], "peak_rss_mb": case["peak_rss_mb"],
                             "rss_after_build_mb": case["rss_after_build_mb"], **summarise(case["rss_mb"])}
    base_peak = results["base"]["peak_rss_mb"]
    for r in results.values():
        r["peak_vs_base"] = r["peak_rss_mb"] / base_peak
        r["second_half_rise_vs_base_peak"] = r["second_half_rise_mb"] / base_peak
        r["meets_targets"] = {k: r[k] <= limit for k, limit in TARGETS.items()}
    print(json.dumps({"config": "solver=compression/encodec_mmd_tiny (4 x 128 codes, 50 Hz), CPU",
                      "steps": args.steps, "batch": args.batch, "threads": args.threads, "malloc": "glibc default",
                      "targets": TARGETS, "cases": results,
                      "all_meet_targets": all(all(r["meets_targets"].values()) for r in results.values())},
                     indent=2))


if __name__ == "__main__":
    main()
