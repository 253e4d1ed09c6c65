"""What the solver benchmarks share: a composed solver stepped by hand, its timers, and process memory readings.

A solver is composed exactly as `dora -P mmd_audiocraft run ARGV` composes it, built with audiocraft's
`get_solver` (seeded like the tests' `seeded_solver`) and put in the state audiocraft's train stage gives it, then
stepped with `run_step` on batches of its own train loader. Used by bench_solver_step.py, bench_soak.py,
bench_paper_scale.py and gpu_check.py (run from this folder or with it on sys.path).
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from tests.conftest import fixture_corpus, seeded_solver, train_batches  # noqa: E402  (the tests' fixture data)

__all__ = ["ROOT", "Timer", "build_solver", "fixture_corpus", "fixture_env", "timed_step", "train_batches"]

@contextlib.contextmanager
def fixture_env() -> Iterator[Path]:
    """The committed real-music fixture as the corpus of the plugin's dset configs (16 and 32 kHz layouts), and a
    fresh Dora dir, both in a temporary folder, unless MMD_AUDIOCRAFT_CORPUS is already set; yields the corpus
    root. Child processes inherit both through the environment."""
    if "MMD_AUDIOCRAFT_CORPUS" in os.environ:
        yield Path(os.environ["MMD_AUDIOCRAFT_CORPUS"])
        return
    with tempfile.TemporaryDirectory(prefix="mmd_bench_") as tmp:
        corpus = fixture_corpus(Path(tmp) / "corpus")
        saved = {k: os.environ.get(k) for k in ("MMD_AUDIOCRAFT_CORPUS", "AUDIOCRAFT_DORA_DIR")}
        os.environ["MMD_AUDIOCRAFT_CORPUS"] = str(corpus)
        os.environ["AUDIOCRAFT_DORA_DIR"] = str(Path(tmp) / "dora")
        try:
            yield corpus
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def build_solver(argv: list[str], stock: bool = False):
    """The solver of `dora -P mmd_audiocraft run ARGV`, seeded, in train mode with its adversarial RNG (what
    audiocraft's `train()` sets per epoch). ``stock=True`` builds audiocraft's own CompressionSolver from the same
    config without our `losses.inde` key."""
    import omegaconf
    import torch

    from mmd_audiocraft.train import audiocraft_train, main  # ours first: it sets up what audiocraft's reads

    def stock_solver(cfg):
        from audiocraft.solvers.compression import CompressionSolver

        with omegaconf.open_dict(cfg):
            del cfg.losses["inde"]
        audiocraft_train.resolve_config_dset_paths(cfg)
        return CompressionSolver(cfg)

    solver = seeded_solver(main.get_xp(argv), stock_solver if stock else None)
    solver._current_stage = "train"  # what flashy's run_stage sets; no logging of stage summaries
    solver.model.train(True)
    solver.rng = torch.Generator().manual_seed(1234 + solver.epoch)  # CompressionSolver.train() sets it
    return solver


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def timed_step(solver, batch) -> float:
    """Wall seconds of one `run_step` (train mode) on ``batch``, the device synchronised at both ends."""
    device = str(solver.device)
    _sync(device)
    begin = time.perf_counter()
    solver.run_step(0, batch, {})
    _sync(device)
    return time.perf_counter() - begin


class Timer:
    """Wall time spent inside some methods of a solver (the parts of an MMD step), device synchronised."""

    def __init__(self, solver, names: list[str]):
        self.total = dict.fromkeys(names, 0.0)
        device = str(solver.device)
        for name in names:
            original = getattr(solver, name)

            def timed(*args, _original=original, _name=name, **kwargs):
                _sync(device)
                begin = time.perf_counter()
                try:
                    return _original(*args, **kwargs)
                finally:
                    _sync(device)
                    self.total[_name] += time.perf_counter() - begin

            setattr(solver, name, timed)
            if name == "_independence_backward" and hasattr(solver.balancer, name):
                setattr(solver.balancer, name, timed)  # the Balancer wrapper holds the bound method

    def reset(self) -> None:
        self.total = dict.fromkeys(self.total, 0.0)
