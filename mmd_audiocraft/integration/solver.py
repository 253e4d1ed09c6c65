"""audiocraft's CompressionSolver plus the independence loss (`losses.inde`) and independence metrics.

Nothing of the stock training step is rewritten: the per-codebook vectors come from forward hooks
(`capture.py`), and the loss is computed right before the Balancer's backward, through a thin wrapper around
it; its gradient (a function of the latents, not of the decoded audio) is scaled by the raw weight like in the
paper and never rebalanced: it is added at the encoder output, where the Balancer's backward passes (live
batch), or backpropagated on its own (re-encoded macro-batch). With `losses.inde` = 0 the training step is
the stock one.
"""
from __future__ import annotations

import collections
import contextlib
import logging
import math
import random

import flashy
import numpy as np
import omegaconf
import torch
from audiocraft.solvers.compression import CompressionSolver
from torch.utils.checkpoint import checkpoint

from ..core.loss import independence_loss, independence_loss_from_rows
from .capture import CodebookCapture
from .codebooks_pattern import check_pattern, check_segment_frames, pattern_provider
from .distributed import (
    PerRankState,
    global_independence_loss,
    merge_counts_across_ranks,
    merge_vector_samples,
)
from .errors import checkpoint_write_error
from .evaluation import IndependenceEvaluation
from .guard import CodebookGuard, codebook_entropy_and_use
from .options import IndeOptions
from .pretrained import convert_hf_weight_norm_keys

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def _stock_losses(cfg: omegaconf.DictConfig):
    """Hide `losses.inde` from CompressionSolver.__init__, which builds a criterion for every losses key."""
    weight = cfg.losses.get("inde")
    if weight is None:
        yield
        return
    with omegaconf.open_dict(cfg):
        del cfg.losses["inde"]
    try:
        yield
    finally:
        with omegaconf.open_dict(cfg):
            cfg.losses["inde"] = weight


class _IndependenceBeforeBalancer:
    """Stands in for the solver's Balancer: runs the independence backward, then the Balancer's own."""

    def __init__(self, balancer, independence_backward):
        self._balancer = balancer
        self._independence_backward = independence_backward

    def backward(self, losses, input):
        self._independence_backward()  # the encoder graph is still alive here; the Balancer frees it
        return self._balancer.backward(losses, input)

    def __getattr__(self, name):
        return getattr(self._balancer, name)


class _ResumableAverager:
    """The Balancer's EMA of gradient norms (flashy.averager, same arithmetic) with a state to checkpoint:
    audiocraft does not save it, so a resumed run used to rescale its gradients differently from then on."""

    def __init__(self, beta: float):
        self.beta = beta
        self.total: dict[str, float] = {}
        self.fix: dict[str, float] = {}

    def __call__(self, metrics: dict, weight: float = 1) -> dict:
        for key, value in metrics.items():
            self.total[key] = self.total.get(key, 0.0) * self.beta + weight * float(value)
            self.fix[key] = self.fix.get(key, 0.0) * self.beta + weight
        return {key: total / self.fix[key] for key, total in self.total.items()}

    def state_dict(self) -> dict:
        return {"total": dict(self.total), "fix": dict(self.fix)}

    def load_state_dict(self, state: dict) -> None:
        self.total, self.fix = dict(state["total"]), dict(state["fix"])


