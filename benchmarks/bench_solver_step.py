"""Cost of `losses.inde` in a real training step of the tiny codec (MMDCompressionSolver on CPU); prints JSON.

The solvers are composed exactly as `dora -P mmd_audiocraft run solver=compression/encodec_mmd_tiny ...`
composes them and built with audiocraft's `get_solver`, then stepped by hand (`run_step`, train mode) on the
same fixed batches of the real-music fixture. Cases:
- base:  losses.inde=0 (the stock CompressionSolver step);
- live:  losses.inde=1000, macro_batch=1 (the MMD on the live batch, every step);      target <= 1.15x base
- macro: losses.inde=1000, macro_batch=32, every=32: 31 steps only store their batch, the 32nd re-encodes the
         32 stored batches (checkpointed) for one MMD step; the cost is amortised over the 32-step cycle. The
         tiny config's MMD is the block U-statistic (inde.block_rows=4096) over all ~24k rows.
                                                                                        target <= 1.5x base
- macro_all_pairs: the same with inde.block_rows=null (eq. 7 over all ~24k^2 pairs, the paper config's choice),
         for comparison; `--macro-override` adds overrides to both macro cases.
Timing: all solvers live in one process and their steps are interleaved (base, live, macro, base, ...), so
load changes on a shared machine hit every case alike; the ratios are medians over steps (live) or the sum
over whole 32-step cycles (macro). The macro MMD step is broken down into its parts. Memory: each case in a
fresh subprocess, peak RSS during the timed steps minus the RSS after building (peak reset through
/proc/self/clear_refs), and that peak itself with its ratio to the base case's, with glibc's default malloc
and with a fixed mmap threshold (see MALLOC_SETTINGS).

    python benchmarks/bench_solver_step.py [--cycles 1] [--steps 12] [--batch 16] [--threads 1] [--no-memory]
                                           [--macro-override inde.block_rows=2048 ...]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

from process_memory import MB, peak_rss_bytes, reset_peak_rss
from solver_harness import (  # this folder is on sys.path when a script of it runs
    Timer,
    build_solver,
    fixture_env,
    train_batches,
)
from solver_harness import timed_step as _step

MACRO = 32
MACRO_ARGS = ["losses.inde=1000", f"inde.macro_batch={MACRO}", f"inde.every={MACRO}"]
CASES = {"base": ["losses.inde=0"], "live": ["losses.inde=1000"], "macro": MACRO_ARGS, "macro_all_pairs": MACRO_ARGS}
MACRO_CASES = ("macro", "macro_all_pairs")
TARGETS = {"live": 1.15, "macro": 1.5}
# glibc's malloc keeps freed heap memory (its mmap threshold rises to up to 32 MB after the first large frees),
# so a peak RSS also counts what it retained; with a fixed 128 kB threshold large tensors are mapped and
# unmapped as they are allocated and freed, and the peak RSS follows the live tensors.
MALLOC_SETTINGS = {"glibc_default": {}, "mmap_threshold_128k": {"MALLOC_MMAP_THRESHOLD_": "131072"}}


def build(overrides: list[str], batch: int, stock: bool = False):
    """The tiny codec's solver at this batch size, with these overrides."""
    argv = ["solver=compression/encodec_mmd_tiny", "dset=audio/mmd_music_16khz", f"dataset.batch_size={batch}",
            f"dataset.train.num_samples={8 * batch}", *overrides]
    return build_solver(argv, stock=stock)


def _case_overrides(name: str, macro_overrides: list[str]) -> list[str]:
    """The case's overrides; `--macro-override`s go to both macro cases, all pairs last so nothing undoes it."""
    extra = macro_overrides if name in MACRO_CASES else []
    return CASES[name] + extra + (["inde.block_rows=null"] if name == "macro_all_pairs" else [])


def _breakdown(timer: Timer, cycles: int) -> dict:
    parts = {k: v / cycles for k, v in timer.total.items()}
    inde_step = parts.pop("_independence_backward")
    return {"reencode_32_batches_s": parts["_reencode_stored"], "mmd_forward_s": parts["independence"],
            "mmd_backward_incl_encoder_recompute_s": inde_step - parts["_reencode_stored"] - parts["independence"],
            "mmd_step_total_s": inde_step}


