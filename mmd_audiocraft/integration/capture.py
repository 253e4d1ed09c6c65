"""Per-codebook vectors of an audiocraft quantizer, captured with forward hooks during its normal forward.

audiocraft's RVQ returns only the summed quantized vector; the loss needs each codebook's contribution. Each
`VectorQuantization` layer outputs its quantized vector with a straight-through gradient to the encoder, so a
hook on the layers sees exactly what the paper regularises, without re-running or copying the quantizer.
"""
from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable

import torch
from torch import nn

SOURCES = ("quantized", "residual", "input")


def codebook_layers(quantizer: nn.Module) -> list[nn.Module]:
    """The modules that each quantize for one codebook, in codebook order."""
    if hasattr(quantizer, "codebook_layers"):
        return list(quantizer.codebook_layers())
    layers = getattr(getattr(quantizer, "vq", None), "layers", None)
    if layers is None:
        raise ValueError(f"{type(quantizer).__name__} has no per-codebook layers (quantizer.vq.layers): the "
                         "independence loss needs a vector quantizer with several codebooks (rvq or pvq).")
    return list(layers)


class Switch:
    """An on/off flag shared by a capture and its hooks (it holds nothing else, see GradSum)."""

    def __init__(self):
        self.on = False


class GradSum:
    """A backward hook: the sum of the gradients that reached its tensor while `ignore` was off.

    Why a separate object: a hook on a non-leaf tensor lives in a dict held by the tensor's C++ `grad_fn`, a
    reference Python's GC cannot see, so a hook that reaches the tensor again (e.g. through the pass holding
    `emb`) makes a cycle that is never collected: every training step's `emb`, codebook vectors and graph stayed
    alive (RSS grew ~10 MB per step of the tiny codec). This holds only the detached sum and a Switch."""

    def __init__(self, ignore: Switch | None = None):
        self.value: torch.Tensor | None = None
        self.ignore = ignore or Switch()

    def __call__(self, grad: torch.Tensor) -> None:
        if not self.ignore.on:
            self.value = grad.detach() if self.value is None else self.value + grad.detach()


@dataclasses.dataclass
class QuantizerPass:
    """One quantizer forward: its input `emb` [B, D, T] (D: the encoder's latent dimension), each codebook's
    vector [B, N, T] (N: a codebook vector's dimension; N = D for RVQ, D/K for PVQ) and codes [B, T], and the sum
    of the gradients that later reached `emb` outside `ignoring_grads` (the solver: the reconstruction's)."""
    emb: torch.Tensor
    vectors: list[torch.Tensor] = dataclasses.field(default_factory=list)
    codes: list[torch.Tensor] = dataclasses.field(default_factory=list)
    grad_sum: GradSum = dataclasses.field(default_factory=GradSum)

    @property
    def grad(self) -> torch.Tensor | None:
        return self.grad_sum.value

    def stacked(self) -> torch.Tensor:
        """[B, K, T, N] for the codebooks that ran (fewer than n_q under quantizer dropout)."""
        return torch.stack(self.vectors, dim=1).transpose(2, 3)

    def stacked_codes(self) -> torch.Tensor:
        return torch.stack(self.codes, dim=1)

    def grad_norm_sq(self) -> float:
        return 0.0 if self.grad is None else float(self.grad.float().pow(2).sum())


class CodebookCapture:
    """Records the quantizer passes made while `recording()` is active.

    `track_grads` also records the gradient reaching each pass's `emb` (the encoder output), except inside
    `ignoring_grads`: the solver reads the reconstruction's gradient there, and runs the MMD's backward inside.
    """

    def __init__(self, quantizer: nn.Module, source: str = "quantized"):
        if source not in SOURCES:
            raise ValueError(f"inde.source={source!r}: expected one of {SOURCES}")
        self.source = source
        self.track_grads = False
        self._ignore_grads = Switch()
        self._stack: list[tuple[list[QuantizerPass], Callable | None]] = []
        self._handles = [quantizer.register_forward_pre_hook(self._on_quantizer_input)]
        for layer in codebook_layers(quantizer):
            self._handles.append(layer.register_forward_hook(self._on_codebook_output))

    def _on_quantizer_input(self, module, args):
        if not self._stack:
            return
        passes, sink = self._stack[-1]
        if sink is not None and passes:
            sink(passes.pop())
        current = QuantizerPass(emb=args[0], grad_sum=GradSum(self._ignore_grads))
        if self.track_grads and current.emb.requires_grad:
            current.emb.register_hook(current.grad_sum)  # the sum, never the pass: no cycle back to emb
        passes.append(current)

    def _on_codebook_output(self, module, args, output):
        if not self._stack or not self._stack[-1][0]:
            return
        stage_input, quantized, codes = args[0], output[0], output[1]
        if self.source == "quantized":
            vector = quantized
        elif self.source == "residual":  # what this stage leaves to the next ones; gradient = identity
            vector = stage_input - quantized.detach()
        else:
            vector = stage_input
        current = self._stack[-1][0][-1]
        current.vectors.append(vector)
        current.codes.append(codes)

    @contextlib.contextmanager
    def recording(self, sink: Callable[[QuantizerPass], None] | None = None):
        """Yields the list of passes made inside the block. With `sink`, each finished pass is handed to it
        and dropped instead (bounded memory over a whole evaluation set)."""
        passes: list[QuantizerPass] = []
        self._stack.append((passes, sink))
        try:
            yield passes
        finally:
            self._stack.pop()
            if sink is not None and passes:
                sink(passes.pop())

    @contextlib.contextmanager
    def ignoring_grads(self):
        """Gradients reaching `emb` inside the block are not recorded."""
        previous, self._ignore_grads.on = self._ignore_grads.on, True
        try:
            yield
        finally:
            self._ignore_grads.on = previous

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
