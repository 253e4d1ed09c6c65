"""Product vector quantization (PVQ) for EnCodec, with optional hierarchical dropout (paper appendices C-D).

The latent's D channels are split into K equal groups, each quantized by its own codebook of D/K dimensions:
no codebook depends on another's output, unlike residual VQ. Hierarchical dropout keeps, at train time, a
random prefix of k ~ U{1..K} codebooks and zeros the other groups, so the codec learns to rely on its first
codebooks (a hierarchy like RVQ's). Each group is one audiocraft `VectorQuantization`, so codebook learning
(EMA, k-means init, dead-code expiry) and the straight-through gradient are exactly audiocraft's.
"""
from __future__ import annotations

import math

import torch
from audiocraft.quantization.base import BaseQuantizer, QuantizedResult
from audiocraft.quantization.core_vq import VectorQuantization
from torch import nn

from .process import wrap_once


class ProductVectorQuantizer(BaseQuantizer):
    """K codebooks of `bins` entries, codebook k quantizing latent channels [k*D/K, (k+1)*D/K).

    Args:
        dimension: latent channels D (must be divisible by n_q).
        n_q: number of codebooks K.
        bins: entries per codebook.
        decay, kmeans_init, kmeans_iters, threshold_ema_dead_code: as in audiocraft's ResidualVectorQuantizer.
        hierarchical_dropout: at train time, quantize only a random prefix of k ~ U{1..n} active codebooks
            (torch's global RNG, like RVQ's q_dropout) and feed zeros for the other groups.
    """

    def __init__(self, dimension: int = 128, n_q: int = 4, bins: int = 1024, decay: float = 0.99,
                 kmeans_init: bool = True, kmeans_iters: int = 10, threshold_ema_dead_code: int = 2,
                 hierarchical_dropout: bool = False):
        super().__init__()
        if int(n_q) < 1:
            raise ValueError(f"pvq.n_q={n_q}: expected at least 1 codebook")
        if int(dimension) % int(n_q) != 0:
            raise ValueError(f"pvq.n_q={n_q} does not divide the latent dimension {dimension}: each codebook "
                             "quantizes dimension / n_q channels")
        if int(bins) < 2:
            raise ValueError(f"pvq.bins={bins}: expected at least 2 entries per codebook")
        self.dimension = int(dimension)
        self.max_n_q = int(n_q)
        self.n_q = int(n_q)
        self.group_dim = self.dimension // self.max_n_q
        self.bins = int(bins)
        self.hierarchical_dropout = bool(hierarchical_dropout)
        self.layers = nn.ModuleList([
            VectorQuantization(dim=self.group_dim, codebook_size=self.bins, decay=decay,
                               kmeans_init=kmeans_init, kmeans_iters=kmeans_iters,
                               threshold_ema_dead_code=threshold_ema_dead_code, channels_last=False)
            for _ in range(self.max_n_q)])

    def codebook_layers(self) -> list[nn.Module]:
        """Per-codebook quantizers in codebook order; each outputs [B, N, T] with N = D/K (used by the MMD capture)."""
        return list(self.layers)

    def _check_latent(self, x: torch.Tensor) -> None:
        if x.dim() != 3 or x.shape[1] != self.dimension:
            raise ValueError(f"x: expected a latent [B, {self.dimension}, T], got shape {tuple(x.shape)}")

    def _zeros_after(self, parts: list[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
        """Concatenate the kept groups and zeros for the dropped ones: always [B, D, T]."""
        missing = self.max_n_q - len(parts)
        if missing:
            parts = parts + [like.new_zeros(like.shape[0], missing * self.group_dim, like.shape[-1])]
        return torch.cat(parts, dim=1)

    def bandwidth(self, n_codebooks: int, frame_rate: int) -> float:
        """kb/s for n_codebooks codes of log2(bins) bits at frame_rate frames/s (as audiocraft's RVQ)."""
        return n_codebooks * math.log2(self.bins) * frame_rate / 1000

    def forward(self, x: torch.Tensor, frame_rate: int) -> QuantizedResult:
        """Quantized latent [B, D, T], codes [B, k, T] for the k codebooks used (k < n_q only under dropout)."""
        self._check_latent(x)
        n = self.n_q
        if self.training and self.hierarchical_dropout:
            n = int(torch.randint(1, n + 1, (1,)).item())
        quantized, codes, losses = [], [], []
        for layer, group in zip(self.layers[:n], x.split(self.group_dim, dim=1)):
            q, c, loss = layer(group)
            quantized.append(q)
            codes.append(c)
            losses.append(loss)
        bandwidth = torch.tensor(self.bandwidth(n, frame_rate)).to(x)
        return QuantizedResult(self._zeros_after(quantized, x), torch.stack(codes, dim=1), bandwidth,
                               penalty=torch.mean(torch.stack(losses)))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Codes [B, n, T] of the n active codebooks."""
        self._check_latent(x)
        groups = x.split(self.group_dim, dim=1)
        return torch.stack([layer.encode(g) for layer, g in zip(self.layers[: self.n_q], groups)], dim=1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Latent [B, D, T] from codes [B, n, T] (n <= n_q): groups without codes are zeros."""
        if codes.dim() != 3 or not 1 <= codes.shape[1] <= self.max_n_q:
            raise ValueError(f"codes: expected [B, n, T] with 1 <= n <= {self.max_n_q}, got {tuple(codes.shape)}")
        parts = [layer.decode(codes[:, k]) for k, layer in enumerate(self.layers[: codes.shape[1]])]
        return self._zeros_after(parts, parts[0])

    @property
    def total_codebooks(self) -> int:
        return self.max_n_q

    @property
    def num_codebooks(self) -> int:
        return self.n_q

    def set_num_codebooks(self, n: int) -> None:
        """Use only the first n codebooks (the others' groups decode as zeros)."""
        if not 1 <= int(n) <= self.max_n_q:
            raise ValueError(f"n={n}: expected 1 <= n <= {self.max_n_q} codebooks")
        self.n_q = int(n)


def install_quantizers() -> None:
    """The seam that registers PVQ into audiocraft's model builder (listed in `seams.py`): `encodec.quantizer:
    pvq` builds ProductVectorQuantizer from the `pvq:` node (plus the encoder's `dimension`); every other name
    goes to audiocraft's own builder. Enough for training, `//sig/` loading by the LM solvers and
    `model_from_checkpoint` alike (all call the module global). Idempotent."""
    from audiocraft.models import builders
    from audiocraft.utils.utils import dict_from_config

    def make(stock):
        def get_quantizer(quantizer: str, cfg, dimension: int):
            if quantizer != "pvq":
                return stock(quantizer, cfg, dimension)
            node = cfg.get(quantizer) if hasattr(cfg, "get") else getattr(cfg, quantizer, None)
            if node is None:
                raise ValueError(f"encodec.quantizer={quantizer!r} but the config has no `{quantizer}:` node: "
                                 "select a model config that defines it, e.g. model=encodec/encodec_pvq_nq4")
            return ProductVectorQuantizer(dimension=dimension, **dict_from_config(node))
        return get_quantizer

    wrap_once(builders, "get_quantizer", make)