def time_cases(batch: int, steps: int, cycles: int, macro_overrides: list[str]) -> dict:
    """Per-step times of every case, interleaved in this process."""
    solvers = {name: build(_case_overrides(name, macro_overrides), batch) for name in CASES}
    solvers["stock"] = build([], batch, stock=True)
    batches = train_batches(solvers["base"], 8)
    parts_of = ["_independence_backward", "_reencode_stored", "independence"]
    timers = {name: Timer(solvers[name], parts_of) for name in MACRO_CASES}
    live_timer = Timer(solvers["live"], parts_of[::2])
    times: dict[str, list[float]] = {name: [] for name in ("base", "live", "stock")}
    # warm-up: k-means init, allocator, and a full deque for the macro cases (their first MMD step has 1 batch)
    for i in range(MACRO):
        for name in ("base", "live", "stock") if i < 3 else ():
            _step(solvers[name], batches[i % len(batches)])
        for name in MACRO_CASES:
            _step(solvers[name], batches[i % len(batches)])
    for timer in (*timers.values(), live_timer):
        timer.reset()
    cycle_sums = {name: 0.0 for name in ("base", *MACRO_CASES)}
    for cycle in range(cycles):
        for i in range(MACRO):  # exactly one MMD step (32 stored batches) per cycle
            b = batches[i % len(batches)]
            for name in ("base", *MACRO_CASES):
                took = _step(solvers[name], b)
                cycle_sums[name] += took
                if name == "base":
                    times["base"].append(took)
            if cycle == 0 and i < steps:
                times["live"].append(_step(solvers["live"], b))
                times["stock"].append(_step(solvers["stock"], b))
    live_ratio = statistics.median(times["live"]) / statistics.median(times["base"][:len(times["live"])])
    live_parts = {k: v / len(times["live"]) for k, v in live_timer.total.items()}
    result = {
        "stock_step_s_median": statistics.median(times["stock"]),
        "base_step_s": cycle_sums["base"] / (cycles * MACRO),
        "base_step_s_median": statistics.median(times["base"]),
        "live_step_s_median": statistics.median(times["live"]),
        "live_mmd_step_s_mean": {"forward": live_parts["independence"],
                                 "forward_and_backward": live_parts["_independence_backward"]},
        "ratio_base_vs_stock_solver": statistics.median(times["base"][:len(times["stock"])])
        / statistics.median(times["stock"]),
        "ratio_live": live_ratio,
        "base_cycle_s": cycle_sums["base"] / cycles,
    }
    for name in MACRO_CASES:
        c = solvers[name].options.loss
        result[name] = {
            "overrides": _case_overrides(name, macro_overrides),
            "rows_per_mmd_step": "all" if c.max_rows is None else int(c.max_rows),
            "block_rows": None if c.block_rows is None else int(c.block_rows),
            "cycle_s": cycle_sums[name] / cycles,
            "ratio_amortised": cycle_sums[name] / cycle_sums["base"],
            "mmd_step_breakdown": _breakdown(timers[name], cycles),
        }
    return result


def memory_case(name: str, batch: int, steps: int, macro_overrides: list[str]) -> dict:
    """Run in a fresh process: peak RSS increase over the timed steps of one case."""
    solver = build(_case_overrides(name, macro_overrides), batch)
    batches = train_batches(solver, 8)
    _step(solver, batches[0])  # k-means init, allocator warm-up
    n = MACRO + 1 if name in MACRO_CASES else steps  # a macro case must reach its MMD step on 32 batches
    before = reset_peak_rss()
    for i in range(n):
        _step(solver, batches[i % len(batches)])
    peak = peak_rss_bytes()
    return {"peak_rss_mb": peak / MB, "peak_rss_delta_mb": (peak - before) / MB, "rss_after_build_mb": before / MB}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cycles", type=int, default=1, help="32-step macro cycles to time")
    ap.add_argument("--steps", type=int, default=12, help="live steps to time")
    ap.add_argument("--batch", type=int, default=16, help="batch size (the tiny config's is 16)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the tiny config runs with 1)")
    ap.add_argument("--macro-override", action="append", default=[], metavar="KEY=VALUE",
                    help="extra override for both macro cases, e.g. inde.block_rows=2048 (repeatable)")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--memory-case", choices=sorted(CASES), help=argparse.SUPPRESS)
    args = ap.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    with fixture_env():
        if args.memory_case:
            print(json.dumps(memory_case(args.memory_case, args.batch, args.steps, args.macro_override)))
            return
        result = {"device": "cpu", "threads": args.threads, "batch": args.batch, "segment_s": 1.0,
                  "config": "solver=compression/encodec_mmd_tiny (4 x 128 codes, 50 Hz)",
                  "loadavg_before": os.getloadavg()}
        result.update(time_cases(args.batch, args.steps, args.cycles, args.macro_override))
        result["targets"] = TARGETS
        result["meets_targets"] = {"live": result["ratio_live"] <= TARGETS["live"],
                                   "macro": result["macro"]["ratio_amortised"] <= TARGETS["macro"]}
        if not args.no_memory:
            memory: dict = {}
            for malloc, env_extra in MALLOC_SETTINGS.items():
                for name in CASES:
                    extra = [f"--macro-override={o}" for o in args.macro_override]
                    out = subprocess.run([sys.executable, __file__, "--memory-case", name, "--batch",
                                          str(args.batch), "--steps", str(args.steps), "--threads",
                                          str(args.threads), *extra], check=True, capture_output=True, text=True,
                                         env={**os.environ, **env_extra})
                    memory.setdefault(name, {})[malloc] = json.loads(out.stdout.strip().splitlines()[-1])
                for name in CASES:
                    peaks = memory[name][malloc], memory["base"][malloc]
                    peaks[0]["peak_vs_base"] = peaks[0]["peak_rss_mb"] / peaks[1]["peak_rss_mb"]
            result["memory"] = memory
        result["loadavg_after"] = os.getloadavg()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
