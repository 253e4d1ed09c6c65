"""`losses.inde` on real `dora -P mmd_audiocraft run` experiments (CPU, the tiny codec, the real-music fixture).

Each test runs whole XPs in subprocesses, like a user would, and reads what they leave in their Dora folder
(history.json, checkpoint.th, solver.log.0). Two XPs that do not depend on each other run side by side (one
thread each), which keeps the file near two minutes on 2 cores.
"""
from __future__ import annotations

import hashlib
import os
import signal
import time
from pathlib import Path

import pytest
import torch

from .conftest import TINY, finish, history, load_checkpoint, start_dora, xp_dirs

pytestmark = pytest.mark.slow


def run_all(*runs: tuple[list[str], Path, Path]) -> list[str]:
    """Run several independent XPs side by side; their outputs, in order."""
    started = [start_dora(args, d, corpus) for args, d, corpus in runs]
    return [finish(run) for run in started]


def only_xp(dora_dir: Path) -> Path:
    (xp,) = xp_dirs(dora_dir)
    return xp


def assert_same_state(a: dict, b: dict, what: str) -> None:
    assert a.keys() == b.keys(), what
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{what}: {len(different)} tensors differ, e.g. {different[:4]}"


# ------------------------------------------------------------------ 1. the loss on and off
# Frame-aligned codes (parallel pattern): residual codebooks of one frame become dependent within a few updates
# of reconstruction training (the first epoch), which the loss then removes; delay-shifted codes of the tiny
# codec stay near independence at this budget, so their logged MMD is all noise (about +-3e-3 per step).
# Seen over 4 seeds: first epoch 0.011-0.035, last epoch -0.0001-0.0018.
TREND = [*TINY, "dataset.batch_size=8", "inde.codebooks_pattern.modeling=parallel", "optim.epochs=3",
         "optim.updates_per_epoch=8", "evaluate.every=3"]
GRAD_METRICS = {"inde", "inde_weight", "inde_grad_norm", "rec_grad_norm", "inde_grad_ratio"}
EVAL_METRICS = {"inde_heldout", "tc_pair_pct", "tc_pair_raw_pct", "tc_all_bits"}


def test_independence_loss_logged_and_lowers_the_dependence(tmp_path, tiny_corpus):
    on, off = tmp_path / "on", tmp_path / "off"
    run_all((["run", *TREND, "losses.inde=1000"], on, tiny_corpus),
            (["run", *TREND, "losses.inde=0"], off, tiny_corpus))
    epochs, stock = history(only_xp(on)), history(only_xp(off))[-1]
    n_q = 4
    for epoch in epochs:
        assert GRAD_METRICS | {f"usage_entropy_q{k}" for k in range(n_q)} <= set(epoch["train"])
        assert epoch["train"]["inde_weight"] == 1000 and epoch["train"]["inde_grad_norm"] > 0
        assert "inde" in epoch["valid"]
    assert "inde" not in stock["train"] and not GRAD_METRICS & set(stock["train"])
    assert {f"usage_entropy_q{k}" for k in range(n_q)} <= set(stock["train"])  # usage is logged for baselines
    for evaluated in (epochs[-1]["evaluate"], stock["evaluate"]):
        assert EVAL_METRICS | {f"mi_rest_q{k}_bits" for k in range(n_q)} <= set(evaluated)
    first, last = epochs[0]["train"]["inde"], epochs[-1]["train"]["inde"]
    assert last < first and last < 0.5 * abs(first), [e["train"]["inde"] for e in epochs]


# ------------------------------------------------------------------ 2. losses.inde absent = the stock solver
def stock_args(corpus: Path) -> list[str]:
    """Arguments both audiocraft's main and ours compose: stock config groups, our manifests as overrides."""
    root = corpus / "music_16khz"
    return ["solver=compression/debug", "dset=audio/example", "device=cpu", "datasource.max_sample_rate=16000",
            "datasource.max_channels=1", *(f"datasource.{s}={root / s}" for s in ("train", "valid", "evaluate",
                                                                                  "generate")),
            "rvq.n_q=4", "rvq.bins=64", "optim.epochs=1", "optim.updates_per_epoch=1", "dataset.num_workers=0",
            "evaluate.num_workers=0", "dataset.batch_size=4", "dataset.train.num_samples=4",
            "dataset.valid.num_samples=4", "dataset.evaluate.num_samples=4", "dataset.generate.num_samples=1",
            "dataset.generate.segment_duration=1", "generate.audio.format=wav"]


