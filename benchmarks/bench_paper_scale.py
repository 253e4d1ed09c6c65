"""The paper's codec at its real size: what `losses.inde` costs over one full macro-batch cycle; prints JSON.

Config: solver=compression/encodec_mmd_musicgen_32khz (audiocraft's encodec_large_nq4_s640: 56.9M parameters,
32 kHz mono, 4 x 2048 codes of 128 dims at 50 Hz, MS-STFT adversary on; losses.inde=1000, macro_batch=32, every=32,
all pairs), dset=audio/mmd_music_32khz on the committed real-music fixture (16 kHz files resampled by the loader),
batches of B x 1 s from the solver's own train loader, one torch thread by default (on a shared 2-core machine two
threads made the step 5x slower, not faster). Every case runs in a fresh subprocess, one after the other, in one
run:
- stock:  losses.inde=0 (audiocraft's CompressionSolver step, bitwise);
- live:   losses.inde=1000 inde.macro_batch=1 inde.every=1 (the MMD on the live batch, every step);
- macro:  the paper's cycle, all pairs: 31 steps that only store their batch, then the MMD step, which re-encodes
          the 32 stored batches with gradient checkpointing and back-propagates eq. (7) over all their rows;
- macro_blocks: the same cycle with inde.block_rows (block U-statistic), timing --blocks-storing-steps of its
          storing steps (the others do the same work as macro's: their batches are stored without a step).
Each case first runs --warmup untimed steps (the codebooks' k-means init, ~30 s on CPU; for the macro cases also
their first MMD step, on one stored batch), then its peak memory is reset and its steps are timed. Reported: the
median seconds per step, wall and CPU (the process's, all threads: on a shared machine a case's process may get
less of the cores than another's, which `process.cpu_share` shows, and CPU-time ratios move much less with that);
the macro cycle amortised over its 32 steps (its timed storing steps, the untimed ones at
their median, and the MMD step, / 32) as a ratio to the stock step's median; the MMD step's parts (re-encoding,
MMD forward, backward through the recomputed encoder), its rows n and dimension K x D, and the loss alone on those
rows (all pairs and block_rows, forward + backward); peak memory (CPU: peak RSS, VmHWM; CUDA:
torch.cuda.max_memory_allocated) as a ratio to the stock case's; and the memory per item that the projection to
the paper's 8-GPU run (8 x 1 s per GPU, printed as a table on stderr) is derived from. The `kernel_memory` case
measures the estimator alone on random rows of the MMD step's size at two tile sizes (on CPU with a fixed malloc
mmap threshold, so that RSS follows the live tensors) and fits bytes = a * rows + c * tile^2.
Targets (a benchmark, not a test): the macro cycle with all pairs <= 1.3x the stock step amortised; every case's
peak memory <= 1.3x the stock step's.

    python benchmarks/bench_paper_scale.py [--batch 4] [--steps 4] [--warmup 1] [--storing-steps N]
        [--blocks-storing-steps 3] [--block-rows 2048] [--threads 1] [--device cpu|cuda] [--cases ...]
        [--json benchmarks/results/paper_scale_cpu.json]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import time

from process_memory import MB, peak_rss_bytes, reset_peak_rss
from solver_harness import (  # this folder is on sys.path when a script of it runs
    Timer,
    build_solver,
    fixture_env,
    timed_step,
    train_batches,
)

PAPER = ["solver=compression/encodec_mmd_musicgen_32khz", "dset=audio/mmd_music_32khz", "dataset.num_workers=0"]
MACRO = 32  # the paper's macro-batch and MMD period (inde.macro_batch = inde.every)
CASES = {
    "stock": ["losses.inde=0"],
    "live": ["losses.inde=1000", "inde.macro_batch=1", "inde.every=1"],
    "macro": ["losses.inde=1000", "inde.block_rows=null"],
    "macro_blocks": ["losses.inde=1000"],  # + inde.block_rows=--block-rows
}
MACRO_CASES = ("macro", "macro_blocks")
TARGETS = {"macro_amortised_vs_stock": 1.3, "peak_memory_vs_stock": 1.3}
DISTINCT_BATCHES = 8  # batches drawn from the loader and cycled through (as bench_solver_step.py)
KERNEL_TILES = (256, 1024)  # tile sizes of the kernel_memory case (rows must be >= the larger)
PAPER_RUN = {"gpus": 8, "batch_per_gpu": 8, "segment_s": 1.0, "macro_batch": MACRO, "cuda_tile": 8192}


# -- measuring inside a case -----------------------------------------------------------------------------------
class SavedBytes:
    """Bytes of the distinct storages autograd saves for backward inside the block (saved-tensor hooks), leaving
    out ``exclude`` (e.g. parameters). Tensors saved inside a checkpointed region are not seen: the checkpoint's
    own hooks take them."""

    def __init__(self, exclude=()):
        self.exclude = {p.untyped_storage().data_ptr() for p in exclude}
        self.storages: dict[int, int] = {}

    def _pack(self, t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in self.exclude:
            self.storages[storage.data_ptr()] = storage.nbytes()
        return t

    def __enter__(self):
        import torch

        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self._hooks.__exit__(*exc)

    @property
    def nbytes(self) -> int:
        return sum(self.storages.values())


class _Memory:
    """Peak memory of this process since `reset()`: RSS on CPU, allocated tensors on CUDA (bytes)."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")

    def reset(self) -> float:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            return float(torch.cuda.memory_allocated())
        return reset_peak_rss()

    def peak(self) -> float:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            return float(torch.cuda.max_memory_allocated())
        return peak_rss_bytes()


