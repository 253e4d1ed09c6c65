"""The LM's decoding pattern as the loss uses it: audiocraft's own pattern provider for `inde.codebooks_pattern`,
and the checks that it fits the codec and the data's segments, when the solver is built.

A typo in a sweep should cost seconds, not a queued 8-GPU job that dies at its first MMD step.
"""
from __future__ import annotations

import difflib
import inspect
import math

import omegaconf

from ..core.patterns import min_frames, step_index
from .errors import ConfigError
from .options import YAML, IndeOptions


def pattern_provider(pattern: dict, n_q: int):
    """audiocraft's provider (`builders.get_codebooks_pattern_provider`) of the `inde.codebooks_pattern` node for
    `n_q` codebooks (delays truncated when quantizer dropout ran fewer). ConfigError for a key of the chosen
    modeling's node that its provider does not take, naming the closest one."""
    from audiocraft.models.builders import get_codebooks_pattern_provider

    modeling = pattern["modeling"]
    node = dict(pattern.get(modeling) or {})
    try:  # the provider's class, whose constructor is the schema of this modeling's node
        bare = get_codebooks_pattern_provider(n_q, omegaconf.OmegaConf.create({"modeling": modeling}))
    except (AssertionError, ValueError):  # its defaults do not fit n_q: the build below reports it
        bare, node_keys = None, []
    else:
        node_keys = list(node)
    takes = [] if bare is None else [n for n in inspect.signature(type(bare).__init__).parameters
                                     if n not in ("self", "n_q")]
    for key in node_keys:
        if key not in takes:
            close = difflib.get_close_matches(key, takes, n=1)
            hint = f"did you mean inde.codebooks_pattern.{modeling}.{close[0]}? " if close else ""
            raise ConfigError(f"inde.codebooks_pattern.{modeling}.{key} is not an option of audiocraft's {modeling} "
                              f"pattern ({type(bare).__name__} takes {takes}): {hint}See {YAML}")
    if modeling == "delay" and node.get("delays") is not None:
        node["delays"] = list(node["delays"])[:n_q]
    return get_codebooks_pattern_provider(n_q, omegaconf.OmegaConf.create({"modeling": modeling, modeling: node}))


def check_pattern(pattern: dict, n_q: int) -> None:
    """Fail now if the pattern does not fit the codec or predicts one codebook per step (ConfigError)."""
    delays = (pattern.get("delay") or {}).get("delays")
    if pattern.get("modeling") == "delay" and delays is not None and len(delays) != n_q:
        raise ConfigError(f"inde.codebooks_pattern.delay.delays={list(delays)} has {len(delays)} entries but the "
                          f"codec has n_q={n_q} codebooks")
    try:
        step_index(pattern_provider(pattern, n_q), 4 * n_q + 8, n_q)  # the grouping's rule, on enough frames
    except (ValueError, KeyError, AssertionError, TypeError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"inde.codebooks_pattern (modeling={pattern.get('modeling')!r}): {exc}") from None


def check_segment_frames(cfg: omegaconf.DictConfig, options: IndeOptions, provider, n_q: int, hop_length: int,
                         frame_rate: float) -> None:
    """Fail now if a split whose codes the solver groups by the pattern has segments too short for it.

    Grouping never drops a codebook to fit a short input (it raises); this names the key instead of failing
    at the first step: train (with `losses.inde` > 0), valid (its `inde` metric) and evaluate (with
    `inde.evaluate.metrics`). Segments of `d` seconds give ceil(d * sample_rate / hop_length) codec frames.
    """
    need = min_frames(provider, n_q)
    used = ["valid"] + (["train"] if options.weight > 0 else []) + (["evaluate"] if options.evaluate.metrics else [])
    for split in used:
        key = f"dataset.{split}.segment_duration"
        duration = omegaconf.OmegaConf.select(cfg, key)
        if duration is None:
            key, duration = "dataset.segment_duration", cfg.dataset.get("segment_duration")
        if duration is None:
            continue  # whole files
        frames = math.ceil(round(float(duration) * int(cfg.sample_rate)) / hop_length)
        if frames < need:
            raise ConfigError(
                f"{key}={duration} gives the {split} split {frames} codec frames at {frame_rate:g} Hz, but "
                f"inde.codebooks_pattern (modeling={options.codebooks_pattern['modeling']}) predicts all its "
                f"codebooks together only from {need} frames: set {key} >= {need / frame_rate:g} s")
