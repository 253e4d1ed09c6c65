"""The `inde` config node: validation that fails at solver construction, naming the key, and the pattern.

A typo in a sweep should cost seconds, not a queued 8-GPU job that dies at its first MMD step.
"""
from __future__ import annotations

import math

import omegaconf
import torch

from ..core.kernels import make_kernel
from ..core.options import LossOptions
from ..core.patterns import group_rows, min_frames
from .capture import SOURCES

# The `inde` node's keys that configure the solver rather than the estimate; every other key is a field of
# LossOptions (the node is exactly these plus LossOptions.fields(): tests/test_solver_units.py checks it).
SOLVER_KEYS = ("source", "codebooks_pattern", "macro_batch", "every", "global", "grad_ratio", "grad_ratio_ema",
               "guard", "evaluate")


def inde_weight(cfg: omegaconf.DictConfig) -> float:
    """`losses.inde`, 0 when absent; the checks that need no model (the loss options included)."""
    weight = float(cfg.get("losses", {}).get("inde", 0.0) or 0.0)
    if weight < 0:
        raise ValueError(f"losses.inde={weight}: the independence loss weight must be >= 0")
    inde = cfg.get("inde")
    if inde is None:
        if weight > 0:
            raise ValueError("losses.inde > 0 but the config has no `inde` node: run through "
                             "`dora -P mmd_audiocraft`, whose config provides its defaults")
        return weight
    options = loss_options(cfg)
    if weight > 0:  # the linear kernel's warning
        make_kernel(options.kernel, options.bandwidths, options.bandwidth_mode, warn=True)
    checks = [
        ("inde.source", inde.source in SOURCES, f"one of {SOURCES}"),
        ("inde.macro_batch", int(inde.macro_batch) >= 1, "an int >= 1"),
        ("inde.every", int(inde.every) >= 1, "an int >= 1"),
        ("inde.grad_ratio", inde.grad_ratio is None or float(inde.grad_ratio) > 0, "null or > 0"),
    ]
    for key, ok, expected in checks:
        if not ok:
            raise ValueError(f"{key}={omegaconf.OmegaConf.select(cfg, key)!r}: expected {expected}")
    return weight


def loss_options(cfg: omegaconf.DictConfig) -> LossOptions:
    """The loss options of the `inde` node (defaults without one); ValueError naming `inde.<key>`."""
    return LossOptions.from_config(cfg.get("inde") or {}, prefix="inde.")


def pattern_provider(pattern_cfg: omegaconf.DictConfig, n_q: int):
    """audiocraft's own provider for `n_q` codebooks (delays truncated when quantizer dropout ran fewer)."""
    from audiocraft.models.builders import get_codebooks_pattern_provider

    cfg = omegaconf.OmegaConf.to_container(pattern_cfg, resolve=True)
    delays = (cfg.get("delay") or {}).get("delays")
    if cfg.get("modeling") == "delay" and delays is not None:
        cfg["delay"]["delays"] = list(delays)[:n_q]
    return get_codebooks_pattern_provider(n_q, omegaconf.OmegaConf.create(cfg))


def check_pattern(pattern_cfg: omegaconf.DictConfig, n_q: int) -> None:
    """Fail now if the pattern does not fit the codec or predicts one codebook per step."""
    delays = (pattern_cfg.get("delay") or {}).get("delays")
    if pattern_cfg.get("modeling") == "delay" and delays is not None and len(delays) != n_q:
        raise ValueError(f"inde.codebooks_pattern.delay.delays={list(delays)} has {len(delays)} entries but the "
                         f"codec has n_q={n_q} codebooks")
    try:
        provider = pattern_provider(pattern_cfg, n_q)
        group_rows(torch.zeros(1, n_q, 4 * n_q + 8, 1), provider)
    except (ValueError, KeyError, AssertionError) as exc:
        raise ValueError(f"inde.codebooks_pattern (modeling={pattern_cfg.get('modeling')!r}): {exc}") from None


def check_segment_frames(cfg: omegaconf.DictConfig, provider, n_q: int, hop_length: int, frame_rate: float) -> None:
    """Fail now if a split whose codes the solver groups by the pattern has segments too short for it.

    Grouping never drops a codebook to fit a short input (it raises); this names the key instead of failing
    at the first step: train (with `losses.inde` > 0), valid (its `inde` metric) and evaluate (with
    `inde.evaluate.metrics`). Segments of `d` seconds give ceil(d * sample_rate / hop_length) codec frames.
    """
    need = min_frames(provider, n_q)
    used = ["valid"] + (["train"] if inde_weight(cfg) > 0 else []) + \
        (["evaluate"] if cfg.inde.evaluate.metrics else [])
    for split in used:
        key = f"dataset.{split}.segment_duration"
        duration = omegaconf.OmegaConf.select(cfg, key)
        if duration is None:
            key, duration = "dataset.segment_duration", cfg.dataset.get("segment_duration")
        if duration is None:
            continue  # whole files
        frames = math.ceil(round(float(duration) * int(cfg.sample_rate)) / hop_length)
        if frames < need:
            raise ValueError(
                f"{key}={duration} gives the {split} split {frames} codec frames at {frame_rate:g} Hz, but "
                f"inde.codebooks_pattern (modeling={cfg.inde.codebooks_pattern.modeling}) predicts all its "
                f"codebooks together only from {need} frames: set {key} >= {need / frame_rate:g} s")
