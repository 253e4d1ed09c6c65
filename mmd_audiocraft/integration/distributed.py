"""Multi-process independence loss: a row all-gather with gradient, merged metrics, per-process state.

By default (the paper) every process computes the MMD on its own rows and the solver averages the gradients
like any other loss, so training optimises the mean over processes of per-process MMD estimates. With
`inde.global=true` every process gathers all rows (with gradient), shuffles them with a generator that is in
the same state on every process, and computes the MMD of the whole world's rows: after the solver's gradient
averaging the update equals the single-process gradient on the concatenated batch.

Works with torch.distributed initialised (gloo or NCCL) and falls back to local computation when it is not, or
when the world has one process. Imports torch only (no audiocraft; Dora only inside `init_distributed`).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.distributed as dist

from ..core.loss import independence_loss_from_rows
from ..core.metrics.counts import CodeCounts
from ..core.options import LossOptions
from ..core.patterns import group_by_pattern

logger = logging.getLogger(__name__)


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_distributed() -> bool:
    """Whether torch.distributed is initialised with more than one process."""
    return world_size() > 1


def init_distributed(device: str) -> None:
    """Dora's process-group init with a backend that fits ``device``: NCCL for CUDA, gloo otherwise.

    audiocraft calls dora's init with its NCCL default, which refuses to start on machines without GPUs; calling
    this first (it is a no-op for a single process and idempotent) makes `dora run -d --ddp_workers N` and
    torchrun work on CPU too. Environment variables come from Dora, torchrun or SLURM as usual.
    """
    from dora import distrib

    cuda = str(device).startswith("cuda") and torch.cuda.is_available()
    distrib.init(backend="nccl" if cuda else "gloo")


class _GatherRows(torch.autograd.Function):
    """Forward: every process's rows, concatenated in rank order. Backward: this rank's slice of the gradient
    summed over all processes.

    Every process computes its loss on the full gathered tensor, so process r's rows receive a gradient from
    each of the W losses. Summing them (all-reduce) gives W x dL/d(rows_r) when all processes compute the same
    loss L; the solver then averages parameter gradients over processes (flashy's sync_model divides by W),
    which leaves exactly dL/d(params) of the single-process loss on the concatenated batch.
    """

    @staticmethod
    def forward(ctx, rows: torch.Tensor, counts: tuple[int, ...], rank_: int, group):
        n_max = max(counts)
        padded = rows.new_zeros((n_max, *rows.shape[1:]))
        padded[: rows.shape[0]] = rows
        parts = [torch.empty_like(padded) for _ in counts]
        dist.all_gather(parts, padded, group=group)
        ctx.counts, ctx.rank, ctx.group = counts, rank_, group
        return torch.cat([part[:n] for part, n in zip(parts, counts)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous().clone()  # all_reduce works in place; autograd may hand us a shared buffer
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        start = sum(ctx.counts[: ctx.rank])
        return grad[start : start + ctx.counts[ctx.rank]], None, None, None


_MAX_DIMS = 7


def gather_rows(rows: torch.Tensor, group=None) -> torch.Tensor:
    """All processes' rows [n_r, ...] concatenated in rank order, differentiable (see :class:`_GatherRows`).

    Processes may hold different row counts (sizes are gathered first, rows are padded to the largest); the
    other dimensions must agree, otherwise every process raises the same ValueError (no deadlock). Returns
    ``rows`` itself when torch.distributed is not initialised or the world has one process. Every process of
    ``group`` must call this the same number of times (it is a collective).
    """
    if not isinstance(rows, torch.Tensor) or not 1 <= rows.dim() <= _MAX_DIMS:
        got = tuple(rows.shape) if isinstance(rows, torch.Tensor) else type(rows).__name__
        raise ValueError(f"rows must be a torch.Tensor with 1 to {_MAX_DIMS} dimensions (rows first), "
                         f"got {got}")
    if not is_distributed():
        return rows
    world = dist.get_world_size(group)
    dims = torch.zeros(1 + _MAX_DIMS, dtype=torch.long, device=rows.device)  # fixed size: ndim, then shape
    dims[: 1 + rows.dim()] = torch.tensor([rows.dim(), *rows.shape], dtype=torch.long)
    every = [torch.empty_like(dims) for _ in range(world)]
    dist.all_gather(every, dims, group=group)
    shapes = [tuple(int(v) for v in d[1 : 1 + int(d[0])]) for d in every]
    if any(s[1:] != shapes[0][1:] for s in shapes):
        raise ValueError(f"gather_rows: the processes hold rows of different shapes {shapes} (all dimensions "
                         "but the first must agree; with the independence loss, every process must use the "
                         "same number of codebooks: quantizer dropout must be off with inde.global=true)")
    counts = tuple(s[0] for s in shapes)
    return _GatherRows.apply(rows.contiguous(), counts, dist.get_rank(group), group)


def global_independence_loss(
    z: torch.Tensor,
    *,
    pattern="delay",
    delays: Sequence[int] | None = None,
    generator: torch.Generator | None = None,
    group=None,
    options: LossOptions | None = None,
    **option_kwargs,
) -> torch.Tensor:
    """:func:`~mmd_audiocraft.core.loss.independence_loss` over the rows of every process (`inde.global=true`).

    Each process groups its own z [B, K, T, N] into rows by the pattern, the rows are all-gathered with
    gradient, and the row subset (``max_rows``), per-codebook shuffles and blocks (``block_rows``) are drawn
    from ``generator`` on the gathered rows. For the processes to compute the same value, ``generator`` must be
    in the same state on all of them (seed it identically and draw from it only here); if it is not, each
    process computes another valid estimate and the averaged gradient is that of their mean. ``options``: a
    :class:`~mmd_audiocraft.core.options.LossOptions`, or its fields as keywords, as for independence_loss.
    A collective: call it on every process. Without torch.distributed (or with one process) it equals
    independence_loss.
    """
    rows = gather_rows(group_by_pattern(z, pattern, delays), group)
    return independence_loss_from_rows(rows, generator=generator, options=options, **option_kwargs)


# -- evaluation: merge what each process saw -----------------------------------------------------------------
def all_gather_objects(obj, group=None) -> list:
    """Every process's picklable ``obj``, in rank order ([obj] without torch.distributed). A collective."""
    if not is_distributed():
        return [obj]
    out: list = [None] * dist.get_world_size(group)
    dist.all_gather_object(out, obj, group=group)
    return out


def merge_counts_across_ranks(counts: CodeCounts | None, group=None) -> CodeCounts | None:
    """The sum of every process's code counts (None where a process saw nothing), the same on all processes.

    The evaluate stage shards its data over processes; information measures must be computed on the union.
    """
    if not is_distributed():
        return counts
    merged: CodeCounts | None = None
    for part in all_gather_objects(counts, group):
        if part is not None:
            merged = part.copy() if merged is None else merged.merge(part)
    return merged


def merge_vector_samples(sample, group=None):
    """Merge every process's bottom-k row sample into one uniform sample of the union, the same everywhere.

    ``sample`` is a :class:`~mmd_audiocraft.core.sampling.VectorSample`: each row carries a uniform random key and
    the ``capacity`` smallest keys are kept, so keeping the smallest keys of all processes' samples gives a
    uniform sample of all their rows (exactly so when the processes draw their keys independently). Updated in
    place (rank order) and returned; unchanged without torch.distributed.
    """
    if not is_distributed():
        return sample
    parts = all_gather_objects((sample.keys, sample.rows, sample.seen), group)
    sample.keys, sample.rows, sample.seen = torch.zeros(0), None, sum(seen for _, _, seen in parts)
    for keys, rows, _ in parts:
        if rows is not None:
            sample.keep_smallest(keys, rows)
    return sample


# -- checkpoints: every process's state ----------------------------------------------------------------------
class PerRankState:
    """Saves every process's state of ``inner`` in the one checkpoint that rank 0 writes.

    audiocraft writes rank 0's checkpoint only and every process restores from it, so per-process state (the
    loss's generators, stored macro-batch audio, RNG snapshots) would come back as rank 0's on every process.
    Call :meth:`gather` on every process right before the checkpoint is written; :meth:`state_dict` then holds
    the list of all processes' states and :meth:`load_state_dict` hands each process its own. A single process
    saves ``inner``'s state unchanged, and a plain (single-process) state loads on any number of processes.
    """

    def __init__(self, inner):
        self.inner = inner
        self._gathered: list | None = None

    def gather(self, group=None) -> None:
        """Collect every process's state (a collective; a no-op without torch.distributed)."""
        self._gathered = all_gather_objects(self.inner.state_dict(), group) if is_distributed() else None

    def state_dict(self) -> dict:
        if self._gathered is None:
            return self.inner.state_dict()
        gathered, self._gathered = self._gathered, None
        return {"per_rank": gathered}

    def load_state_dict(self, state: dict) -> None:
        if "per_rank" not in state:
            self.inner.load_state_dict(state)
            return
        states, r = state["per_rank"], rank()
        if len(states) != world_size():
            logger.warning("the checkpoint holds the state of %d processes but this run has %d: process %d "
                           "restores process %d's state", len(states), world_size(), r, r % len(states))
        self.inner.load_state_dict(states[r % len(states)])
