"""What the grids read from your environment: the scale, your data, your cluster's resources; grids unchanged.

Every input is an environment variable (no tracked file is edited); the ones that change results change the XPs'
signatures, the others (SLURM resources) do not:

    MMD_GRID_PROFILE   paper (default: the paper's configs on GPUs) | cpu (tiny configs, one CPU per job)
    MMD_DATA           a folder of audiocraft manifests, one sub-folder per split (train/ valid/ evaluate/
                       generate/, each a data.jsonl written by `python -m audiocraft.data.audio_dataset`)
    MMD_DSET           or: a dset config name (`dset=audio/NAME` of audiocraft's config tree)
    MMD_FINETUNE_FROM  the codec the fine-tune grid starts from (grids/_paper.py)
    MMD_FAD_BIN        Google Research's FAD code, for the paper's evaluations
    MMD_GRID_SLURM     a YAML of Dora SLURM fields per kind of job, e.g. {codec: {gpus: 8, mem_per_gpu: 40,
                       time: 4320}, lm: {gpus: 32}, eval: {gpus: 4}} (not in signatures)
Partitions come from audiocraft's team config (AUDIOCRAFT_TEAM / AUDIOCRAFT_CONFIG), as in audiocraft's grids.

`paper`: the paper's 32 kHz codec and MusicGen-small, 8 GPUs per codec and 32 per LM like audiocraft's grids.
It trains on your data only: without MMD_DATA or MMD_DSET it refuses, saying how to give them. The batch sizes
are the paper's global ones whatever the GPU count (audiocraft divides them by the number of processes; the
check before submission refuses a count that does not divide them).
The LMs' evaluations (grid mmd_musicgen_eval) compute audiocraft's objective metrics: FAD (VGGish), KL (PaSST)
and CLAP score, on 4 GPUs like audiocraft's musicgen_pretrained_32khz_eval grid.
`cpu`: the same experiments (same losses, kernels, patterns, quantizers, LM settings) on the tiny 16 kHz codec
and LM configs, a few updates each, one CPU, a few GB and a 15-minute limit per job: the whole codec -> LM ->
evaluation campaign runs on a workstation's SLURM (scripts/slurm_cluster.sh) in minutes. Its evaluations compute
what needs no download: the LM's cross-entropy on the evaluate split and the chroma cosine similarity. Its data
defaults to the demo's corpus (`make corpus`).
The profile is part of every XP's config, hence of its signature: the two scales never share an XP. Each setting
of these inputs has its own grid folder (`grids/NAME@SETTING` in the Dora dir, `setting()`): Dora cancels the
jobs of XPs that a grid's folder lists and a new run of it no longer defines, so a setting never cancels
another's jobs.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

from audiocraft.environment import AudioCraftEnvironment

from mmd_audiocraft.integration.errors import ConfigError

PROFILE_VAR = "MMD_GRID_PROFILE"
DATA_VAR, DSET_VAR, SLURM_VAR = "MMD_DATA", "MMD_DSET", "MMD_GRID_SLURM"
FINETUNE_VAR = "MMD_FINETUNE_FROM"
SPLITS = ("train", "valid", "evaluate", "generate")
KINDS = ("codec", "lm", "eval")  # the keys of MMD_GRID_SLURM


@dataclasses.dataclass(frozen=True)
class Profile:
    codec: dict        # overrides every codec XP starts from
    lm: tuple          # override dicts every LM XP starts from
    codec_slurm: dict  # Dora SlurmConfig fields (launcher.slurm_) for codec jobs
    lm_slurm: dict     # same for LM jobs
    evaluation: dict   # overrides an LM's evaluation XP adds to the LM's own (grid mmd_musicgen_eval)
    eval_slurm: dict   # Dora SlurmConfig fields for evaluation jobs


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


def data_overrides(rate: int) -> dict:
    """Your data for configs at `rate` Hz: MMD_DATA's manifest folders (datasource.*, mono at `rate`) or
    MMD_DSET's config; {} when neither is set. Raises ConfigError when both are, or MMD_DATA is not absolute."""
    data, dset = os.environ.get(DATA_VAR), os.environ.get(DSET_VAR)
    if data and dset:
        raise ConfigError(f"{DATA_VAR}={data} and {DSET_VAR}={dset}: give your data one way, not both")
    if dset:
        return {"dset": dset}
    if not data:
        return {}
    if not Path(data).is_absolute():
        raise ConfigError(f"{DATA_VAR}={data}: expected an absolute path (jobs run from their own folder)")
    # dset=audio/mmd_unset: every datasource key null, not audiocraft's ??? (Dora cannot sign XPs from those)
    return {"dset": "audio/mmd_unset", "datasource.max_sample_rate": rate, "datasource.max_channels": 1,
            **{f"datasource.{split}": str(Path(data) / split) for split in SPLITS}}


