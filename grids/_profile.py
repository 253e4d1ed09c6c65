"""The grids' resource profile: the paper's scale or CPU scale, chosen by $MMD_GRID_PROFILE, grids unchanged.

`paper` (default): the paper's 32 kHz codec and MusicGen-small, 8 GPUs per codec and 32 per LM like audiocraft's
grids, on the partitions of audiocraft's environment (`AUDIOCRAFT_TEAM`, `AUDIOCRAFT_CONFIG`).
The LMs' evaluations (grid mmd_musicgen_eval) compute audiocraft's objective metrics: FAD (VGGish), KL (PaSST)
and CLAP score, on 4 GPUs like audiocraft's musicgen_pretrained_32khz_eval grid.
`cpu`: the same experiments (same losses, kernels, patterns, quantizers, LM settings) on the tiny 16 kHz codec
and LM configs, a few updates each, one CPU, a few GB and a 15-minute limit per job: the whole codec -> LM ->
evaluation campaign runs on a workstation's SLURM (scripts/slurm_cluster.sh) in minutes. Its evaluations compute
what needs no download: the LM's cross-entropy on the evaluate split and the chroma cosine similarity.
The profile is part of every XP's config, hence of its signature: the two scales never share an XP.
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
    evaluation: dict   # overrides an LM's evaluation XP adds to the LM's own (grid mmd_musicgen_eval)
    eval_slurm: dict   # Dora SlurmConfig fields for evaluation jobs


# Replace by your 32 kHz music dataset (the paper: 20k hours of licensed music). Changing it changes every sig.
DSET = "audio/mmd_music_32khz"
CODEC_SOLVER = "compression/encodec_mmd_musicgen_32khz"   # paper codec, MMD weight 1e3 by default
LM_SOLVER = "musicgen/musicgen_base_32khz"                 # MusicGen-small, delay pattern
# MusicGen-small as audiocraft's musicgen_base_32khz grid runs it (FSDP, no autocast), plus what the paper
# states differently: AdamW (audiocraft's own AdamW learning rate) and a 0.2 condition dropout.
LM_FSDP = {"autocast": False, "fsdp.use": True}
LM_PAPER = {"optim.optimizer": "adamw", "optim.lr": 1e-4, "classifier_free_guidance.training_dropout": 0.2}

# The LMs' evaluation, as audiocraft's musicgen_pretrained_32khz_eval grid runs it: objective_eval turns on FAD,
# KL and CLAP (files and packages to download first: docs/GRIDS.md; the grid and the solver refuse to start
# without them, naming each), sampling top-250 with two-step classifier-free guidance (the paper: top-250,
# temperature 1, guidance 3). Where audiocraft evaluates whole MusicCaps clips, our evaluate split holds full
# tracks: one 10 s excerpt per sample (the paper's samples are 10 s), 528 of them (the size of the paper's
# held-out set, in tracks). FAD runs Google Research's code from $MMD_FAD_BIN (part of the evaluations' sigs:
# audiocraft's dora.exclude names metrics.fad.bin, a key that does not exist, not metrics.fad.tf.bin).
FAD_BIN_VAR = "MMD_FAD_BIN"
EVAL_SAMPLES = 528
EVAL_PAPER = {"solver/musicgen/evaluation": "objective_eval", "dataset.evaluate.segment_duration": 10,
              "dataset.evaluate.num_samples": EVAL_SAMPLES, "+dataset.evaluate.batch_size": 128,
              "+metrics.fad.tf.batch_size": 16, "generate.lm.use_sampling": True, "generate.lm.top_k": 250,
              "generate.lm.top_p": 0.0, "transformer_lm.two_step_cfg": True}

# CPU scale: one epoch of 4 updates per codec (train, valid, evaluate with the independence metrics), the
# tiny LM's one epoch of 8 updates. MusicGen refuses codecs that renormalise their input, hence renormalize.
TINY_CODEC = {"solver": "compression/encodec_mmd_tiny", "dset": "audio/mmd_music_16khz",
              "encodec.renormalize": False, "optim.epochs": 1, "optim.updates_per_epoch": 4,
              "dataset.train.num_samples": 64, "dataset.valid.num_samples": 16,
              "dataset.evaluate.num_samples": 8, "dataset.generate.num_samples": 1, "evaluate.every": 1}
TINY_LM = {"solver": "musicgen/musicgen_mmd_tiny", "dset": "audio/mmd_music_16khz"}
# Evaluations at CPU scale: what needs no download (the evaluate split's cross-entropy, chroma cosine similarity),
# on 4 excerpts generated greedily (the tiny LM's generation settings).
EVAL_CPU = {"evaluate.metrics.base": True, "evaluate.metrics.chroma_cosine": True,
            "dataset.evaluate.num_samples": 4}
# Dora: gpus=0 gives one task with cpus_per_gpu CPUs and mem_per_gpu GB; time in minutes.
CPU_SLURM = {"gpus": 0, "cpus_per_gpu": 1, "mem_per_gpu": 3, "time": 15}


def partitions() -> str:
    return AudioCraftEnvironment.get_slurm_partitions(["team", "global"])


def current() -> Profile:
    """The profile named by $MMD_GRID_PROFILE (`paper` when unset). Raises ValueError for another name."""
    name = os.environ.get(PROFILE_VAR, "paper")
    if name == "paper":
        fad_bin = os.environ.get(FAD_BIN_VAR)
        return Profile(codec={"solver": CODEC_SOLVER, "dset": DSET},
                       lm=({"solver": LM_SOLVER, "dset": DSET}, LM_FSDP, LM_PAPER),
                       codec_slurm={"gpus": 8, "partition": partitions()},
                       lm_slurm={"gpus": 32, "partition": partitions()},
                       evaluation={**EVAL_PAPER, **({"metrics.fad.tf.bin": fad_bin} if fad_bin else {})},
                       eval_slurm={"gpus": 4, "partition": partitions()})
    if name == "cpu":
        return Profile(codec=TINY_CODEC, lm=(TINY_LM, LM_PAPER),
                       codec_slurm={**CPU_SLURM, "partition": partitions()},
                       lm_slurm={**CPU_SLURM, "partition": partitions()},
                       evaluation=EVAL_CPU, eval_slurm={**CPU_SLURM, "partition": partitions()})
    raise ValueError(f"{PROFILE_VAR}={name!r}: expected 'paper' (the default: GPUs, the paper's configs) or "
                     "'cpu' (tiny configs, one CPU per job)")