def _step(solver, batch) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, all threads) of one training step. On a shared machine the CPU
    time moves much less than the wall time with what other processes take."""
    cpu = time.process_time()
    wall = timed_step(solver, batch)
    return wall, time.process_time() - cpu


def _case_argv(name: str, args) -> list[str]:
    argv = [*PAPER, f"device={args.device}", f"dataset.batch_size={args.batch}",
            f"dataset.train.num_samples={DISTINCT_BATCHES * args.batch}", *CASES[name]]
    if name in MACRO_CASES:
        argv += [f"inde.macro_batch={args.macro}", f"inde.every={args.macro}"]
    if name == "macro_blocks":
        argv.append(f"inde.block_rows={args.block_rows}")
    return argv + list(args.override)


def _estimator_alone(solver, z, block_rows: int | None) -> float:
    """Seconds of the configured loss (grouping, shuffle, eq. 7 or its blocks, forward + backward) on z."""
    import torch

    from mmd_audiocraft.core.loss import independence_loss

    options = dataclasses.replace(solver.options.loss, block_rows=block_rows)
    leaf = z.detach().clone().requires_grad_(True)
    generator = torch.Generator().manual_seed(0)
    sync = torch.cuda.synchronize if leaf.is_cuda else (lambda: None)
    sync()
    begin = time.perf_counter()
    independence_loss(leaf, pattern=solver._pattern(z.shape[1]), generator=generator, options=options).backward()
    sync()
    return time.perf_counter() - begin


def _macro_cycle(solver, batches, storing_steps: int, memory: _Memory, block_rows: int | None) -> dict:
    """Storing steps then the MMD step of one cycle (the deque topped up to the cycle's position first), timed;
    then the MMD step's parts measured on their own (the loss alone on its rows, one encoder pass's activations)."""
    from mmd_audiocraft.core.patterns import group_rows

    state, every = solver.inde_state, solver.options.every
    # the MMD step is the one where (state.step - 1) % every == 0; the steps before it only store their batch
    remaining = (every - state.step % every) % every  # storing steps left before the next MMD step
    skipped = remaining - storing_steps  # run as stand-ins: their batch stored, their step counted, not timed
    if storing_steps < 1:
        raise ValueError(f"the macro cycle needs at least 1 timed storing step, got {storing_steps}")
    if skipped < 0:
        raise ValueError(f"{storing_steps} storing steps requested but only {remaining} are left in the cycle of "
                         f"{every} steps after {state.step} steps (warm-up)")
    for i in range(skipped):  # stand-ins for storing steps not run: their batches, their step count
        state.stored.append(batches[i % len(batches)].detach().cpu())
    state.step += skipped
    storing = [_step(solver, batches[(skipped + i) % len(batches)]) for i in range(storing_steps)]

    seen: dict = {}
    independence = solver.independence

    def recording_independence(z, pattern=None):
        seen["z"] = z.detach()
        return independence(z, pattern)

    solver.independence = recording_independence
    reencode = solver._reencode_stored
    params = list(solver.model.parameters())

    def counted_reencode():
        with SavedBytes(exclude=params) as saved:
            passes = reencode()
        seen["graph_bytes"] = saved.nbytes
        seen["captured_bytes"] = sum(p.emb.nbytes + sum(v.nbytes for v in p.vectors) for p in passes)
        return passes

    solver._reencode_stored = counted_reencode
    timer = Timer(solver, ["_independence_backward", "_reencode_stored", "independence"])
    mmd_step, mmd_step_cpu = _step(solver, batches[(skipped + storing_steps) % len(batches)])
    peak = memory.peak()  # the cycle's: what follows measures parts on their own
    parts = timer.total
    solver.independence, solver._reencode_stored = independence, reencode
    stored_items = sum(b.shape[0] for b in state.stored)  # what the MMD step re-encoded (its own batch included)
    stored_bytes = sum(b.nbytes for b in state.stored)
    if "z" not in seen:
        raise RuntimeError("the MMD step did not run: check --warmup, --storing-steps and inde.every")
    z = seen["z"]
    rows = group_rows(z, solver._pattern(z.shape[1]))
    n, k, d = rows.shape
    # one stored batch through the encoder with autograd: what its checkpointed recompute holds in backward
    model = solver.model
    audio = state.stored[-1].to(solver.device)
    with SavedBytes(exclude=params) as encoder_saved:
        emb = model.encoder(model.preprocess(audio)[0])
    del emb
    walls, cpus = zip(*storing)
    # one cycle = every - 1 storing steps and the MMD step; the storing steps not timed (warm-up, stand-ins) are
    # counted at the median of the timed ones
    stood_in = every - 1 - storing_steps
    cycle = sum(walls) + stood_in * statistics.median(walls) + mmd_step
    cycle_cpu = sum(cpus) + stood_in * statistics.median(cpus) + mmd_step_cpu
    return {
        "storing_steps_timed": storing_steps, "storing_steps_at_median": stood_in,
        "storing_step_s_median": statistics.median(walls), "storing_step_s": list(walls),
        "storing_step_cpu_s_median": statistics.median(cpus),
        "mmd_step_s": mmd_step, "mmd_step_cpu_s": mmd_step_cpu,
        "mmd_step_parts_s": {"reencode_forward": parts["_reencode_stored"], "mmd_forward": parts["independence"],
                             "backward_incl_encoder_recompute": parts["_independence_backward"]
                             - parts["_reencode_stored"] - parts["independence"],
                             "rest_of_step": mmd_step - parts["_independence_backward"]},
        "cycle_steps": every, "cycle_s": cycle, "step_s_amortised": cycle / every,
        "step_cpu_s_amortised": cycle_cpu / every,
        "mmd_rows": n, "mmd_dim": k * d, "codebooks": k, "frames_kept_per_item": n / stored_items,
        "estimator_alone_s": {"all_pairs": _estimator_alone(solver, z, None),
                              f"block_rows_{block_rows}": _estimator_alone(solver, z, block_rows)},
        "memory_per_item_bytes": {"stored_audio": stored_bytes / stored_items,
                                  "encoder_activations": encoder_saved.nbytes / audio.shape[0],
                                  "reencoded_graph_outside_checkpoints": seen["graph_bytes"] / stored_items,
                                  "captured_vectors": seen["captured_bytes"] / stored_items},
        "stored_items": stored_items, "peak_memory_bytes": peak,
    }


def run_case(name: str, args) -> dict:
    """One case in this (fresh) process."""
    import torch

    memory = _Memory(args.device)
    begin = time.perf_counter()
    solver = build_solver(_case_argv(name, args))
    batches = [b.to(solver.device) for b in train_batches(solver, DISTINCT_BATCHES)]
    built_s = time.perf_counter() - begin
    warmup = [_step(solver, batches[i % len(batches)])[0] for i in range(args.warmup)]
    base = memory.reset()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    wall = time.perf_counter()
    out = {"case": name, "overrides": _case_argv(name, args), "build_s": built_s, "warmup_s": warmup,
           "threads": torch.get_num_threads(), "loadavg_before": os.getloadavg()}
    if name in MACRO_CASES:
        storing = args.storing_steps if name == "macro" else args.blocks_storing_steps
        if storing is None:  # every storing step left in the cycle
            storing = (args.macro - args.warmup % args.macro) % args.macro
        out.update(_macro_cycle(solver, batches, storing, memory, args.block_rows))
        out["step_s"], out["step_cpu_s"] = out["step_s_amortised"], out["step_cpu_s_amortised"]
    else:
        walls, cpus = zip(*[_step(solver, batches[(args.warmup + i) % len(batches)]) for i in range(args.steps)])
        out.update(step_s_all=list(walls), step_s=statistics.median(walls), step_cpu_s=statistics.median(cpus))
    peak = out.pop("peak_memory_bytes", None) or memory.peak()
    # what this process got of the machine while timed: CPU seconds (user, system) and page faults per wall second
    # (a shared machine gives a process less than a core: cpu_share < threads)
    now, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - wall
    cpu = now.ru_utime - usage.ru_utime + now.ru_stime - usage.ru_stime
    out["process"] = {"wall_s": wall, "cpu_share": cpu / wall, "system_cpu_s": now.ru_stime - usage.ru_stime,
                      "minor_faults": now.ru_minflt - usage.ru_minflt}
    out.update(peak_memory_mb=peak / MB, peak_memory_over_start_mb=(peak - base) / MB,
               memory_kind="torch.cuda.max_memory_allocated" if memory.cuda else "peak RSS (VmHWM)",
               loadavg_after=os.getloadavg())
    return out


def kernel_memory(rows: int, args) -> dict:
    """Peak extra memory of the estimator alone (forward + backward, all pairs) on random rows [rows, 4, 128] at
    two tile sizes: bytes per row and per tile^2 element, fitted as a * rows + c * tile^2."""
    import torch

    from mmd_audiocraft.core.loss import independence_loss_from_rows

    memory = _Memory(args.device)
    peaks = {}
    for tile in (KERNEL_TILES[0], *KERNEL_TILES):  # the first run only warms up (thread pools, first buffers)
        z = torch.randn(rows, 4, 128, generator=torch.Generator().manual_seed(0)).to(args.device)
        z.requires_grad_(True)
        start = memory.reset()
        independence_loss_from_rows(z, generator=torch.Generator().manual_seed(0), tile=tile).backward()
        peaks[tile] = memory.peak() - start
        del z
    (t1, p1), (t2, p2) = sorted(peaks.items())
    per_tile2 = (p2 - p1) / (t2 * t2 - t1 * t1)
    return {"rows": rows, "dim": 512, "peak_extra_bytes": {str(t): p for t, p in peaks.items()},
            "bytes_per_tile2": per_tile2, "bytes_per_row": (p1 - per_tile2 * t1 * t1) / rows}


# -- the run ---------------------------------------------------------------------------------------------------
def spawn(case: str, args, extra: list[str] | None = None, env_extra: dict | None = None) -> dict:
    """One case in a fresh subprocess; its JSON."""
    cmd = [sys.executable, os.path.abspath(__file__), "--case", case, *_forwarded(args), *(extra or [])]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env_extra or {})})
    if proc.returncode != 0:
        raise RuntimeError(f"case {case} failed ({proc.returncode}):\n{proc.stderr[-6000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _forwarded(args) -> list[str]:
    out = ["--batch", str(args.batch), "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--blocks-storing-steps", str(args.blocks_storing_steps), "--block-rows", str(args.block_rows),
           "--device", args.device, "--macro", str(args.macro)]
    if args.storing_steps is not None:
        out += ["--storing-steps", str(args.storing_steps)]
    out += ["--threads", str(args.threads or 0)]
    return out + [f"--override={o}" for o in args.override]


def projection(macro: dict, kernel: dict) -> list[dict]:
    """The paper's run (8 GPUs x 8 x 1 s, macro-batch 32) per GPU, from the measured per-item numbers."""
    items = PAPER_RUN["batch_per_gpu"] * PAPER_RUN["macro_batch"]
    rows = round(items * macro["frames_kept_per_item"])
    per_item = macro["memory_per_item_bytes"]
    tile = min(PAPER_RUN["cuda_tile"], rows)
    kernel_bytes = kernel["bytes_per_row"] * rows + kernel["bytes_per_tile2"] * tile * tile
    out = [
        {"what": "rows per MMD step", "value": rows, "unit": "rows",
         "basis": f"{PAPER_RUN['macro_batch']} batches x {PAPER_RUN['batch_per_gpu']} items x "
                  f"{macro['frames_kept_per_item']:.0f} frames kept per item (delay pattern)"},
        {"what": "rows tensor", "value": rows * macro["mmd_dim"] * 4 / MB, "unit": "MiB",
         "basis": f"rows x {macro['mmd_dim']} dims (K x D) fp32"},
        {"what": "stored batches", "value": per_item["stored_audio"] * items / MB, "unit": "MiB",
         "basis": f"{items} items x {per_item['stored_audio'] / 1024:.0f} KiB (measured, 1 s at 32 kHz fp32)"},
        {"what": "re-encoding: one batch's encoder activations (recomputed in backward, one batch at a time)",
         "value": per_item["encoder_activations"] * PAPER_RUN["batch_per_gpu"] / MB, "unit": "MiB",
         "basis": f"{PAPER_RUN['batch_per_gpu']} items x {per_item['encoder_activations'] / MB:.1f} MiB saved for "
                  "backward per item (measured)"},
        {"what": "re-encoding: graph kept over the 32 passes (quantizer, captured vectors)",
         "value": (per_item["reencoded_graph_outside_checkpoints"] + per_item["captured_vectors"]) * items / MB,
         "unit": "MiB", "basis": f"{items} items x "
         f"{(per_item['reencoded_graph_outside_checkpoints'] + per_item['captured_vectors']) / 1024:.0f} KiB "
         "(measured)"},
        {"what": f"tiled kernel (tile {tile}), forward + backward", "value": kernel_bytes / MB, "unit": "MiB",
         "basis": f"{kernel['bytes_per_row'] / 1024:.1f} KiB per row + {kernel['bytes_per_tile2']:.1f} B per "
                  "tile^2 element (measured at two tiles)"},
    ]
    out.append({"what": "total extra for the MMD step", "value": sum(r["value"] for r in out[1:]), "unit": "MiB",
                "basis": "sum of the memory rows above"})
    return out


