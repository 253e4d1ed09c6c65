"""Speed and memory of the MMD^2 estimator vs a naive dense baseline and the matmul floor; prints JSON.

Cases, each timed forward + backward on x, y ~ scale * N(0, 1) of shape [n, d], 6 Gaussian bandwidths:
- ours:  mmd_audiocraft.core.mmd.mmd2_unbiased (automatic dense/tiled choice);
- naive: torch.cdist per bandwidth, every kernel matrix kept for autograd (how such code is often written);
- floor: the three n x n x d Gram matmuls alone (x@x.T, y@y.T, x@y.T), forward + backward;
- gemm:  the fp32 GEMM floor: one n x d x n product (TF32 off) timed and scaled to the FLOP count of the matrix
         products our tiled path runs (`matmul_flops`), i.e. the time the estimator would take at GEMM speed;
- blocks: mmd_audiocraft.core.mmd.mmd2_blocks with blocks of BLOCK_ROWS rows (`inde.block_rows`), where n allows 2+.
Every case runs in a fresh subprocess; peak extra memory = peak RSS minus the RSS after imports and input
allocation (CPU; the peak is reset through /proc/self/clear_refs), or torch.cuda.max_memory_allocated minus
the allocation after inputs (CUDA). The naive case is skipped where its memory estimate (scaled as n^2 from
the last measured size) exceeds 80% of free memory; its ratio is then reported against the estimate.
CPU timings on a shared machine depend on its load: the JSON records the load average.

    python benchmarks/bench_mmd.py [--sizes 1024,4096,16384] [--big] [--device cpu|cuda] [--threads N]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from process_memory import MB, peak_rss_bytes, reset_peak_rss  # this folder is on sys.path when a script of it runs

SIGMAS = (0.1, 1.0, 5.0, 10.0, 20.0, 50.0)
# Bytes per n^2 element the naive case keeps alive (per bandwidth and pair: the cdist output, saved for
# backward, and the exp output; 3 pairs x 6 bandwidths x 2 fp32 matrices, plus transients).
NAIVE_BYTES_PER_N2 = 4 * (3 * len(SIGMAS) * 2 + 4)
BIG_N = 32768
BLOCK_ROWS = 4096
BIG_LIMIT_MB = 2048.0


def _available_mb() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return float(line.split()[1]) / 1024.0
    return float("inf")


def _naive(x, y):
    import torch

    def k(a, b):
        return sum(torch.exp(-torch.cdist(a, b) ** 2 / (2 * s * s)) for s in SIGMAS)

    n, m = x.shape[0], y.shape[0]
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    sxx = kxx.sum() - kxx.diagonal().sum()
    syy = kyy.sum() - kyy.diagonal().sum()
    return sxx / (n * (n - 1)) + syy / (m * (m - 1)) - 2 * kxy.sum() / (n * m)


def _floor(x, y):
    return (x @ x.T).sum() + (y @ y.T).sum() + (x @ y.T).sum()


def matmul_flops(n: int, m: int, dim: int, tile: int, grad: bool = True) -> float:
    """FLOPs of the matrix products that `mmd2_unbiased`'s tiled path runs for a distance kernel on x [n, dim],
    y [m, dim] (core/mmd.py: blocks on or above the diagonal within each sample, every block across them; per
    block of r x s rows the squared distances, one product of width dim + 2, and with gradients the two products
    that form them, of width dim). Elementwise work (the kernel's exponentials) is not counted."""
    def blocks(a: int, b: int, within: bool):
        for i0 in range(0, a, tile):
            for j0 in range(i0 if within else 0, b, tile):
                yield min(tile, a - i0), min(tile, b - j0)

    per_pair = 2 * ((dim + 2) + (2 * dim if grad else 0))
    pairs = sum(r * c for r, c in [*blocks(n, n, True), *blocks(m, m, True), *blocks(n, m, False)])
    return float(per_pair * pairs)


def gemm_floor(n: int, dim: int, device: str, tile: int, repeats: int) -> dict:
    """The fp32 GEMM floor of the estimator at n rows: the best time of one [n, dim] x [dim, n] product (TF32 off,
    as the estimator runs), scaled to the FLOP count of the estimator's own products (`matmul_flops`)."""
    import torch

    from mmd_audiocraft.core.mmd import full_fp32_precision

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, dim, generator=gen).to(device)
    y = torch.randn(n, dim, generator=gen).to(device)
    cuda = device.startswith("cuda")
    times = []
    with full_fp32_precision(torch.device(device).type):
        for _ in range(repeats + 1):  # the first one warms the library up
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            out = x @ y.T
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
            del out
    gemm_flops = 2.0 * n * n * dim
    flops = matmul_flops(n, n, dim, tile)
    best = min(times[1:])
    return {"seconds": best * flops / gemm_flops, "gemm_seconds": best, "gemm_tflops": gemm_flops / best / 1e12,
            "estimator_matmul_tflop": flops / 1e12}


