"""Random draws of rows: a permutation drawn where its generator lives (the loss's shuffles, row subsets and
blocks), and a bounded uniform sample of rows from a stream (held-out vectors for the MMD metrics), mergeable
across processes. torch only: used by the loss, the solver's evaluate stage and `mmd-audiocraft measure`."""
from __future__ import annotations

import torch


def random_permutation(n: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """A permutation of range(n) [n] int64, drawn on the generator's device (CPU without one) and moved to
    ``device``: a CPU generator keeps the same draws on every device (torch.randperm needs them on one)."""
    gen_device = generator.device if generator is not None else torch.device("cpu")
    return torch.randperm(n, generator=generator, device=gen_device).to(device)


class VectorSample:
    """A uniform random sample without replacement of at most `capacity` rows from a stream of rows.

    Every row gets an i.i.d. uniform key and the `capacity` smallest keys are kept, so the sample is uniform
    over all rows seen, whatever the batch sizes.
    """

    def __init__(self, capacity: int, seed: int = 0):
        self.capacity = int(capacity)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.keys = torch.zeros(0)
        self.rows: torch.Tensor | None = None
        self.seen = 0

    def add(self, rows: torch.Tensor) -> None:
        self.seen += rows.shape[0]
        if self.capacity <= 0 or rows.shape[0] == 0:
            return
        self.keep_smallest(torch.rand(rows.shape[0], generator=self.generator), rows.detach().float().cpu())

    def keep_smallest(self, keys: torch.Tensor, rows: torch.Tensor) -> None:
        """Add rows that already carry their keys (another sample's) and keep the `capacity` smallest keys,
        in order of arrival; `seen` is the caller's to update."""
        if self.rows is not None:
            keys, rows = torch.cat([self.keys, keys]), torch.cat([self.rows, rows])
        if keys.shape[0] > self.capacity:
            keep = torch.topk(keys, self.capacity, largest=False).indices.sort().values
            keys, rows = keys[keep], rows[keep]
        self.keys, self.rows = keys, rows