def projection_table(rows: list[dict]) -> str:
    lines = [f"| per GPU ({PAPER_RUN['gpus']} GPUs x {PAPER_RUN['batch_per_gpu']} x 1 s, macro-batch "
             f"{PAPER_RUN['macro_batch']}) | value | from |", "|---|---|---|"]
    for r in rows:
        value = f"{r['value']:,}" if r["unit"] == "rows" else f"{r['value']:,.1f} {r['unit']}"
        lines.append(f"| {r['what']} | {value} | {r['basis']} |")
    return "\n".join(lines)


def summarise(cases: dict, block_rows: int) -> dict:
    stock = cases["stock"]
    out: dict = {"step_s_median": {name: c["step_s"] for name, c in cases.items()},
                 "step_vs_stock": {name: c["step_s"] / stock["step_s"] for name, c in cases.items()},
                 "step_cpu_vs_stock": {name: c["step_cpu_s"] / stock["step_cpu_s"] for name, c in cases.items()},
                 "cpu_share": {name: c["process"]["cpu_share"] for name, c in cases.items()},
                 "peak_memory_vs_stock": {name: c["peak_memory_mb"] / stock["peak_memory_mb"]
                                          for name, c in cases.items()}}
    if "macro" in cases:
        m = cases["macro"]
        out["mmd_step"] = {"rows": m["mmd_rows"], "dim": m["mmd_dim"], "step_s": m["mmd_step_s"],
                           "estimator_alone_s": m["estimator_alone_s"]}
        if "macro_blocks" in cases:
            out["mmd_step"][f"step_s_block_rows_{block_rows}"] = cases["macro_blocks"]["mmd_step_s"]
        out["meets_targets"] = {
            "macro_amortised_vs_stock": out["step_vs_stock"]["macro"] <= TARGETS["macro_amortised_vs_stock"],
            "peak_memory_vs_stock": max(out["peak_memory_vs_stock"].values()) <= TARGETS["peak_memory_vs_stock"]}
    return out