def test_without_the_loss_the_first_step_is_the_stock_solvers_bitwise(tmp_path, tiny_corpus):
    ours, stock = tmp_path / "ours", tmp_path / "stock"
    args = ["run", *stock_args(tiny_corpus)]
    runs = [start_dora(args, ours, tiny_corpus),
            start_dora(args, stock, tiny_corpus, package="audiocraft", env_extra={"USER": "tester"})]
    for run in runs:
        finish(run)
    ours_xp, stock_xp = only_xp(ours), only_xp(stock)
    assert ours_xp.name == stock_xp.name  # the same config delta, hence the same signature
    a, b = load_checkpoint(ours_xp / "checkpoint.th"), load_checkpoint(stock_xp / "checkpoint.th")
    assert_same_state(a["model"], b["model"], "model after one update")
    assert_same_state(a["best_state"]["model"], b["best_state"]["model"], "best state")
    (ha,), (hb,) = history(ours_xp), history(stock_xp)
    for stage in ("train", "valid", "evaluate"):
        missing = set(hb[stage]) - set(ha[stage])
        assert not missing, f"{stage}: stock metrics missing from ours: {missing}"
        for name, value in hb[stage].items():
            if name != "duration":
                assert ha[stage][name] == value, f"{stage}/{name}: {ha[stage][name]} != {value}"
    extra = set(ha["train"]) - set(hb["train"])
    assert extra and all(k.startswith("usage_") for k in extra), extra  # nothing of the loss in train


# ------------------------------------------------------------------ 3. resume after SIGKILL
RESUME = [*TINY, "dataset.batch_size=4", "losses.inde=1000", "inde.macro_batch=2", "optim.epochs=2",
          "optim.updates_per_epoch=3", "evaluate.every=2"]


def test_resume_after_sigkill_matches_an_uninterrupted_run_bitwise(tmp_path, tiny_corpus):
    killed, reference = tmp_path / "killed", tmp_path / "reference"
    args = ["run", *RESUME]
    ref_run = start_dora(args, reference, tiny_corpus)
    run = start_dora(args, killed, tiny_corpus)
    deadline = time.time() + 400
    while "Epoch 2 | 1/3" not in run.log.read_text():  # one step into epoch 2, after epoch 1's checkpoint
        assert run.proc.poll() is None, run.log.read_text()[-4000:]
        assert time.time() < deadline
        time.sleep(0.1)
    os.kill(run.proc.pid, signal.SIGKILL)
    run.proc.wait()
    xp = only_xp(killed)
    assert len(history(xp)) == 1, "killed too late: epoch 2 had already been saved"
    assert "Loading existing checkpoint" in finish(start_dora(args, killed, tiny_corpus))
    finish(ref_run)
    resumed = load_checkpoint(xp / "checkpoint.th")
    uninterrupted = load_checkpoint(only_xp(reference) / "checkpoint.th")
    assert [list(e) for e in history(xp)] == [list(e) for e in history(only_xp(reference))]
    assert_same_state(resumed["model"], uninterrupted["model"], "final weights")
    assert_same_state(resumed["best_state"]["model"], uninterrupted["best_state"]["model"], "final best state")
    for a, b in zip(history(xp), history(only_xp(reference))):
        for stage in ("train", "valid"):
            assert {k: v for k, v in a[stage].items() if k != "duration"} == \
                   {k: v for k, v in b[stage].items() if k != "duration"}


# ------------------------------------------------------------------ 4. divergence guard
POISON = '''
"""dora's CLI, with the independence loss made NaN from epoch 2 on (a run that diverges mid-training)."""
import hashlib, os, pathlib
from mmd_audiocraft.integration.solver import MMDCompressionSolver

stock = MMDCompressionSolver.independence

def independence(self, z, pattern=None):
    value = stock(self, z, pattern)
    if self.is_training and self.epoch == 2:
        ckpt = self.checkpoint_path()
        pathlib.Path(os.environ["DIGEST_FILE"]).write_text(hashlib.sha256(ckpt.read_bytes()).hexdigest())
        return value * float("nan")
    return value

MMDCompressionSolver.independence = independence
from dora.__main__ import main
main()
'''


def test_divergence_stops_before_the_checkpoint_and_keeps_the_last_good_one(tmp_path, tiny_corpus):
    script = tmp_path / "poisoned_dora.py"
    script.write_text(POISON)
    digest_file = tmp_path / "digest_at_divergence"
    dora_dir = tmp_path / "dora"
    args = ["run", *TINY, "losses.inde=1000", "optim.epochs=2", "optim.updates_per_epoch=2"]
    run = start_dora(args, dora_dir, tiny_corpus, script=script, env_extra={"DIGEST_FILE": str(digest_file)})
    output = finish(run, expect_ok=False)
    assert run.proc.returncode != 0
    assert "independence loss is nan" in output and "the last good one is kept" in output
    xp = only_xp(dora_dir)
    assert len(history(xp)) == 1  # epoch 2 never committed
    digest = hashlib.sha256((xp / "checkpoint.th").read_bytes()).hexdigest()
    assert digest == digest_file.read_text()  # epoch 1's checkpoint, byte for byte
    state = load_checkpoint(xp / "checkpoint.th")
    assert all(bool(torch.isfinite(v).all()) for v in state["model"].values() if v.is_floating_point())
