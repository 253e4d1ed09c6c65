"""The grids' resource profile: the paper's scale or CPU scale, chosen by $MMD_GRID_PROFILE, grids unchanged.

`paper` (default): the paper's 32 kHz codec and MusicGen-small, 8 GPUs per codec and 32 per LM like audiocraft's
grids, on the partitions of audiocraft's environment (`AUDIOCRAFT_TEAM`, `AUDIOCRAFT_CONFIG`).
`cpu`: the same experiments (same losses, kernels, patterns, quantizers, LM settings) on the tiny 16 kHz codec
and LM configs, a few updates each, one CPU, a few GB and a 15-minute limit per job: the whole codec -> LM
campaign runs on a workstation's SLURM (scripts/slurm_cluster.sh) in minutes. The profile is part of every
XP's config, hence of its signature: the two scales never share an XP.
"""
from __future__ import annotations

import dataclasses
import os

from audiocraft.environment import AudioCraftEnvironment

PROFILE_VAR = "MMD_GRID_PROFILE"


@dataclasses.dataclass(frozen=True)
class Profile:
    codec: dict        # overrides every codec XP starts from
    lm: tuple          # override dicts every LM XP starts from
    codec_slurm: dict  # Dora SlurmConfig fields (launcher.slurm_) for codec jobs
    lm_slurm: dict     # same for LM jobs


# Replace by your 32 kHz music dataset (the paper: 20k hours of licensed music). Changing it changes every sig.
DSET = "audio/mmd_music_32khz"
CODEC_SOLVER = "compression/encodec_mmd_musicgen_32khz"   # paper codec, MMD weight 1e3 by default
LM_SOLVER = "musicgen/musicgen_base_32khz"                 # MusicGen-small, delay pattern
# MusicGen-small as audiocraft's musicgen_base_32khz grid runs it (FSDP, no autocast), plus what the paper
# states differently: AdamW (audiocraft's own AdamW learning rate) and a 0.2 condition dropout.
LM_FSDP = {"autocast": False, "fsdp.use": True}
LM_PAPER = {"optim.optimizer": "adamw", "optim.lr": 1e-4, "classifier_free_guidance.training_dropout": 0.2}

# CPU scale: one epoch of 4 updates per codec (train, valid, evaluate with the independence metrics), the
# tiny LM's one epoch of 8 updates. MusicGen refuses codecs that renormalise their input, hence renormalize.
TINY_CODEC = {"solver": "compression/encodec_mmd_tiny", "dset": "audio/mmd_music_16khz",
              "encodec.renormalize": False, "optim.epochs": 1, "optim.updates_per_epoch": 4,
              "dataset.train.num_samples": 64, "dataset.valid.num_samples": 16,
              "dataset.evaluate.num_samples": 8, "dataset.generate.num_samples": 1, "evaluate.every": 1}
TINY_LM = {"solver": "musicgen/musicgen_mmd_tiny", "dset": "audio/mmd_music_16khz"}
# Dora: gpus=0 gives one task with cpus_per_gpu CPUs and mem_per_gpu GB; time in minutes.
CPU_SLURM = {"gpus": 0, "cpus_per_gpu": 1, "mem_per_gpu": 3, "time": 15}


def partitions() -> str:
    return AudioCraftEnvironment.get_slurm_partitions(["team", "global"])


def current() -> Profile:
    """The profile named by $MMD_GRID_PROFILE (`paper` when unset). Raises ValueError for another name."""
    name = os.environ.get(PROFILE_VAR, "paper")
    if name == "paper":
        return Profile(codec={"solver": CODEC_SOLVER, "dset": DSET},
                       lm=({"solver": LM_SOLVER, "dset": DSET}, LM_FSDP, LM_PAPER),
                       codec_slurm={"gpus": 8, "partition": partitions()},
                       lm_slurm={"gpus": 32, "partition": partitions()})
    if name == "cpu":
        return Profile(codec=TINY_CODEC, lm=(TINY_LM, LM_PAPER),
                       codec_slurm={**CPU_SLURM, "partition": partitions()},
                       lm_slurm={**CPU_SLURM, "partition": partitions()})
    raise ValueError(f"{PROFILE_VAR}={name!r}: expected 'paper' (the default: GPUs, the paper's configs) or "
                     "'cpu' (tiny configs, one CPU per job)")
