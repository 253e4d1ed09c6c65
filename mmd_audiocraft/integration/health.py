"""Codebook health: per-codebook usage, and a guard that notices when the loss starts killing a codebook.

At the paper's weight on a small codec, the MMD gradient can dominate the encoder's and collapse a codebook
to a few codes: the independence numbers then improve for the wrong reason. A collapse is a fall: a codebook's
entropy dropping well below its own established level (the peak of its running entropy once the noisy first
steps are over) or below where the same codec sits without the loss (a baseline's entropy, when given). A low
or rising entropy early in training is not one: codebooks of a codec trained from scratch start near zero
bits after the k-means initialisation and climb.
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
    :func:`mmd_audiocraft.core.metrics.codebook_usage` is the numpy version with the full report fields."""
    flat = codes.detach().transpose(0, 1).reshape(codes.shape[1], -1).long()
    counts = torch.zeros(flat.shape[0], bins, device=flat.device).scatter_add_(
        1, flat, torch.ones_like(flat, dtype=torch.float))
    p = counts / counts.sum(1, keepdim=True)
    entropy = -(p * torch.log2(p.clamp_min(1e-30))).sum(1)
    return entropy.cpu(), (counts > 0).float().mean(1).cpu()


def _copy(values: list | None) -> list | None:
    return None if values is None else list(values)


class CodebookCollapse(RuntimeError):
    """Raised by the guard with action=stop."""


DEFAULT_WARMUP_STEPS = 100  # from scratch: the k-means start and the first climb are over (tiny config: 2 epochs)


