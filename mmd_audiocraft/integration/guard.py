"""Codebook health: per-codebook usage, and a guard that notices when the loss starts killing a codebook.

At the paper's weight on a small codec, the MMD gradient can dominate the encoder's and collapse a codebook
to a few codes: the independence numbers then improve for the wrong reason. The guard watches two things. A
collapse is a fall: a codebook's entropy dropping well below its own established level (the peak of its running
entropy once the noisy first steps are over) or below where the same codec sits without the loss (a baseline's
entropy, when given); a low or rising entropy early in training is not one (codebooks of a codec trained from
scratch start near zero bits after the k-means initialisation and climb). Dominance is the regime that causes
collapses, seen from the first steps: the MMD gradient held far above the reconstruction gradient.
"""
from __future__ import annotations

import dataclasses
import logging

import torch

from ..core.validation import is_int_at_least, is_number

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
    """Raised by the guard with action=stop when a codebook collapses."""


class MMDDominates(RuntimeError):
    """Raised by the guard with action=stop when the MMD gradient dominates the reconstruction's."""


DEFAULT_WARMUP_STEPS = 100  # from scratch: the k-means start and the first climb are over (tiny config: 2 epochs)


@dataclasses.dataclass(frozen=True)
class GuardOptions:
    """The `inde.guard` node: when the guard judges, what counts as a collapse or as MMD dominance, and what it does.

    Fields:
        warmup_steps: steps with the loss on that are not judged; None = DEFAULT_WARMUP_STEPS from scratch, 0 when
            fine-tuning (`continue_from`: the loaded codec's usage is the level to keep).
        min_entropy_fraction, min_drop_bits: a codebook has collapsed when its entropy EMA is below
            min(fraction x its level, level - drop bits).
        baseline_entropy: bits per codebook of the same codec without the loss (a level the codebook must keep
            even if it never reached it under the loss); None = its own peak only.
        ema_decay: of the per-batch entropy.
        max_grad_ratio, max_grad_ratio_steps: the MMD dominates when `inde_grad_ratio` (|MMD gradient| /
            |reconstruction gradient| at the encoder output) stays above max_grad_ratio for max_grad_ratio_steps
            consecutive MMD steps after the warm-up. Calibrated on the tiny codec: the weight-free mode holds the
            ratio near its setting (about 1), weight 10 reads ~0.01, the paper's weight 1000 starts at ~100.
        action: "warn", "stop" (raise) or "reduce" (halve the weight at each collapse, and at each full window of
            dominance).

    Raises ValueError naming `inde.guard.<key>`, its value and what was expected.
    """
    warmup_steps: int | None = None
    min_entropy_fraction: float = 0.5
    min_drop_bits: float = 1.0
    baseline_entropy: tuple[float, ...] | None = None
    ema_decay: float = 0.95
    max_grad_ratio: float = 10.0
    max_grad_ratio_steps: int = 50
    action: str = "warn"

    def __post_init__(self) -> None:
        baseline = self.baseline_entropy
        if baseline is not None and not isinstance(baseline, (int, float)):
            object.__setattr__(self, "baseline_entropy", tuple(float(b) for b in baseline))
        checks = [("action", self.action in ACTIONS, f"one of {ACTIONS}"),
                  ("warmup_steps", self.warmup_steps is None or is_int_at_least(self.warmup_steps, 0),
                   "null or an int >= 0"),
                  ("min_entropy_fraction", is_number(self.min_entropy_fraction) and 0 < self.min_entropy_fraction < 1,
                   "a fraction in (0, 1)"),
                  ("min_drop_bits", is_number(self.min_drop_bits) and self.min_drop_bits >= 0, "bits >= 0"),
                  ("ema_decay", is_number(self.ema_decay) and 0 <= self.ema_decay < 1, "a decay in [0, 1)"),
                  ("max_grad_ratio", is_number(self.max_grad_ratio) and self.max_grad_ratio > 0, "a ratio > 0"),
                  ("max_grad_ratio_steps", is_int_at_least(self.max_grad_ratio_steps, 1), "an int >= 1"),
                  ("baseline_entropy", self.baseline_entropy is None or (
                      isinstance(self.baseline_entropy, tuple) and all(b >= 0 for b in self.baseline_entropy)),
                   "null or a list of bits >= 0, one per codebook")]
        for key, ok, expected in checks:
            if not ok:
                raise ValueError(f"inde.guard.{key}={getattr(self, key)!r}: expected {expected}")


