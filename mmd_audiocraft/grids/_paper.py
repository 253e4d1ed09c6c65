"""The paper's experiments as named override sets, imported by every grid.

The LM grids find their codec XPs by signature, computed from these same definitions: a codec is defined
once here, so the codec grids and the LM grids can never disagree on which XP is meant.
"""
from __future__ import annotations

import os

from audiocraft.environment import AudioCraftEnvironment

# Replace by your 32 kHz music dataset (the paper: 20k hours of licensed music). Changing it changes every sig.
DSET = "audio/mmd_music_32khz"
CODEC_SOLVER = "compression/encodec_mmd_musicgen_32khz"   # paper codec, MMD weight 1e3 by default
LM_SOLVER = "musicgen/musicgen_base_32khz"                 # MusicGen-small, delay pattern
CODEC_GPUS, LM_GPUS = 8, 32

CODEC_BASE = {"solver": CODEC_SOLVER, "dset": DSET}
NO_MMD = {"losses.inde": 0.0}
MMD = {"losses.inde": 1000.0}  # the config's default, stated for readability (same signature)
PVQ = {"model": "encodec/encodec_pvq_nq4"}
PVQ_DROPOUT = {**PVQ, "pvq.hierarchical_dropout": True}

# name -> overrides on top of CODEC_BASE
CODECS: dict[str, dict] = {
    "baseline": NO_MMD,                                                       # RVQ, no MMD
    "mmd_delay": MMD,                                                         # RVQ + MMD on delayed codes
    "mmd_parallel": {**MMD, "inde.codebooks_pattern.modeling": "parallel"},  # RVQ + MMD, frame-aligned codes
    "pvq": {**PVQ, **NO_MMD},
    "pvq_mmd": {**PVQ, **MMD},
    "pvq_dropout": {**PVQ_DROPOUT, **NO_MMD},
    "pvq_dropout_mmd": {**PVQ_DROPOUT, **MMD},
}

# Fine-tuning source: a pretrained codec, or //sig/SIG of one of your codec XPs (changes the fine-tune sigs).
FINETUNE_FROM = os.environ.get("MMD_FINETUNE_FROM", "//pretrained/facebook/encodec_32khz")

# MusicGen-small as audiocraft's musicgen_base_32khz grid runs it (FSDP, no autocast), plus what the paper
# states differently: AdamW (audiocraft's own AdamW learning rate) and a 0.2 condition dropout.
LM_BASE = {"solver": LM_SOLVER, "dset": DSET}
LM_FSDP = {"autocast": False, "fsdp.use": True}
LM_PAPER = {"optim.optimizer": "adamw", "optim.lr": 1e-4, "classifier_free_guidance.training_dropout": 0.2}
FLATTEN = {"codebooks_pattern.modeling": "unroll"}  # flattening [0, 1, 2, 3], one code per step

# Table 2: LM name -> (codec name, LM overrides)
DECODING_LMS: dict[str, tuple[str, dict]] = {
    "delay": ("baseline", {}),
    "delay_mmd_parallel": ("mmd_parallel", {}),
    "delay_mmd": ("mmd_delay", {}),
    "flatten": ("baseline", FLATTEN),
}
# Table 5 (appendix D): the delay LM on each quantizer's codec
QUANTIZER_LMS: dict[str, tuple[str, dict]] = {
    "rvq": ("baseline", {}),
    "pvq": ("pvq", {}),
    "pvq_dropout": ("pvq_dropout", {}),
}


def codec_overrides(name: str) -> list[dict]:
    """The overrides of codec `name`, exactly as the codec grids launch it."""
    if name not in CODECS:
        raise ValueError(f"codec {name!r}: expected one of {sorted(CODECS)}")
    return [CODEC_BASE, CODECS[name]]


def partitions() -> str:
    return AudioCraftEnvironment.get_slurm_partitions(["team", "global"])


def codec_launcher(launcher):
    """The codec grids' launcher: 8 GPUs like audiocraft's encodec grids, the paper's codec config bound."""
    launcher.slurm_(gpus=CODEC_GPUS, partition=partitions())
    return launcher.bind_(CODEC_BASE)


def launch_codecs(launcher, names) -> None:
    """The named codecs of CODECS in one job array, on the codec grids' launcher."""
    codec_launcher(launcher)
    with launcher.job_array():
        for name in names:
            launcher(CODECS[name])


def lm_launcher(launcher):
    """The LM grids' launcher: 32 GPUs like audiocraft's MusicGen-small, the LM config bound."""
    launcher.slurm_(gpus=LM_GPUS, partition=partitions())
    return launcher.bind_(LM_BASE, LM_FSDP, LM_PAPER)