def run_all(args, names: list[str]) -> dict:
    """Every case in its own process, then the kernel's memory and the projection; one JSON."""
    from mmd_audiocraft.apps.json_output import provenance

    started = time.perf_counter()
    result = {**provenance(),
              "config": "solver=compression/encodec_mmd_musicgen_32khz dset=audio/mmd_music_32khz",
              "device": args.device, "batch": args.batch, "segment_s": 1.0, "macro_batch": args.macro,
              "block_rows": args.block_rows, "threads": args.threads, "cpu_count": os.cpu_count(),
              "loadavg_start": os.getloadavg(), "targets": TARGETS, "cases": {}}
    with fixture_env():
        for name in ["stock", *[n for n in names if n != "stock"]]:  # ratios need the stock case
            result["cases"][name] = spawn(name, args)
            print(f"bench_paper_scale: {name}: {result['cases'][name]['step_s']:.3f} s per step "
                  f"({time.perf_counter() - started:.0f} s so far)", file=sys.stderr, flush=True)
    result["summary"] = summarise(result["cases"], args.block_rows)
    if "macro" in result["cases"]:
        rows = max(result["cases"]["macro"]["mmd_rows"], max(KERNEL_TILES))
        env = {} if args.device.startswith("cuda") else {"MALLOC_MMAP_THRESHOLD_": "131072"}
        result["kernel_memory"] = spawn("kernel_memory", args, ["--rows", str(rows)], env)
        result["projection"] = projection(result["cases"]["macro"], result["kernel_memory"])
        print(projection_table(result["projection"]), file=sys.stderr, flush=True)
    result["loadavg_end"] = os.getloadavg()
    result["wall_s"] = time.perf_counter() - started
    return result


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=4,
                    help="items of 1 s per step (default 4: the whole run takes ~15 minutes on 2 quiet cores)")
    ap.add_argument("--steps", type=int, default=4, help="timed steps of the stock and live cases")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps first (k-means init, allocator)")
    ap.add_argument("--macro", type=int, default=MACRO, help="inde.macro_batch = inde.every of the macro cases")
    ap.add_argument("--storing-steps", type=int, default=None,
                    help="storing steps timed in the macro case (default: all of the cycle's, 31 after 1 warm-up)")
    ap.add_argument("--blocks-storing-steps", type=int, default=3, help="storing steps timed in macro_blocks")
    ap.add_argument("--block-rows", type=int, default=2048,
                    help="inde.block_rows of the macro_blocks case (default 2048: 2 blocks of the 6,016 rows at batch "
                         "4, the share of the rows that 4096 is at the paper's 12,032 per GPU)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's choice)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                    help="extra override for every case (e.g. a smaller model for a smoke test)")
    ap.add_argument("--json", help="also write the JSON here (e.g. benchmarks/results/paper_scale_cpu.json)")
    ap.add_argument("--case", help=argparse.SUPPRESS)
    ap.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    return ap


def main() -> None:
    args = parser().parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.case:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        if args.case == "kernel_memory":
            out = kernel_memory(args.rows, args)
        else:
            with fixture_env():  # the parent's, when it runs the case
                out = run_case(args.case, args)
        print(json.dumps(out))
        return
    result = run_all(args, args.cases)
    text = json.dumps(result, indent=1)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
