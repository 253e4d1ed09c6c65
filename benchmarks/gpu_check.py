"""A short check of the loss and the paper's codec on one GPU, sized to take a few minutes; prints one JSON.

Run it through `benchmarks/gpu_check.sh`, which installs the carried wheels and the import stubs first. Parts:
- mmd: bench_mmd.py's estimator (`mmd2_unbiased`, all pairs, row-tiled, fp32) forward + backward on two samples
  of n rows x 512 dims (CUDA: n = 4,096, 16,384 and 32,768), as a ratio to the fp32 GEMM floor measured in the
  same run (bench_mmd.gemm_floor: one n x 512 x n product, TF32 off, scaled to the FLOP count of the estimator's
  own products), and its peak extra memory (torch.cuda.max_memory_allocated over the inputs');
- codec: bench_paper_scale.py's stock, live and macro (all pairs) cases of the paper's codec at the paper's
  per-GPU batch (8 x 1 s, macro-batch 32), each in its own process: seconds per step (macro: its cycle amortised
  over 32 steps) and peak torch.cuda.max_memory_allocated, as ratios to the stock step's;
- autocast: the loss of the same code vectors with the same generator state inside
  torch.autocast(device, torch.bfloat16) and in plain fp32: equal to 1e-6 relative (the estimator turns autocast
  and TF32 off itself), and so are their gradients.
`--device cpu` runs every part at small sizes (n = 256 and 1,024 rows; the paper's codec config with a small
SEANet and discriminator, 1 x 1 s, macro-batch 4, one thread): what tests/test_gpu_check.py runs.

    bash benchmarks/gpu_check.sh [--wheels .whl] [--force-stubs] [--device cuda|cpu]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import bench_mmd  # this folder is on sys.path when a script of it runs
import bench_paper_scale
from solver_harness import fixture_env

SIZES = {"cuda": (4096, 16384, 32768), "cpu": (256, 1024)}
DIM = 512
REL_TOLERANCE = 1e-6
# The codec part per device: the paper's per-GPU batch on CUDA; on CPU the same config with a small model.
CODEC = {
    "cuda": dict(batch=8, steps=8, warmup=3, macro=32, threads=None, block_rows=4096, override=[]),
    "cpu": dict(batch=1, steps=2, warmup=1, macro=4, threads=1,
                override=["seanet.n_filters=4", "msstftd.filters=4", "rvq.bins=64"]),
}
CODEC_CASES = ("stock", "live", "macro")


def mmd_part(device: str, sizes: tuple[int, ...], threads: int | None) -> dict:
    """The estimator against the GEMM floor at each n, in this process."""
    import torch

    from mmd_audiocraft.core.mmd import DEFAULT_TILE

    tile = DEFAULT_TILE[torch.device(device).type]
    out: dict = {"dim": DIM, "tile": tile, "bandwidths": bench_mmd.SIGMAS, "sizes": {}}
    for n in sizes:
        ours = bench_mmd.run_case("ours", n, DIM, device, 3, 1.0, threads, None)
        floor = bench_mmd.run_case("gemm", n, DIM, device, 3, 1.0, threads, None)
        out["sizes"][str(n)] = {"seconds": ours["seconds"], "gemm_floor_seconds": floor["seconds"],
                                "ratio_to_gemm_floor": ours["seconds"] / floor["seconds"],
                                "peak_extra_mb": ours["peak_extra_mb"], "gemm_tflops": floor["gemm_tflops"],
                                "estimator_matmul_tflop": floor["estimator_matmul_tflop"]}
    return out


def codec_part(device: str) -> dict:
    """bench_paper_scale's stock, live and macro cases, each in a fresh process."""
    settings = CODEC["cuda" if device.startswith("cuda") else "cpu"]
    args = bench_paper_scale.parser().parse_args([])
    for key, value in settings.items():
        setattr(args, key, value)
    args.device = device
    cases = {name: bench_paper_scale.spawn(name, args) for name in CODEC_CASES}
    summary = bench_paper_scale.summarise(cases, args.block_rows)
    macro = cases["macro"]
    return {"config": bench_paper_scale.PAPER[0], "overrides": settings["override"], "batch": args.batch,
            "segment_s": 1.0, "macro_batch": args.macro, "threads": settings["threads"],
            "step_s": summary["step_s_median"], "step_vs_stock": summary["step_vs_stock"],
            "peak_memory_mb": {name: c["peak_memory_mb"] for name, c in cases.items()},
            "peak_memory_vs_stock": summary["peak_memory_vs_stock"], "memory_kind": macro["memory_kind"],
            "macro_cycle": {k: macro[k] for k in ("storing_steps_timed", "storing_steps_at_median",
                                                  "storing_step_s_median", "mmd_step_s", "mmd_step_parts_s")},
            "mmd_step": summary["mmd_step"], "build_s": {name: c["build_s"] for name, c in cases.items()}}


