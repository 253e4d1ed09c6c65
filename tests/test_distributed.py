"""Multi-process independence loss: 2 CPU processes (gloo) against single-process references.

The distributed results are computed once, in two spawned processes that save what they saw; every test then
compares one part with the same computation done in this (non-distributed) process on the concatenated data.
"""
from __future__ import annotations

import collections
import datetime
import math
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mmd_audiocraft.core.kernels import Kernel
from mmd_audiocraft.core.loss import independence_loss
from mmd_audiocraft.core.metrics import CodeCounts
from mmd_audiocraft.core.sampling import VectorSample
from mmd_audiocraft.integration.distributed import (
    PerRankState,
    all_gather_objects,
    gather_rows,
    global_independence_loss,
    merge_counts_across_ranks,
    merge_vector_samples,
)

from .conftest import dora_env, history, run_dora, xp_dirs
from .documentation import documented, dora_args

WORLD = 2
BATCH = (3, 2)  # items per process: uneven on purpose (rows differ in number)
K, T, IN, D = 4, 6, 3, 5
GLOBAL_OPTIONS = {
    "paper": dict(),
    "disjoint_subset": dict(estimator="disjoint", max_rows=13, kernel=Kernel(median_heuristic=True)),
    "blocks": dict(block_rows=5, kernel=Kernel(median_heuristic=True)),  # 15 gathered rows: 3 blocks
}
CODE_ROWS, BINS = (50, 30), 16
SAMPLE_ROWS, SAMPLE_MAX = (5, 4), 6


def _model() -> torch.nn.Module:
    torch.manual_seed(0)  # the same weights on every process, like a solver after its initial broadcast
    return torch.nn.Linear(IN, D).double()


def _inputs(rank: int) -> torch.Tensor:
    return torch.randn(BATCH[rank], K, T, IN, generator=torch.Generator().manual_seed(100 + rank),
                       dtype=torch.float64)


def _codes(rank: int) -> np.ndarray:
    return np.random.default_rng(200 + rank).integers(0, BINS, size=(CODE_ROWS[rank], K))


def _sample_rows(rank: int) -> torch.Tensor:
    start = sum(SAMPLE_ROWS[:rank])  # globally distinct rows: row i holds the value i everywhere
    return torch.arange(start, start + SAMPLE_ROWS[rank], dtype=torch.float32)[:, None, None].expand(-1, K, 2)


def _vector_sample(rank: int) -> VectorSample:
    sample = VectorSample(SAMPLE_MAX, seed=1000 * rank)  # keys drawn independently by each process
    rows = _sample_rows(rank)
    sample.add(rows[:2])
    sample.add(rows[2:])
    return sample


class _Toy:
    def __init__(self, value):
        self.value = value

    def state_dict(self):
        return {"value": self.value}

    def load_state_dict(self, state):
        self.value = state["value"]


def _synced_step(loss_fn) -> dict:
    """One training step: loss on z = tanh(model(x)), backward, flashy's gradient averaging."""
    import flashy

    model = _model()
    z = torch.tanh(model(_inputs(dist.get_rank())))
    z.retain_grad()
    loss = loss_fn(z)
    loss.backward()
    z_grad = z.grad.clone()
    flashy.distrib.sync_model(model)
    return {"loss": loss.detach(), "z_grad": z_grad, "weight_grad": model.weight.grad.clone(),
            "bias_grad": model.bias.grad.clone()}


