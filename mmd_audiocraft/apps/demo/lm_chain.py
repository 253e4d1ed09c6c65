"""The demo's codec -> tiny MusicGen chain: one LM per decoding pattern on a codec's codes (through
`compression_model_checkpoint=//sig/SIG`, the way cluster users chain them), their valid cross-entropy, and
what sampling 10 s of audio costs each pattern (autoregressive steps, measured seconds)."""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from ...integration import xps

LM_PATTERNS = ("delay", "unroll")  # MusicGen's parallel-in-steps pattern and the exact flattened one


def lm_args(codec_sig: str, pattern: str, budget: dict, seed: int) -> list[str]:
    """`dora run` overrides of the tiny LM (solver=musicgen/musicgen_mmd_tiny) for one codec and pattern."""
    return ["solver=musicgen/musicgen_mmd_tiny", "dset=audio/mmd_music_16khz", f"seed={seed}",
            f"compression_model_checkpoint=//sig/{codec_sig}", f"codebooks_pattern.modeling={pattern}",
            f"optim.epochs={budget['epochs']}", f"optim.updates_per_epoch={budget['updates']}",
            f"dataset.train.num_samples={4 * budget['updates']}", "dataset.valid.num_samples=64"]


def valid_cross_entropy(xp_dir: Path) -> dict:
    """The last epoch's valid cross-entropy of an LM XP: nats per code (audiocraft's `ce`) and bits."""
    history = xps.read_history(xp_dir)
    ce = float(history[-1]["valid"]["ce"])
    return {"ce_nats": ce, "ce_bits": ce / math.log(2), "epochs": len(history)}


def autoregressive_steps(pattern: str, frames: int, n_q: int) -> int:
    """Steps an LM takes to emit `frames` frames of `n_q` codes (audiocraft's pattern providers' layouts):
    delay T + n_q - 1 (codebook k delayed by k), unroll n_q * T (one code per step)."""
    from audiocraft.modules.codebooks_patterns import DelayedPatternProvider, UnrolledPatternProvider

    provider = {"delay": DelayedPatternProvider, "unroll": UnrolledPatternProvider}[pattern](n_q=n_q)
    return provider.get_pattern(frames).num_sequence_steps


def sampling_cost(xp_dir: Path, seconds: float = 10.0, timed_seconds: float = 0.5, repeats: int = 3) -> dict:
    """What generating `seconds` of codes costs the LM XP's trained model (greedy, no conditioning text): the
    pattern's autoregressive steps, and seconds measured on `timed_seconds` of audio, scaled by the ratio of
    steps (a tiny LM's step costs about the same at any position: its time is per-step overhead).

    Timed on one thread, the fastest of `repeats` runs after a warm-up one (as `timeit` advises): a single timing
    right after the demo's parallel training, on a shared 2-core machine, once read 45x the quiet value."""
    from audiocraft.models.builders import get_lm_model
    from audiocraft.modules.conditioners import ConditioningAttributes
    from omegaconf import OmegaConf

    from ...integration.seams import trusting_torch_load

    with trusting_torch_load():
        state = torch.load(xps.checkpoint_of(xp_dir), map_location="cpu")
    cfg = OmegaConf.load(xp_dir / ".hydra" / "config.yaml")
    lm = get_lm_model(cfg)
    lm.load_state_dict(state["model"])
    lm.eval()
    n_q = int(cfg.transformer_lm.n_q)
    pattern = str(cfg.codebooks_pattern.modeling)
    frames, timed_frames = int(round(seconds * 50)), int(round(timed_seconds * 50))  # the tiny codec's 50 Hz
    threads, walls = torch.get_num_threads(), []
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            for _ in range(repeats + 1):  # the first is the warm-up
                start = time.perf_counter()
                codes = lm.generate(conditions=[ConditioningAttributes(text={"description": None})], num_samples=1,
                                    max_gen_len=timed_frames, use_sampling=False)
                walls.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    wall = min(walls[1:])
    if codes.shape[-1] != timed_frames:
        raise RuntimeError(f"{xp_dir}: generated {codes.shape[-1]} frames, asked {timed_frames}")
    steps, timed_steps = (autoregressive_steps(pattern, f, n_q) for f in (frames, timed_frames))
    return {"pattern": pattern, "audio_seconds": seconds, "steps": steps, "steps_per_audio_second": steps / seconds,
            "seconds": round(wall * steps / timed_steps, 2), "timed_audio_seconds": timed_seconds,
            "timed_steps": timed_steps, "timed_seconds": round(wall, 2)}
