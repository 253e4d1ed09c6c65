"""Codebook health: per-codebook usage, and a guard that notices when the loss starts killing a codebook.

At the paper's weight on a small codec, the MMD gradient can dominate the encoder's and collapse a codebook
to a few codes: the independence numbers then improve for the wrong reason. The guard compares each
codebook's entropy with a reference taken when the loss switched on (fine-tuning), and with the median
codebook (training from scratch, where a codebook can be starved from the first steps on).
"""
from __future__ import annotations

import dataclasses
import logging

import torch

logger = logging.getLogger(__name__)
ACTIONS = ("warn", "stop", "reduce")


def codebook_entropy_and_use(codes: torch.Tensor, bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Plug-in entropy (bits) and fraction of the `bins` codes used, per codebook, for codes [B, K, T].

    Counted on the codes' device with one copy to the host at the end, for every training step's metrics;
    :func:`mmd_audiocraft.metrics.codebook_usage` is the numpy version with the full report fields."""
    flat = codes.detach().transpose(0, 1).reshape(codes.shape[1], -1).long()
    counts = torch.zeros(flat.shape[0], bins, device=flat.device).scatter_add_(
        1, flat, torch.ones_like(flat, dtype=torch.float))
    p = counts / counts.sum(1, keepdim=True)
    entropy = -(p * torch.log2(p.clamp_min(1e-30))).sum(1)
    return entropy.cpu(), (counts > 0).float().mean(1).cpu()


class CodebookCollapse(RuntimeError):
    """Raised by the guard with action=stop."""


@dataclasses.dataclass
class CodebookGuard:
    """Tracks per-codebook entropy during training with the loss on; warns, stops or reduces the weight."""
    min_entropy_fraction: float = 0.5
    min_entropy_bits: float = 0.5
    min_fraction_of_median: float = 0.5
    reference_steps: int = 50
    action: str = "warn"
    ema_decay: float = 0.95
    reference: list[float] | None = None
    _sum: list[float] | None = None
    _seen: int = 0
    _ema: list[float] | None = None
    collapsed: tuple[int, ...] = ()

    def __post_init__(self):
        if self.action not in ACTIONS:
            raise ValueError(f"inde.guard.action={self.action!r}: expected one of {ACTIONS}")

    def update(self, entropy: list[float]) -> tuple[int, ...]:
        """Feed one step's entropies; returns the codebooks newly found collapsed (and logs a warning)."""
        if self._seen < self.reference_steps or self.reference is None:
            self._sum = [a + b for a, b in zip(self._sum, entropy)] if self._sum else list(entropy)
            self._seen += 1
            if self._seen >= self.reference_steps:
                self.reference = [s / self._seen for s in self._sum]
            self._ema = list(entropy)
            return ()
        d = self.ema_decay
        self._ema = [d * e + (1 - d) * x for e, x in zip(self._ema, entropy)]
        median = sorted(self._ema)[len(self._ema) // 2]
        low = tuple(k for k, (e, ref) in enumerate(zip(self._ema, self.reference))
                    if e < self.min_entropy_fraction * ref or e < self.min_entropy_bits
                    or e < self.min_fraction_of_median * median)
        new = tuple(k for k in low if k not in self.collapsed)
        self.collapsed = low
        if new:
            details = ", ".join(f"codebook {k}: {self._ema[k]:.2f} bits (was {self.reference[k]:.2f})" for k in new)
            logger.warning("Codebook usage collapsed under the independence loss (%s). The independence "
                           "metrics now improve for the wrong reason; consider a lower losses.inde or "
                           "inde.grad_ratio (inde.guard.action=%s).", details, self.action)
            if self.action == "stop":
                raise CodebookCollapse(f"codebook collapse under the independence loss: {details}")
        return new

    def state_dict(self) -> dict:
        return {"reference": self.reference, "sum": self._sum, "seen": self._seen, "ema": self._ema,
                "collapsed": list(self.collapsed)}

    def load_state_dict(self, state: dict) -> None:
        self.reference, self._sum, self._seen = state["reference"], state["sum"], state["seen"]
        self._ema, self.collapsed = state["ema"], tuple(state["collapsed"])