def paper_data() -> dict:
    """The paper profile's data: yours, never a default. Raises ConfigError saying how to give it."""
    given = data_overrides(32000)
    if not given:
        raise ConfigError(f"{PROFILE_VAR}=paper trains on your 32 kHz music: export {DATA_VAR}=/path/to/manifests "
                         f"(folders {'/ '.join(SPLITS)}/ of audiocraft manifests) or {DSET_VAR}=audio/NAME "
                         "(a dset config); docs/DATA.md says how to make them")
    return given


def slurm_settings() -> dict:
    """kind -> Dora SlurmConfig fields from the YAML at $MMD_GRID_SLURM ({} when unset). Raises ConfigError naming
    an unknown kind or field."""
    path = os.environ.get(SLURM_VAR)
    if not path:
        return {}
    from dora.conf import SlurmConfig
    from omegaconf import OmegaConf

    if not Path(path).is_file():
        raise ConfigError(f"{SLURM_VAR}={path}: no such file (a YAML of SLURM fields per job kind: "
                         f"{', '.join(KINDS)})")
    settings = OmegaConf.to_container(OmegaConf.load(path))
    fields = {f.name for f in dataclasses.fields(SlurmConfig)}
    for kind, values in (settings or {}).items():
        if kind not in KINDS:
            raise ConfigError(f"{SLURM_VAR}={path}: unknown job kind {kind!r}, expected {', '.join(KINDS)}")
        unknown = sorted(set(values or {}) - fields)
        if unknown:
            raise ConfigError(f"{SLURM_VAR}={path}: {kind}.{unknown[0]} is not a Dora SLURM field (expected one "
                             f"of {', '.join(sorted(fields))})")
    return settings or {}


def setting() -> str:
    """The name of the current setting: the profile, plus a short hash of the inputs that change signatures
    (data, fine-tune source, FAD code) when any is set. Each setting gets its own Dora grid folder."""
    name = os.environ.get(PROFILE_VAR, "paper")
    inputs = [f"{var}={os.environ[var]}" for var in (DATA_VAR, DSET_VAR, FINETUNE_VAR, FAD_BIN_VAR)
              if os.environ.get(var)]
    return name if not inputs else f"{name}-{hashlib.sha1(chr(10).join(inputs).encode()).hexdigest()[:8]}"


def current() -> Profile:
    """The profile named by $MMD_GRID_PROFILE (`paper` when unset), with your data and SLURM settings. Raises
    ConfigError for another name, a paper profile without data, or a bad input."""
    name = os.environ.get(PROFILE_VAR, "paper")
    slurm = slurm_settings()

    def resources(kind: str, base: dict) -> dict:
        return {**base, "partition": partitions(), **slurm.get(kind, {})}

    if name == "paper":
        data, fad_bin = paper_data(), os.environ.get(FAD_BIN_VAR)
        return Profile(codec={"solver": CODEC_SOLVER, **data},
                       lm=({"solver": LM_SOLVER, **data}, LM_FSDP, LM_PAPER),
                       codec_slurm=resources("codec", {"gpus": 8}), lm_slurm=resources("lm", {"gpus": 32}),
                       evaluation={**EVAL_PAPER, **({"metrics.fad.tf.bin": fad_bin} if fad_bin else {})},
                       eval_slurm=resources("eval", {"gpus": 4}))
    if name == "cpu":
        data = data_overrides(16000)
        return Profile(codec={**TINY_CODEC, **data}, lm=({**TINY_LM, **data}, LM_PAPER),
                       codec_slurm=resources("codec", CPU_SLURM), lm_slurm=resources("lm", CPU_SLURM),
                       evaluation=EVAL_CPU, eval_slurm=resources("eval", CPU_SLURM))
    raise ConfigError(f"{PROFILE_VAR}={name!r}: expected 'paper' (the default: GPUs, the paper's configs) or "
                     "'cpu' (tiny configs, one CPU per job)")