class IndependenceState:
    """Everything the loss carries across steps, saved with the solver so a killed run resumes exactly."""

    def __init__(self, seed: int, macro_batch: int, guard: CodebookGuard, shared_seed: int = 0):
        self.generator = torch.Generator().manual_seed(seed)  # per process
        self.shared_generator = torch.Generator().manual_seed(shared_seed)  # same on all (inde.global)
        self.stored: collections.deque = collections.deque(maxlen=macro_batch)
        self.step = 0
        self.ema: dict[str, float] = {}
        self.guard = guard
        self.weight_scale = 1.0
        self.balancer_ema: _ResumableAverager | None = None  # the solver's Balancer norms (not the loss's)

    def state_dict(self) -> dict:
        np_state = np.random.get_state()
        return {
            "generator": self.generator.get_state(), "shared_generator": self.shared_generator.get_state(),
            "stored": list(self.stored), "step": self.step,
            "ema": dict(self.ema), "guard": self.guard.state_dict(), "weight_scale": self.weight_scale,
            # global RNGs at the checkpoint (data sampling, dead-code expiry): a resumed epoch replays exactly
            "torch_rng": torch.get_rng_state(), "python_rng": random.getstate(),
            "numpy_rng": (np_state[0], np_state[1].tolist(), *np_state[2:]),
            "balancer_ema": None if self.balancer_ema is None else self.balancer_ema.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        if "shared_generator" in state:
            self.shared_generator.set_state(state["shared_generator"])
        self.stored.clear()
        self.stored.extend(state["stored"])
        self.step, self.ema, self.weight_scale = state["step"], dict(state["ema"]), state["weight_scale"]
        self.guard.load_state_dict(state["guard"])
        torch.set_rng_state(state["torch_rng"])
        random.setstate(state["python_rng"])
        kind, keys, *rest = state["numpy_rng"]
        np.random.set_state((kind, np.array(keys, dtype=np.uint32), *rest))
        if self.balancer_ema is not None and state.get("balancer_ema") is not None:
            self.balancer_ema.load_state_dict(state["balancer_ema"])


_DROPOUT_FLAGS = ("q_dropout", "hierarchical_dropout")  # rvq, pvq


@contextlib.contextmanager
def frozen_codebooks(quantizer: torch.nn.Module):
    """Run the quantizer in training mode (for its straight-through gradient) with its codebooks frozen.

    Every submodule that holds buffers (audiocraft's `EuclideanCodebook`: embed, embed_avg, cluster_size,
    inited) runs in eval mode, so no forward inside the block moves them (EMA update, dead-code expiry):
    every stored batch of a macro-batch pass is quantized with the codebooks of the current step. (Restoring
    a snapshot after the pass is not enough: each batch would be quantized with what the batches before it
    moved.) The one update eval mode allows, the k-means init of a codebook that never ran yet (quantizer
    dropout), happens before the first stored batch is quantized and is undone after the pass, like anything
    else. Quantizer dropout is off (each stored batch keeps every codebook) and the global RNG is restored.
    """
    snapshot = {k: v.detach().clone() for k, v in quantizer.state_dict().items()}
    stateful = [m for m in quantizer.modules() if m.training and next(m.buffers(recurse=False), None) is not None]
    flags = {name: getattr(quantizer, name) for name in _DROPOUT_FLAGS if hasattr(quantizer, name)}
    for name in flags:
        setattr(quantizer, name, False)
    for module in stateful:
        module.training = False  # this module only: the quantization layers above stay in training mode
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            for name, value in flags.items():
                setattr(quantizer, name, value)
            for module in stateful:
                module.training = True
            with torch.no_grad():
                for key, value in quantizer.state_dict().items():
                    value.copy_(snapshot[key])


BAD_DATA = "the data: check the audio files of this batch"
ENCODER_DIVERGED = ("its input is finite, so the encoder diverged (e.g. too large losses.inde or optim.lr), "
                    "not the independence loss")


class MMDCompressionSolver(CompressionSolver):
    """CompressionSolver whose codec is regularised by the MMD independence loss when `losses.inde` > 0."""

    def __init__(self, cfg: omegaconf.DictConfig):
        self.options = IndeOptions.from_config(cfg)  # parsed once and checked, before data and model are built
        if self.options.weight > 0:
            self.options.loss.kernel.warn_if_degenerate()
        with _stock_losses(cfg):
            super().__init__(cfg)
        self.n_q = len(self.model.quantizer.vq.layers) if hasattr(self.model.quantizer, "vq") else \
            self.model.quantizer.total_codebooks
        self.bins = self.model.quantizer.bins
        if self.options.weight > 0:
            check_pattern(self.options.codebooks_pattern, self.n_q)
        ignored = self.options.settings_without_effect()
        if ignored:
            self.logger.warning(
                "%s %s only with the independence loss on, and losses.inde is 0: this XP trains without the loss "
                "(a grid's baseline may share them with its other XPs). The weight-free mode needs the loss on too: "
                "losses.inde=1000 inde.grad_ratio=1 (any positive losses.inde: it only switches the loss on, the ratio "
                "sets the weight).", ", ".join(ignored), "acts" if len(ignored) == 1 else "act")
        self.capture = CodebookCapture(self.model.quantizer, self.options.source)
        guard = CodebookGuard(self.options.guard, self.n_q, fine_tuning=bool(self.cfg.get("continue_from")))
        seed = int(cfg.seed) + 1000 * flashy.distrib.rank()
        self.inde_state = IndependenceState(seed, self.options.macro_batch, guard, shared_seed=int(cfg.seed))
        if hasattr(self.balancer, "averager"):  # resumable Balancer norms, saved with the loss state
            self.balancer.averager = _ResumableAverager(float(self.cfg.balancer.get("ema_decay") or 1.0))
            self.inde_state.balancer_ema = self.balancer.averager
        self._inde_per_rank = PerRankState(self.inde_state)  # audiocraft writes rank 0's checkpoint only
        self.stateful.register("inde_state", self._inde_per_rank)
        self._providers: dict[int, object] = {}
        hop = getattr(self.model.encoder, "hop_length", None) or self.model.sample_rate / self.model.frame_rate
        check_segment_frames(self.cfg, self.options, self._pattern(self.n_q), self.n_q, int(hop),
                             float(self.model.frame_rate))
        self._step_metrics: dict = {}
        self._step_idx = 0
        if self.options.weight > 0:
            self.balancer = _IndependenceBeforeBalancer(self.balancer, self._independence_backward)

    # -- the loss -------------------------------------------------------------------------------------------
    def _pattern(self, n_codebooks: int):
        if n_codebooks not in self._providers:
            self._providers[n_codebooks] = pattern_provider(self.options.codebooks_pattern, n_codebooks)
        return self._providers[n_codebooks]

    def independence(self, z: torch.Tensor, pattern=None) -> torch.Tensor:
        """The configured MMD of per-codebook vectors z [B, K, T, N] (grouped by the configured pattern)."""
        pattern = pattern or self._pattern(z.shape[1])
        if self.options.global_rows and self.is_training:  # all processes' rows (a collective)
            return global_independence_loss(z, pattern=pattern, generator=self.inde_state.shared_generator,
                                            options=self.options.loss)
        return independence_loss(z, pattern=pattern, generator=self.inde_state.generator, options=self.options.loss)

    def independence_of_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """The configured MMD of rows [n, K, N] already grouped by the pattern (held-out samples, on CPU). Its
        shuffles come from `inde.evaluate.seed`, not the training generator: an evaluation gives the same value
        after training and when run alone (`execute_only=evaluate`)."""
        generator = torch.Generator().manual_seed(self.options.evaluate.seed)
        return independence_loss_from_rows(rows, generator=generator, options=self.options.loss)

    def _apply_mmd_gradient(self, mmd: torch.Tensor, passes) -> tuple[float, float]:
        """Send weight x the MMD gradient into the encoder; returns (weight, norm of what was sent).

        The gradient is taken at the encoder outputs first (the per-codebook vectors depend on the parameters
        only through them: straight-through, no parameters in between). Its norm is then known before it is
        applied: the weight-free mode scales it to `grad_ratio` x the running reconstruction gradient norm, on
        this step's MMD gradient (it can change by orders of magnitude between steps, e.g. vanish when codes
        collapse), and applies nothing before a reconstruction gradient was seen (the raw `losses.inde` would
        swamp the first step). On the live batch it joins the Balancer's backward when that reaches the
        encoder output, so the encoder is backpropagated once for both; re-encoded macro-batch passes have
        their own graph and their own backward."""
        embs = [p.emb for p in passes]
        with self.capture.ignoring_grads():
            grads = torch.autograd.grad(mmd, embs, retain_graph=True, allow_unused=True)
        pairs = [(e, g) for e, g in zip(embs, grads) if g is not None]
        unit = math.sqrt(sum(float(g.pow(2).sum()) for _, g in pairs))
        if self.options.grad_ratio is None:
            weight = self.options.weight * self.inde_state.weight_scale
        else:
            rec = self.inde_state.ema.get("rec", 0.0)
            ratio = self.options.grad_ratio
            weight = ratio * rec / unit * self.inde_state.weight_scale if unit > 0 and rec > 0 else 0.0
        if weight == 0 or not pairs:
            return 0.0, 0.0
        if self.options.macro_batch == 1:
            for emb, grad in pairs:  # hooks run in order: the capture's, registered earlier, sees the pure rec
                emb.register_hook(lambda rec_grad, extra=weight * grad: rec_grad + extra)
        else:
            with self.capture.ignoring_grads():
                torch.autograd.backward([e for e, _ in pairs], [weight * g for _, g in pairs])
        return weight, weight * unit

    def _reencode_stored(self):
        """Macro-batch passes: the stored audio re-encoded with checkpointing, codebooks left alone."""
        model = self.model

        def encode(x):
            return model.encoder(model.preprocess(x)[0])

        with frozen_codebooks(model.quantizer), self.capture.recording() as passes:
            for audio in self.inde_state.stored:
                emb = checkpoint(encode, audio.to(self.device), use_reentrant=False)
                model.quantizer(emb, model.frame_rate)
        return passes

    def _independence_backward(self):
        state, options = self.inde_state, self.options
        state.step += 1
        if (state.step - 1) % options.every != 0:
            return
        passes = self._reencode_stored() if options.macro_batch > 1 else self._live_passes[:1]
        for p in passes:  # what is not finite first: named here, not as a bad argument of the loss
            self._stop_if_not_finite("the encoder output", p.emb, ENCODER_DIVERGED)
        passes = [p for p in passes if len(p.vectors) >= 2]
        if not passes:
            return  # quantizer dropout kept a single codebook
        k = min(len(p.vectors) for p in passes)
        mmd = self.independence(torch.cat([p.stacked()[:, :k] for p in passes]))
        if not torch.isfinite(mmd):
            raise FloatingPointError(f"the independence loss is {mmd.item()} at step {state.step}: stopping "
                                     "before this epoch's checkpoint is written (the last good one is kept)")
        weight, inde_norm = self._apply_mmd_gradient(mmd, passes)
        self._step_metrics.update(inde=mmd.detach(), inde_weight=weight, inde_grad_norm=inde_norm)

    def _update_ema(self, key: str, value: float) -> None:
        decay = self.options.grad_ratio_ema
        ema = self.inde_state.ema
        ema[key] = value if key not in ema else decay * ema[key] + (1 - decay) * value

    # -- the training / valid step --------------------------------------------------------------------------
    def run_step(self, idx: int, batch: torch.Tensor, metrics: dict):
        training_with_loss = self.is_training and self.options.weight > 0
        self._step_idx = idx
        self._stop_if_not_finite("the input audio", batch, BAD_DATA)
        if training_with_loss and self.options.macro_batch > 1:
            self.inde_state.stored.append(batch.detach().cpu())
        self._step_metrics = {}
        self.capture.track_grads = training_with_loss
        with self.capture.recording() as passes:
            self._live_passes = passes
            metrics = super().run_step(idx, batch, metrics)
        self._live_passes = []
        live = passes[0]
        self._stop_if_not_finite("the encoder output", live.emb, ENCODER_DIVERGED)
        metrics.update(self._step_metrics)
        if training_with_loss:
            rec_norm = math.sqrt(live.grad_norm_sq())
            metrics["rec_grad_norm"] = rec_norm
            self._update_ema("rec", rec_norm)
            if "inde_grad_norm" in self._step_metrics and rec_norm > 0:
                metrics["inde_grad_ratio"] = self._step_metrics["inde_grad_norm"] / rec_norm
        elif not self.is_training and len(live.vectors) >= 2:
            with torch.no_grad():
                metrics["inde"] = self.independence(live.stacked())
        entropy, used = codebook_entropy_and_use(live.stacked_codes(), self.bins)
        for k in range(len(entropy)):
            metrics[f"usage_entropy_q{k}"] = float(entropy[k])
            metrics[f"usage_used_q{k}"] = float(used[k])
        if training_with_loss and len(entropy) == self.n_q:
            guard = self.inde_state.guard
            acted = bool(guard.update(entropy.tolist()))
            if "inde_grad_ratio" in metrics:
                acted = guard.update_grad_ratio(metrics["inde_grad_ratio"]) or acted
            if acted and guard.action == "reduce":
                self.inde_state.weight_scale *= 0.5
                self.logger.warning("inde.guard: halving the independence weight (scale now %.3g)",
                                    self.inde_state.weight_scale)
        self._check_finite(metrics)
        return metrics

    def _stop_if_not_finite(self, what: str, tensor: torch.Tensor, cause: str) -> None:
        """Stop the run, naming the first non-finite thing of the step and its likely cause."""
        finite = torch.isfinite(tensor.detach())
        if bool(finite.all()):
            return
        raise FloatingPointError(
            f"{self.current_stage} step {self._step_idx} of epoch {self.epoch}: {what} is not finite "
            f"({int((~finite).sum())} of {finite.numel()} values are NaN or infinite; {cause}); stopping before "
            "this epoch's checkpoint is written, so the last good checkpoint is kept")

    def _check_finite(self, metrics: dict) -> None:
        for name, value in metrics.items():
            value = value.detach() if isinstance(value, torch.Tensor) else torch.tensor(float(value))
            if not bool(torch.isfinite(value).all()):
                raise FloatingPointError(
                    f"{self.current_stage} metric {name!r} is not finite at epoch {self.epoch}: the run diverged "
                    "(e.g. too large losses.inde); stopping before this epoch's checkpoint is written, so the "
                    "last good checkpoint is kept")

    # -- evaluate / fine-tuning -----------------------------------------------------------------------------
    def evaluate(self):
        """The stock reconstruction metrics, plus the independence of the held-out codes (same forward)."""
        if not self.options.evaluate.metrics:
            return super().evaluate()
        evaluation = IndependenceEvaluation(self.bins, self._pattern, self.independence_of_rows,
                                            self.options.evaluate, rank=flashy.distrib.rank())
        self.capture.track_grads = False
        with self.capture.recording(sink=evaluation.add):
            metrics = super().evaluate()
        evaluation.counts = merge_counts_across_ranks(evaluation.counts)  # the union of all processes' shards
        merge_vector_samples(evaluation.sample)
        metrics.update(evaluation.metrics())
        return metrics

    def save_checkpoints(self):
        self._inde_per_rank.gather()  # every process's loss state into rank 0's checkpoint (a collective)
        try:
            super().save_checkpoints()
        except Exception as exc:  # the cause first: torch's zip writer puts the OS error one exception up
            error = checkpoint_write_error(exc, self.checkpoint_path())
            if error is None:
                raise
            raise error from exc

    def load_from_pretrained(self, name: str) -> dict:
        return convert_hf_weight_norm_keys(super().load_from_pretrained(name))