def run_case(case: str, n: int, dim: int, device: str, repeats: int, scale: float, threads: int | None,
             tile: int | None) -> dict:
    """One case in this (fresh) process: returns seconds (best of repeats) and peak extra memory in MB."""
    import torch

    from mmd_audiocraft.core.kernels import Kernel
    from mmd_audiocraft.core.mmd import DEFAULT_TILE, mmd2_blocks, mmd2_unbiased

    if threads:
        torch.set_num_threads(threads)
    if case == "gemm":
        return gemm_floor(n, dim, device, tile or DEFAULT_TILE[torch.device(device).type], repeats)
    kernel = Kernel(bandwidths=SIGMAS)
    fn = {"ours": lambda a, b: mmd2_unbiased(a, b, kernel, tile=tile), "naive": _naive,
          "floor": _floor,
          "blocks": lambda a, b: mmd2_blocks(a, b, BLOCK_ROWS, kernel, generator=torch.Generator().manual_seed(0),
                                             tile=tile)}[case]
    gen = torch.Generator().manual_seed(0)
    x = (scale * torch.randn(n, dim, generator=gen)).to(device).requires_grad_(True)
    y = (scale * torch.randn(n, dim, generator=gen)).to(device).requires_grad_(True)
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        try:  # reset the peak RSS so import-time peaks do not count
            base, reset = reset_peak_rss(), True  # the RSS at the reset; never above a later peak
        except OSError:
            base, reset = peak_rss_bytes(), False
    times = []
    for _ in range(repeats):
        x.grad = y.grad = None
        start = time.perf_counter()
        value = fn(x, y)
        value.backward()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() if cuda else peak_rss_bytes()
    # CPU: the kernel batches RSS counter updates per CPU, so a peak that never rose above the reset reads up to a
    # few hundred kB below it; no growth is 0
    extra = peak - base if cuda else max(0.0, peak - base)
    out = {"seconds": min(times), "peak_extra_mb": extra / MB, "value": float(value.detach())}
    if not cuda and not reset:
        out["note"] = "peak RSS could not be reset: includes import-time peaks"
    return out


