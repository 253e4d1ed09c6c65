"""The paper's experiments as named override sets, imported by every grid.

The LM grids find their codec XPs by signature, computed from these same definitions: a codec is defined
once here, so the codec grids and the LM grids can never disagree on which XP is meant. What every XP starts
from (solver, dataset, scale) and its SLURM resources come from the profile ($MMD_GRID_PROFILE, _profile.py).
"""
from __future__ import annotations

import os

from ._chain import SIG_PREFIX, launch_when_finished, xp_of
from ._profile import CODEC_SOLVER, current

NO_MMD = {"losses.inde": 0.0}
MMD = {"losses.inde": 1000.0}  # the config's default, stated for readability (same signature)
PVQ = {"model": "encodec/encodec_pvq_nq4"}
PVQ_DROPOUT = {**PVQ, "pvq.hierarchical_dropout": True}

# name -> overrides on top of the profile's codec base
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
# The fine-tune recipe (examples/finetune_existing_codec.md): the paper's codec config with the loss setting and
# the fine-tune budget derived from scripts/finetune_study.py (its best trade-off: finetune_study.json).
# FINETUNE_MMD is the setting that config holds, stated for readability (same signature); at CPU scale it is
# applied to the tiny codec, where it was measured.
FINETUNE_SOLVER = "compression/encodec_mmd_finetune_32khz"
FINETUNE_MMD = {"losses.inde": 1000.0, "inde.grad_ratio": 1.0}

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
    """The overrides of codec `name`, exactly as the codec grids launch it (in the current profile)."""
    if name not in CODECS:
        raise ValueError(f"codec {name!r}: expected one of {sorted(CODECS)}")
    return [current().codec, CODECS[name]]


def lm_overrides(codec: str, lm: dict) -> list[dict]:
    """The overrides of the LM `lm` on codec `codec`, exactly as the LM grids launch it (in the current profile):
    the profile's LM base, `compression_model_checkpoint=//sig/<the codec's sig>`, then the LM's own."""
    return _on_codec(xp_of(codec_overrides(codec)), lm)


def _on_codec(codec_xp, lm: dict) -> list[dict]:
    return [*current().lm, {"compression_model_checkpoint": SIG_PREFIX + codec_xp.sig}, lm]


def lm_jobs(lms: dict[str, tuple[str, dict]]) -> dict[str, tuple]:
    """name -> (codec XP, `lm_overrides`) of the LMs `lms` (name -> (codec name, LM overrides)), each codec XP
    composed once."""
    codecs = {codec: xp_of(codec_overrides(codec)) for codec, _ in lms.values()}
    return {name: (codecs[codec], _on_codec(codecs[codec], lm)) for name, (codec, lm) in lms.items()}


def codec_launcher(launcher):
    """The codec grids' launcher: the profile's resources (paper: 8 GPUs like audiocraft's encodec grids) and
    codec base bound."""
    profile = current()
    launcher.slurm_(**profile.codec_slurm)
    return launcher.bind_(profile.codec)


def finetune_launcher(launcher):
    """The fine-tune grid's launcher: the codec grids' resources and base, with the fine-tune recipe's config in
    place of the paper's from-scratch one (at the paper's scale), continuing from FINETUNE_FROM."""
    profile = current()
    launcher.slurm_(**profile.codec_slurm)
    base = dict(profile.codec)
    if base.get("solver") == CODEC_SOLVER:
        base["solver"] = FINETUNE_SOLVER
    return launcher.bind_({**base, "continue_from": FINETUNE_FROM})


def launch_codecs(launcher, names) -> None:
    """The named codecs of CODECS in one job array, on the codec grids' launcher."""
    codec_launcher(launcher)
    with launcher.job_array():
        for name in names:
            launcher(CODECS[name])


def launch_lms(launcher, lms: dict[str, tuple[str, dict]]) -> list[str]:
    """The LMs `lms` (name -> (codec name, LM overrides), as in DECODING_LMS) on the profile's LM resources (paper:
    32 GPUs like audiocraft's MusicGen-small), each scheduled once its codec XP has finished and listed as
    waiting before (grids/_chain.py). Returns the names of the waiting LMs."""
    launcher.slurm_(**current().lm_slurm)
    return launch_when_finished(launcher, lm_jobs(lms), "LM", "codec")