class CodebookGuard:
    """Judges training with the loss on; warns, stops or halves the weight (per `GuardOptions.action`) when:

    - a codebook collapses: after the warm-up, codebook k's level is the peak of its EMA entropy since then, or
      `baseline_entropy[k]` when that is higher; it has collapsed when its EMA is below
      min(`min_entropy_fraction` x level, level - `min_drop_bits`) (the plug-in entropy of one batch is noisy by
      about a bit on small batches), and counts as recovered once back above the midpoint between that
      threshold and the level, so a codebook hovering at the threshold is reported once, not at every step;
    - the MMD dominates: `inde_grad_ratio` above `max_grad_ratio` for `max_grad_ratio_steps` consecutive MMD
      steps after the warm-up. Reported once per such episode (again only after the ratio fell back below the
      threshold); with action=reduce, the weight is halved at each full window the episode lasts. A codebook
      the loss keeps low from the first steps has no peak to fall from: this rule sees that regime.

    Args: the options, the codec's number of codebooks (`baseline_entropy` must have one value per codebook:
    ValueError naming the key otherwise), and whether the run fine-tunes (the warm-up default).
    """

    def __init__(self, options: GuardOptions = GuardOptions(), n_codebooks: int | None = None,
                 fine_tuning: bool = False):
        baseline = options.baseline_entropy
        if baseline is not None and n_codebooks is not None and len(baseline) != n_codebooks:
            raise ValueError(f"inde.guard.baseline_entropy={list(baseline)}: expected a list of {n_codebooks} "
                             "entropies in bits, one per codebook of this codec")
        self.options = options
        default = 0 if fine_tuning else DEFAULT_WARMUP_STEPS
        self.warmup_steps = default if options.warmup_steps is None else options.warmup_steps
        self.steps = 0  # updates seen (steps with the loss on)
        self.ema: list[float] | None = None
        self.peak: list[float] | None = None
        self.peak_step: list[int] | None = None
        self.collapsed: tuple[int, ...] = ()
        self.dominant_ratios: list[float] = []  # the current run of MMD steps above max_grad_ratio
        self.dominance_reported = False

    @property
    def action(self) -> str:
        return self.options.action

    # -- collapse ---------------------------------------------------------------------------------------
    def _level(self, k: int) -> tuple[float, str]:
        """Codebook k's established level (bits) and what it is, for the message."""
        baseline = self.options.baseline_entropy
        if baseline is not None and baseline[k] >= self.peak[k]:
            return baseline[k], f"inde.guard.baseline_entropy[{k}] = {baseline[k]:.2f} bits"
        level = self.peak[k]
        return level, f"its peak EMA of {level:.2f} bits (step {self.peak_step[k]} with the loss on)"

    def _threshold(self, level: float) -> float:
        return min(self.options.min_entropy_fraction * level, level - self.options.min_drop_bits)

    def update(self, entropy: list[float]) -> tuple[int, ...]:
        """Feed one step's per-codebook entropies (bits); returns the codebooks newly found collapsed.

        Logs a warning naming each one, its EMA, the level it fell from and the threshold; raises
        CodebookCollapse with action=stop."""
        self.steps += 1
        d = self.options.ema_decay
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
        fraction, drop = self.options.min_entropy_fraction, self.options.min_drop_bits
        rule = f"{fraction:g} x {what}" if fraction * level <= level - drop else f"{what} - {drop:g} bits"
        return f"codebook {k}: entropy EMA {self.ema[k]:.2f} bits < {self._threshold(level):.2f} bits = {rule}"

    # -- dominance --------------------------------------------------------------------------------------
    def update_grad_ratio(self, ratio: float) -> bool:
        """Feed the `inde_grad_ratio` of an MMD step (after :meth:`update` of that step); returns True when the
        guard acts on MMD dominance (the caller halves the weight with action=reduce).

        Logs a warning naming the ratio, how many MMD steps it has held, and the way out; raises MMDDominates
        with action=stop."""
        if self.steps <= self.warmup_steps:
            return False
        limit, window = self.options.max_grad_ratio, self.options.max_grad_ratio_steps
        if not ratio > limit:
            self.dominant_ratios, self.dominance_reported = [], False
            return False
        self.dominant_ratios.append(float(ratio))
        if len(self.dominant_ratios) % window or (self.dominance_reported and self.action != "reduce"):
            return False
        self.dominance_reported = True
        held = len(self.dominant_ratios)
        ratios = sorted(self.dominant_ratios[-window:])
        message = (f"the MMD gradient dominates the reconstruction's: inde_grad_ratio has stayed above "
                   f"{limit:g} for {held} MMD steps (steps {self.steps - held + 1}-{self.steps} with the loss on; "
                   f"median {ratios[len(ratios) // 2]:.3g}, last {ratio:.3g}): the regime in which a small codec "
                   "loses codebooks. Use the weight-free mode, inde.grad_ratio=1 (the MMD gradient held at the "
                   f"reconstruction's), or a lower losses.inde (inde.guard.action={self.action})")
        logger.warning(message[0].upper() + message[1:] + ".")
        if self.action == "stop":
            raise MMDDominates(message)
        return True

    # -- checkpoints ------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"steps": self.steps, "ema": _copy(self.ema), "peak": _copy(self.peak),
                "peak_step": _copy(self.peak_step), "collapsed": list(self.collapsed),
                "dominant_ratios": list(self.dominant_ratios), "dominance_reported": self.dominance_reported}

    def load_state_dict(self, state: dict) -> None:
        self.dominant_ratios = list(state.get("dominant_ratios", []))
        self.dominance_reported = bool(state.get("dominance_reported", False))
        if "peak" not in state:  # a checkpoint of the first guard (reference = mean of the first steps)
            self.steps, self.ema, self.collapsed = state["seen"], state["ema"], ()
            started = self.ema is not None and self.steps > self.warmup_steps
            self.peak = list(self.ema) if started else None
            self.peak_step = [self.steps] * len(self.ema) if started else None
            return
        self.steps, self.ema, self.peak = state["steps"], _copy(state["ema"]), _copy(state["peak"])
        self.peak_step, self.collapsed = _copy(state["peak_step"]), tuple(state["collapsed"])
