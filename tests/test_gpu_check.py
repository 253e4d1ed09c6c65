"""The GPU check (benchmarks/gpu_check.sh) in its CPU mode, as a lease would run it: one JSON with every part, the
codec path run with xformers, spacy and librosa replaced by their import stubs; the stubs fail when used; the GEMM floor
counts the matrix products the estimator really runs."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from .conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_mmd import matmul_flops  # noqa: E402

from mmd_audiocraft.core.mmd import mmd2_unbiased  # noqa: E402


class MatmulFlops(TorchDispatchMode):
    """2 M N K for every matrix product dispatched inside (out-of-place and in-place alike)."""

    def __init__(self):
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name == "mm":
            (m, k), n = args[0].shape, args[1].shape[1]
            self.flops += 2 * m * n * k
        elif name in ("addmm", "addmm_"):
            (m, k), n = args[1].shape, args[2].shape[1]
            self.flops += 2 * m * n * k
        elif name in ("bmm", "matmul", "baddbmm"):
            raise AssertionError(f"uncounted product {name}")
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("n, m, dim, tile", [(100, 100, 8, 32), (70, 50, 16, 64), (300, 129, 512, 128)])
def test_the_gemm_floor_counts_the_matrix_products_the_estimator_runs(n, m, dim, tile):
    x = torch.randn(n, dim, requires_grad=True)
    y = torch.randn(m, dim, requires_grad=True)
    with MatmulFlops() as counted:
        mmd2_unbiased(x, y, tile=tile).backward()
    assert counted.flops == matmul_flops(n, m, dim, tile)


def test_an_import_stub_fails_when_used():
    code = """
from xformers import ops
from librosa import filters
import spacy
for what in (lambda: ops.memory_efficient_attention, lambda: spacy.load, lambda: filters.chroma):
    try:
        what()
    except ImportError as exc:
        assert "import stub" in str(exc), exc
    else:
        raise SystemExit("a stub attribute did not raise")
print("ok")
"""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "benchmarks" / "gpu_stubs"))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "ok", proc.stderr


def positive_finite(value) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value > 0


@pytest.mark.slow
def test_the_cpu_mode_prints_one_json_with_every_part_without_xformers_spacy_or_librosa(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable, OUT=str(tmp_path))
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--device", "cpu", "--force-stubs"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-6000:]
    result = json.loads(proc.stdout)
    assert json.loads((tmp_path / "gpu_check.json").read_text()) == result
    assert result["device"] == "cpu" and result["stubbed_imports"] == ["librosa", "spacy", "xformers"]

    autocast = result["autocast"]
    assert autocast["equal"] and autocast["rel_diff"] <= 1e-6 and autocast["grad_rel_diff"] <= 1e-6
    assert autocast["dtype_under_autocast"] == "torch.float32" and autocast["loss_fp32"] > 0.01  # dependent codes

    sizes = result["mmd"]["sizes"]
    assert list(sizes) == ["256", "1024"] and result["mmd"]["dim"] == 512
    for row in sizes.values():
        assert positive_finite(row["seconds"]) and positive_finite(row["ratio_to_gemm_floor"])
        assert row["peak_extra_mb"] >= 0

    codec = result["codec"]
    assert set(codec["step_vs_stock"]) == {"stock", "live", "macro"}
    for group in ("step_s", "step_vs_stock", "peak_memory_mb", "peak_memory_vs_stock"):
        assert all(positive_finite(v) for v in codec[group].values()), codec[group]
    # 4 stored batches of 1 x 1 s at 32 kHz, hop 640: 50 frames, of which the delay pattern of 4 codebooks
    # keeps 50 - 3 per item; rows of 4 codebooks x 128 dims
    assert (codec["mmd_step"]["rows"], codec["mmd_step"]["dim"]) == (4 * 47, 512)
    assert codec["macro_cycle"]["storing_steps_timed"] == 3