def _worker(rank: int, init_method: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=WORLD,
                            timeout=datetime.timedelta(seconds=60))  # a mismatched collective fails, no hang
    out: dict = {}
    for name, options in GLOBAL_OPTIONS.items():
        out[f"global_{name}"] = _synced_step(lambda z, o=options: global_independence_loss(
            z, generator=torch.Generator().manual_seed(7), **o))
    out["local"] = _synced_step(
        lambda z: independence_loss(z, generator=torch.Generator().manual_seed(11 + rank)))

    merged = merge_counts_across_ranks(CodeCounts.from_codes(_codes(rank), BINS))
    out["counts"] = (merged.n_frames, merged.marginals, merged.joint((0, 1)), merged.joint(tuple(range(K))))
    only_rank0 = merge_counts_across_ranks(CodeCounts.from_codes(_codes(0), BINS) if rank == 0 else None)
    out["counts_rank0_only"] = only_rank0.marginals
    sample = merge_vector_samples(_vector_sample(rank))
    out["sample"] = (sample.rows, sample.seen)
    only_rank0 = merge_vector_samples(_vector_sample(rank) if rank == 0 else VectorSample(SAMPLE_MAX, 9))
    out["sample_rank0_only"] = (only_rank0.rows, only_rank0.seen)
    out["gathered"] = gather_rows(_sample_rows(rank))

    state = PerRankState(_Toy(f"state of rank {rank}"))
    state.gather()
    saved = state.state_dict()
    out["saved_after_gather"] = saved
    out["saved_again"] = state.state_dict()  # a state_dict without a fresh gather is the local one
    restored = PerRankState(_Toy(None))
    restored.load_state_dict(all_gather_objects(saved)[0])  # every process reads rank 0's checkpoint
    out["restored"] = restored.inner.value

    try:  # a process with another number of codebooks must fail everywhere, not hang
        gather_rows(torch.zeros(3, K + rank, D))
    except ValueError as exc:
        out["mismatch_error"] = str(exc)
    torch.save(out, Path(out_dir) / f"rank{rank}.pt")
    dist.barrier()  # gloo's teardown can hang when one process destroys the group while another still works
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    tmp = tmp_path_factory.mktemp("distributed")
    mp.spawn(_worker, args=(f"tcp://127.0.0.1:{_free_port()}", str(tmp)), nprocs=WORLD, join=True)
    return [torch.load(tmp / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def _single_process(loss_fn, inputs: list[torch.Tensor]) -> dict:
    model = _model()
    zs = [torch.tanh(model(x)) for x in inputs]
    for z in zs:
        z.retain_grad()
    loss = loss_fn(zs)
    loss.backward()
    return {"loss": loss.detach(), "z_grads": [z.grad for z in zs], "weight_grad": model.weight.grad,
            "bias_grad": model.bias.grad}


# -- inde.global: the MMD of the whole world's rows ------------------------------------------------------
@pytest.mark.parametrize("name", list(GLOBAL_OPTIONS))
def test_global_loss_and_synced_gradients_equal_single_process_on_concatenated_batch(ranks, name):
    options = GLOBAL_OPTIONS[name]
    def concatenated(zs):
        return independence_loss(torch.cat(zs), generator=torch.Generator().manual_seed(7), **options)

    ref = _single_process(concatenated, [_inputs(r) for r in range(WORLD)])
    assert ref["loss"].abs() > 1e-4  # a real signal, not two zeros
    for r, out in enumerate(ranks):
        got = out[f"global_{name}"]
        torch.testing.assert_close(got["loss"], ref["loss"], rtol=0, atol=1e-6)
        # each process's rows get world_size x their share: sync_model's averaging then divides it back
        torch.testing.assert_close(got["z_grad"], WORLD * ref["z_grads"][r], rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(got["weight_grad"], ref["weight_grad"], rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(got["bias_grad"], ref["bias_grad"], rtol=1e-6, atol=1e-9)


def test_default_mode_trains_the_mean_of_per_process_losses(ranks):
    """The paper's setting: each process's MMD on its own rows, gradients averaged by the solver."""
    inputs = [_inputs(r) for r in range(WORLD)]
    ref = _single_process(lambda zs: sum(independence_loss(z, generator=torch.Generator().manual_seed(11 + r))
                                         for r, z in enumerate(zs)) / WORLD, inputs)
    for r, out in enumerate(ranks):
        own = independence_loss(torch.tanh(_model()(inputs[r])),
                                generator=torch.Generator().manual_seed(11 + r))
        torch.testing.assert_close(out["local"]["loss"], own.detach(), rtol=0, atol=1e-9)
        torch.testing.assert_close(out["local"]["weight_grad"], ref["weight_grad"], rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(out["local"]["bias_grad"], ref["bias_grad"], rtol=1e-6, atol=1e-9)
    assert not torch.allclose(ranks[0]["local"]["loss"], ranks[1]["local"]["loss"])


def test_gather_rows_concatenates_uneven_shards_in_rank_order(ranks):
    expected = torch.cat([_sample_rows(r) for r in range(WORLD)])
    for out in ranks:
        torch.testing.assert_close(out["gathered"], expected, rtol=0, atol=0)


def test_shape_mismatch_fails_on_every_process(ranks):
    for out in ranks:
        assert "different shapes" in out["mismatch_error"] and "codebooks" in out["mismatch_error"]


# -- evaluate stage: information measures on the union of the shards ----------------------------------------
def test_merged_counts_equal_counts_of_all_codes(ranks):
    codes = np.concatenate([_codes(r) for r in range(WORLD)])
    tuples = collections.Counter(map(tuple, codes.tolist()))
    pairs = collections.Counter(map(tuple, codes[:, :2].tolist()))
    for out in ranks:
        n_frames, marginals, (pair_keys, pair_counts), (keys, counts) = out["counts"]
        assert n_frames == len(codes)
        for k in range(K):
            np.testing.assert_array_equal(marginals[k], np.bincount(codes[:, k], minlength=BINS))
        # mixed-radix keys, first codebook most significant
        assert {(int(q) // BINS, int(q) % BINS): int(c) for q, c in zip(pair_keys, pair_counts)} == pairs
        decoded = {tuple(int(q) // BINS ** (K - 1 - j) % BINS for j in range(K)): int(c)
                   for q, c in zip(keys, counts)}
        assert decoded == tuples
        np.testing.assert_array_equal(out["counts_rank0_only"][0],
                                      np.bincount(_codes(0)[:, 0], minlength=BINS))


def test_merged_vector_sample_keeps_the_smallest_keys_of_all_processes(ranks):
    keys, rows = [], []
    for r in range(WORLD):  # replay each process's key stream
        generator = torch.Generator().manual_seed(1000 * r)
        keys += [torch.rand(2, generator=generator), torch.rand(SAMPLE_ROWS[r] - 2, generator=generator)]
        rows.append(_sample_rows(r))
    keys, everything = torch.cat(keys).numpy(), torch.cat(rows)
    expected = everything[np.sort(np.argsort(keys, kind="stable")[:SAMPLE_MAX])]
    assert set(expected[:, 0, 0].long().tolist()) & set(range(SAMPLE_ROWS[0], len(everything)))  # both shards
    for out in ranks:
        merged, seen = out["sample"]
        torch.testing.assert_close(merged, expected, rtol=0, atol=0)
        assert seen == sum(SAMPLE_ROWS)
        merged, seen = out["sample_rank0_only"]  # a process that saw nothing adds nothing
        torch.testing.assert_close(merged, _vector_sample(0).rows, rtol=0, atol=0)
        assert seen == SAMPLE_ROWS[0]


# -- checkpoints: each process gets its own state back ------------------------------------------------------
def test_per_rank_state_round_trips_through_rank0_checkpoint(ranks):
    expected = [{"value": f"state of rank {r}"} for r in range(WORLD)]
    for r, out in enumerate(ranks):
        assert out["saved_after_gather"] == {"per_rank": expected}
        assert out["saved_again"] == expected[r]
        assert out["restored"] == f"state of rank {r}"


def test_per_rank_state_with_another_world_size(caplog):
    state = PerRankState(_Toy(None))
    state.load_state_dict({"per_rank": [{"value": "a"}, {"value": "b"}]})  # this process: rank 0 of 1
    assert state.inner.value == "a" and "2 processes but this run has 1" in caplog.text
    state.load_state_dict({"value": "plain"})  # single-process checkpoints load unchanged
    assert state.inner.value == "plain"
    state.gather()  # no torch.distributed: nothing to collect
    assert state.state_dict() == {"value": "plain"}


# -- without torch.distributed: everything is local -------------------------------------------------------
def test_single_process_fallback_is_the_local_loss():
    assert not dist.is_initialized()
    z = torch.randn(3, K, T, D, generator=torch.Generator().manual_seed(1), requires_grad=True)
    rows = torch.randn(5, K, D)
    assert gather_rows(rows) is rows
    got = global_independence_loss(z, generator=torch.Generator().manual_seed(2), max_rows=7)
    ref = independence_loss(z, generator=torch.Generator().manual_seed(2), max_rows=7)
    torch.testing.assert_close(got, ref, rtol=0, atol=0)
    counts = CodeCounts.from_codes(_codes(0), BINS)
    assert merge_counts_across_ranks(counts) is counts and merge_counts_across_ranks(None) is None
    sample = VectorSample(2)
    assert merge_vector_samples(sample) is sample and all_gather_objects("x") == ["x"]


def test_gather_rows_rejects_bad_input():
    with pytest.raises(ValueError, match="rows must be a torch.Tensor"):
        gather_rows([1.0, 2.0])
    with pytest.raises(ValueError, match="1 to 7 dimensions"):
        gather_rows(torch.tensor(1.0))


# -- a real 2-process training run through our Dora main (CPU, gloo) -------------------------------------
DDP_RUN = ["solver=compression/encodec_mmd_tiny", "dset=audio/mmd_music_16khz", "optim.epochs=1",
           "optim.updates_per_epoch=2", "dataset.train.num_samples=32", "dataset.valid.num_samples=8",
           "dataset.evaluate.num_samples=4", "evaluate.every=1", "losses.inde=1000"]


def _summary(log: Path, stage: str) -> dict:
    """The stage summary a process logged (rank-local line, flashy's formatting: 3 decimals)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", log.read_text())
    line = re.findall(rf"{stage} Summary \| Epoch 1 \| (.*)", text)[-1]
    return dict(item.split("=", 1) for item in line.split(" | "))


@pytest.mark.slow
@pytest.mark.parametrize("launcher, global_mmd", [("dora -d", True), ("torchrun", False)])
def test_two_process_training_run(tiny_corpus, tmp_path, launcher, global_mmd):
    """`dora -d`: the README's command for 2 CPU processes, as written (inde.global=true); torchrun: the same
    training with the per-process MMD."""
    dora_dir = tmp_path / "dora"
    if launcher == "dora -d":
        args = dora_args(documented("docs/MULTI_GPU.md", "--ddp_workers 2"))
        assert "inde.global=true" in args
        run_dora(args, dora_dir, tiny_corpus, timeout=600)
    else:
        args = [*DDP_RUN, "inde.global=false"]
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "dora", "-P", "mmd_audiocraft", "run", *args]
        proc = subprocess.run(cmd, env=dora_env(dora_dir, tiny_corpus), cwd=tmp_path, capture_output=True,
                              text=True, timeout=400)
        assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    (xp,) = xp_dirs(dora_dir)
    metrics = history(xp)[0]
    assert math.isfinite(metrics["train"]["inde"]) and math.isfinite(metrics["valid"]["inde"])

    # evaluate: information measures of the union of both shards, hence the same on both processes
    evaluated = [_summary(xp / f"solver.log.{r}", "Evaluate") for r in range(WORLD)]
    merged = [k for k in evaluated[0] if k.startswith(("tc_", "mi_rest_", "entropy_q"))]
    assert len(merged) == 4 + 2 * 4
    assert {k: evaluated[0][k] for k in merged} == {k: evaluated[1][k] for k in merged}

    # checkpoint: each process's loss state, the shared generator in step everywhere
    checkpoint = torch.load(xp / "checkpoint.th", map_location="cpu", weights_only=False)
    states = checkpoint["inde_state"]["per_rank"]
    assert len(states) == WORLD and states[0]["step"] == states[1]["step"] == 2
    assert not torch.equal(states[0]["generator"], states[1]["generator"])
    assert torch.equal(states[0]["shared_generator"], states[1]["shared_generator"])
    fresh = torch.Generator().manual_seed(int(checkpoint["xp.cfg"]["seed"])).get_state()
    assert torch.equal(states[0]["shared_generator"], fresh) != global_mmd  # global shuffles drew from it