def autocast_part(device: str) -> dict:
    """The loss and its gradient inside torch.autocast(bfloat16) and in fp32, same inputs and generator state."""
    import torch

    from mmd_audiocraft.core.loss import independence_loss

    # per-codebook vectors z [B, K, T, D] as a codec gives them: 4 codebooks of 16 code vectors of 128 dims, whose
    # codes are fully dependent along the delay pattern (codebook k at frame t repeats codebook 0 at t + k), so
    # the loss is far from 0
    gen = torch.Generator().manual_seed(0)
    books = 0.1 * torch.randn(4, 16, 128, generator=gen)
    codes = torch.randint(0, 16, (8, 4, 50), generator=gen)
    for k in range(1, 4):
        codes[:, k, :-k] = codes[:, 0, k:]
    z = torch.stack([books[k][codes[:, k]] for k in range(4)], dim=1).to(device)

    def loss_and_grad(autocast: bool):
        leaf = z.clone().requires_grad_(True)
        generator = torch.Generator().manual_seed(1)
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=autocast):
            loss = independence_loss(leaf, pattern="delay", generator=generator)
        loss.backward()
        return loss.detach(), leaf.grad

    ref, ref_grad = loss_and_grad(False)
    out, out_grad = loss_and_grad(True)
    rel = float((out - ref).abs() / ref.abs())
    grad_rel = float((out_grad - ref_grad).abs().max() / ref_grad.abs().max())
    return {"loss_fp32": float(ref), "loss_autocast_bf16": float(out), "dtype_under_autocast": str(out.dtype),
            "rel_diff": rel, "grad_rel_diff": grad_rel, "tolerance": REL_TOLERANCE,
            "equal": rel <= REL_TOLERANCE and grad_rel <= REL_TOLERANCE}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda (the check) or cpu (small sizes)")
    ap.add_argument("--stubs", default="", help=argparse.SUPPRESS)  # set by gpu_check.sh: the stubbed imports
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    started = time.perf_counter()
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        sys.exit(f"gpu_check: --device {args.device} but torch {torch.__version__} sees no GPU")
    threads = None if cuda else 1
    if threads:
        torch.set_num_threads(threads)
    result: dict = {"device": args.device, "gpu": torch.cuda.get_device_name() if cuda else None,
                    "torch": torch.__version__, "python": platform.python_version(),
                    "stubbed_imports": [s for s in args.stubs.split(",") if s]}
    result["autocast"] = autocast_part(args.device)
    result["mmd"] = mmd_part(args.device, SIZES["cuda" if cuda else "cpu"], threads)
    if cuda:
        torch.cuda.empty_cache()  # the codec cases run in their own processes on the same GPU
    with fixture_env():
        result["codec"] = codec_part(args.device)
    result["wall_s"] = time.perf_counter() - started
    text = json.dumps(result, indent=1)
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "gpu_check.json").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