@dataclasses.dataclass
class CodebookGuard:
    """Per-codebook entropy EMA during training with the loss on; warns, stops or halves the weight on a fall.

    After `warmup_steps` updates, codebook k's level is the peak of its EMA entropy since then, or
    `baseline_entropy[k]` when that is higher; it has collapsed when its EMA is below
    min(`min_entropy_fraction` x level, level - `min_drop_bits`) (the plug-in entropy of one batch is noisy by
    about a bit on small batches), and counts as recovered once back above the midpoint between that threshold
    and the level, so a codebook hovering at the threshold is reported once, not at every step.
    """
    warmup_steps: int = DEFAULT_WARMUP_STEPS
    min_entropy_fraction: float = 0.5
    min_drop_bits: float = 1.0
    baseline_entropy: list[float] | None = None
    ema_decay: float = 0.95
    action: str = "warn"
    steps: int = 0  # updates seen (steps with the loss on)
    ema: list[float] | None = None
    peak: list[float] | None = None
    peak_step: list[int] | None = None
    collapsed: tuple[int, ...] = ()

    def __post_init__(self):
        checks = [("action", self.action in ACTIONS, f"one of {ACTIONS}"),
                  ("warmup_steps", isinstance(self.warmup_steps, int) and self.warmup_steps >= 0,
                   "null or an int >= 0"),
                  ("min_entropy_fraction", 0 < self.min_entropy_fraction < 1, "a fraction in (0, 1)"),
                  ("min_drop_bits", self.min_drop_bits >= 0, "bits >= 0"),
                  ("ema_decay", 0 <= self.ema_decay < 1, "a decay in [0, 1)"),
                  ("baseline_entropy", self.baseline_entropy is None
                   or all(float(b) >= 0 for b in self.baseline_entropy), "null or bits >= 0 per codebook")]
        for key, ok, expected in checks:
            if not ok:
                raise ValueError(f"inde.guard.{key}={getattr(self, key)!r}: expected {expected}")

    @classmethod
    def from_config(cls, options: dict, n_codebooks: int, fine_tuning: bool) -> CodebookGuard:
        """The guard of the `inde.guard` node (a plain dict) for a codec of `n_codebooks` codebooks.

        `warmup_steps: null` is 0 when fine-tuning (`continue_from`: the loaded codec's usage is the level to
        keep, and no k-means start to wait out), else DEFAULT_WARMUP_STEPS. Raises ValueError naming the key
        when `baseline_entropy` does not have one value per codebook."""
        options = dict(options)
        if options.get("warmup_steps") is None:
            options["warmup_steps"] = 0 if fine_tuning else DEFAULT_WARMUP_STEPS
        baseline = options.get("baseline_entropy")
        if baseline is not None:
            if isinstance(baseline, (int, float)) or len(baseline) != n_codebooks:
                raise ValueError(f"inde.guard.baseline_entropy={baseline!r}: expected a list of {n_codebooks} "
                                 "entropies in bits, one per codebook of this codec")
            options["baseline_entropy"] = [float(b) for b in baseline]
        return cls(**options)

    def _level(self, k: int) -> tuple[float, str]:
        """Codebook k's established level (bits) and what it is, for the message."""
        if self.baseline_entropy is not None and self.baseline_entropy[k] >= self.peak[k]:
            level = self.baseline_entropy[k]
            return level, f"inde.guard.baseline_entropy[{k}] = {level:.2f} bits"
        level = self.peak[k]
        return level, f"its peak EMA of {level:.2f} bits (step {self.peak_step[k]} with the loss on)"

    def _threshold(self, level: float) -> float:
        return min(self.min_entropy_fraction * level, level - self.min_drop_bits)

    def update(self, entropy: list[float]) -> tuple[int, ...]:
        """Feed one step's per-codebook entropies (bits); returns the codebooks newly found collapsed.

        Logs a warning naming each one, its EMA, the level it fell from and the threshold; raises
        CodebookCollapse with action=stop."""
        self.steps += 1
        d = self.ema_decay
        self.ema = list(entropy) if self.ema is None else [d * e + (1 - d) * x for e, x in zip(self.ema, entropy)]
        if self.steps <= self.warmup_steps:
            return ()
        if self.peak is None:
            self.peak, self.peak_step = list(self.ema), [self.steps] * len(self.ema)
        for k, e in enumerate(self.ema):
            if e > self.peak[k]:
                self.peak[k], self.peak_step[k] = e, self.steps
        low = []
        for k, e in enumerate(self.ema):
            level, _ = self._level(k)
            threshold = self._threshold(level)
            if e < threshold or (k in self.collapsed and e < (threshold + level) / 2):
                low.append(k)
        new = tuple(k for k in low if k not in self.collapsed)
        self.collapsed = tuple(low)
        if new:
            details = "; ".join(self._describe(k) for k in new)
            logger.warning("Codebook usage collapsed under the independence loss at step %d with the loss on "
                           "(%s). The independence metrics now improve for the wrong reason; consider a lower "
                           "losses.inde or inde.grad_ratio (inde.guard.action=%s).", self.steps, details,
                           self.action)
            if self.action == "stop":
                raise CodebookCollapse(f"codebook collapse under the independence loss: {details}")
        return new

    def _describe(self, k: int) -> str:
        level, what = self._level(k)
        fraction, drop = self.min_entropy_fraction, self.min_drop_bits
        rule = f"{fraction:g} x {what}" if fraction * level <= level - drop else f"{what} - {drop:g} bits"
        return f"codebook {k}: entropy EMA {self.ema[k]:.2f} bits < {self._threshold(level):.2f} bits = {rule}"

    def state_dict(self) -> dict:
        return {"steps": self.steps, "ema": _copy(self.ema), "peak": _copy(self.peak),
                "peak_step": _copy(self.peak_step), "collapsed": list(self.collapsed)}

    def load_state_dict(self, state: dict) -> None:
        if "peak" not in state:  # a checkpoint of the first guard (reference = mean of the first steps)
            self.steps, self.ema, self.collapsed = state["seen"], state["ema"], ()
            started = self.ema is not None and self.steps > self.warmup_steps
            self.peak = list(self.ema) if started else None
            self.peak_step = [self.steps] * len(self.ema) if started else None
            return
        self.steps, self.ema, self.peak = state["steps"], _copy(state["ema"]), _copy(state["peak"])
        self.peak_step, self.collapsed = _copy(state["peak_step"]), tuple(state["collapsed"])
