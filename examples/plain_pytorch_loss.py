"""The independence loss in a plain PyTorch loop, on a hand-written toy codec (no audiocraft).

A tiny conv encoder/decoder with a 3-stage residual vector quantizer (straight-through estimator) learns to
reconstruct synthetic signals, twice: without and with the MMD independence loss on the per-codebook
quantized vectors (paper appendix B: the loss is codec-agnostic; it only needs z [B, K, T, N]). The
held-out MMD (disjoint estimator, exactly unbiased; median-heuristic bandwidths) is printed as training goes:
with the loss it ends several times lower, at some cost in reconstruction (as on real codecs at this scale).
The train MMD (paper estimator) can dip below 0: that estimator reads slightly low near independence.

    python examples/plain_pytorch_loss.py        # about 20 s on 2 CPU cores
"""
from __future__ import annotations

import time

import torch
from torch import nn
from torch.nn import functional as F

from mmd_audiocraft import Kernel, MMDIndependenceLoss, independence_loss

STEPS, BATCH, LENGTH = 200, 16, 256
N_Q, BINS, DIM = 3, 32, 8
BANDWIDTHS = (0.5, 1.0, 2.0)


def signals(batch: int, gen: torch.Generator) -> torch.Tensor:
    """Sums of three random sinusoids plus a little noise, [B, 1, LENGTH]."""
    t = torch.arange(LENGTH) / LENGTH
    freq = torch.randint(2, 40, (batch, 3, 1), generator=gen).float()
    phase = 6.283 * torch.rand(batch, 3, 1, generator=gen)
    amp = torch.rand(batch, 3, 1, generator=gen)
    x = (amp * torch.sin(6.283 * freq * t + phase)).sum(1, keepdim=True)
    return x + 0.02 * torch.randn(x.shape, generator=gen)


class ResidualVQ(nn.Module):
    """Residual vector quantizer: stage k quantizes what stages < k left over."""

    def __init__(self, n_q: int, bins: int, dim: int):
        super().__init__()
        self.codebooks = nn.Parameter(0.5 * torch.randn(n_q, bins, dim))

    def forward(self, x: torch.Tensor):
        """x [B, D, T] -> (straight-through reconstruction, per-codebook vectors z [B, K, T, N], vq loss)."""
        residual = x.transpose(1, 2)  # [B, T, D]
        stages, vq_loss = [], 0.0
        for book in self.codebooks:
            idx = torch.cdist(residual.detach(), book[None]).argmin(-1)  # nearest code, [B, T]
            code = book[idx]
            vq_loss = vq_loss + F.mse_loss(code, residual.detach()) + 0.25 * F.mse_loss(residual, code.detach())
            stage = residual + (code - residual).detach()  # straight-through: gradient reaches the encoder
            stages.append(stage)
            residual = residual - code.detach()
        z = torch.stack(stages, dim=1)  # [B, K, T, N] (N = D: residual stages)
        return z.sum(1).transpose(1, 2), z, vq_loss


class ToyCodec(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv1d(1, 32, 4, 2, 1), nn.GELU(), nn.Conv1d(32, DIM, 4, 2, 1))
        self.quantizer = ResidualVQ(N_Q, BINS, DIM)
        self.decoder = nn.Sequential(nn.ConvTranspose1d(DIM, 32, 4, 2, 1), nn.GELU(),
                                     nn.ConvTranspose1d(32, 1, 4, 2, 1))

    def forward(self, x):
        q, z, vq_loss = self.quantizer(self.encoder(x))
        return self.decoder(q), z, vq_loss


def train(weight: float, held_out: torch.Tensor) -> tuple[float, float]:
    """Train one toy codec; returns the held-out (MMD, reconstruction error) at the end."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    codec = ToyCodec()
    opt = torch.optim.Adam(codec.parameters(), lr=3e-3)
    # 1024 rows per batch; a random subset of 512 keeps each step cheap.
    kernel = Kernel(bandwidths=BANDWIDTHS, median_heuristic=True)
    inde = MMDIndependenceLoss(pattern="parallel", kernel=kernel, max_rows=512, seed=0)
    print(f"--- MMD weight {weight:g}")
    for step in range(STEPS + 1):
        x = signals(BATCH, gen)
        recon, z, vq_loss = codec(x)
        rec_loss = F.mse_loss(recon, x)
        mmd = inde(z)  # z: [B, K, T, N] per-codebook quantized vectors
        loss = rec_loss + vq_loss + weight * mmd
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0:
            with torch.no_grad():
                recon_eval, z_eval, _ = codec(held_out)
                val = independence_loss(z_eval, pattern="parallel", kernel=kernel, estimator="disjoint",
                                        generator=torch.Generator().manual_seed(0))
                val_rec = F.mse_loss(recon_eval, held_out)
            print(f"step {step:4d}  reconstruction {rec_loss.item():.4f}  train MMD {mmd.item():+.4f}  "
                  f"held-out MMD {val.item():+.4f}")
    return val.item(), val_rec.item()


def main() -> None:
    torch.set_num_threads(1)  # tiny model: one thread avoids threading overheads
    start = time.time()
    held_out = signals(128, torch.Generator().manual_seed(123))
    results = {weight: train(weight, held_out) for weight in (0.0, 10.0)}
    for weight, (mmd, rec) in results.items():
        print(f"weight {weight:4g}: held-out MMD {mmd:+.4f}, held-out reconstruction MSE {rec:.4f}")
    print(f"done in {time.time() - start:.1f} s")


if __name__ == "__main__":
    main()