def spawn(case: str, n: int, args) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--case", case, "--n", str(n), "--dim", str(args.dim),
           "--device", args.device, "--repeats", str(args.repeats if n <= 4096 else 1), "--scale", str(args.scale)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.tile:
        cmd += ["--tile", str(args.tile)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"rc {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1024,4096,16384", help="comma-separated row counts n")
    parser.add_argument("--big", action="store_true", help=f"also n = {BIG_N} for ours only, peak <= 2 GB")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats for n <= 4096 (best is kept)")
    parser.add_argument("--scale", type=float, default=1.0, help="std of the random inputs")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--tile", type=int, default=None, help="force our tiled path with this block size")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.n, args.dim, args.device, args.repeats, args.scale, args.threads,
                                  args.tile)))
        return

    report = {"device": args.device, "dim": args.dim, "sigmas": SIGMAS, "scale": args.scale,
              "threads": args.threads, "tile": args.tile, "cpu_count": os.cpu_count(),
              "load_avg_start": os.getloadavg(), "results": {}}
    sizes = [int(s) for s in args.sizes.split(",") if s]
    naive_bytes_per_n2 = NAIVE_BYTES_PER_N2  # replaced by the measured value once a naive case ran
    for n in sizes + ([BIG_N] if args.big else []):
        row = {}
        row["ours"] = spawn("ours", n, args)
        row["gemm"] = spawn("gemm", n, args)
        if n >= 2 * BLOCK_ROWS:
            row["blocks"] = spawn("blocks", n, args)
        if n != BIG_N or n in sizes:
            row["floor"] = spawn("floor", n, args)
            estimate = naive_bytes_per_n2 * n * n / MB
            free = _available_mb() if args.device == "cpu" else float("inf")
            if args.device.startswith("cuda"):
                import torch

                free = torch.cuda.mem_get_info()[0] / MB
            if estimate > 0.8 * free:
                row["naive"] = {"skipped": f"estimated {estimate:.0f} MB > 80% of free {free:.0f} MB",
                                "peak_extra_mb_estimate": estimate}
            else:
                row["naive"] = spawn("naive", n, args)
                if "peak_extra_mb" in row["naive"]:
                    naive_bytes_per_n2 = row["naive"]["peak_extra_mb"] * MB / (n * n)
        ours, naive, floor = row["ours"], row.get("naive", {}), row.get("floor", {})
        ratios = {}
        if "seconds" in ours and "seconds" in naive:
            ratios["speedup_vs_naive"] = naive["seconds"] / ours["seconds"]
        if "seconds" in ours and "seconds" in floor:
            ratios["time_vs_floor"] = ours["seconds"] / floor["seconds"]
        if "seconds" in ours and "seconds" in row.get("gemm", {}):
            ratios["time_vs_gemm_floor"] = ours["seconds"] / row["gemm"]["seconds"]
        if "seconds" in ours and "seconds" in row.get("blocks", {}):
            ratios[f"all_pairs_vs_blocks_of_{BLOCK_ROWS}"] = ours["seconds"] / row["blocks"]["seconds"]
        if "peak_extra_mb" in ours:
            naive_mb = naive.get("peak_extra_mb", naive.get("peak_extra_mb_estimate"))
            if naive_mb:
                key = "memory_vs_naive" if "peak_extra_mb" in naive else "memory_vs_naive_estimate"
                ratios[key] = ours["peak_extra_mb"] / naive_mb
        if n == BIG_N and "peak_extra_mb" in ours:
            ratios["big_peak_within_2gb"] = ours["peak_extra_mb"] <= BIG_LIMIT_MB
        row["ratios"] = ratios
        report["results"][str(n)] = row
        print(json.dumps({str(n): row}), file=sys.stderr, flush=True)
    targets = {}
    r4 = report["results"].get("4096", {}).get("ratios", {})
    if r4:
        targets["n4096_speedup_vs_naive>=3"] = r4.get("speedup_vs_naive", 0) >= 3
        targets["n4096_time_vs_floor<=3"] = r4.get("time_vs_floor", float("inf")) <= 3
    r16 = report["results"].get("16384", {}).get("ratios", {})
    mem16 = r16.get("memory_vs_naive", r16.get("memory_vs_naive_estimate"))
    if mem16 is not None:
        targets["n16384_memory_vs_naive<=0.25"] = mem16 <= 0.25
    if args.big:
        targets["n32768_peak<=2GB"] = report["results"][str(BIG_N)]["ratios"].get("big_peak_within_2gb", False)
    report["targets_met"] = targets
    report["load_avg_end"] = os.getloadavg()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
