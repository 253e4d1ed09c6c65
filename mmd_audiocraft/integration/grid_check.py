"""Everything a grid's jobs need, checked before anything queues (`dora grid` through the seam, and
`mmd-audiocraft check GRID`).

A job that fails on a compute node fails after its wait in the queue: its manifests, their sample rate, the
LM's text conditioning, the evaluation's downloads, the partitions, the Dora dir and the batch split over the
GPUs are all known here. Each missing item is one line naming what, where it was looked for and the fix.
"""
from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

from . import xps
from .conditioner_requirements import manifest_entries, missing_descriptions, missing_t5
from .errors import ConfigError
from .metric_requirements import missing_requirements
from .preflight import CODEC_USERS, SPLITS, check_batch_sizes, names_no_dataset
from .slurm import ask_sinfo


def _manifest_problems(cfg) -> list[str]:
    """Each split's manifest exists and reads, and its audio is not below the config's rate and channels."""
    out = []
    sources = cfg.get("datasource") or {}
    if names_no_dataset(cfg):
        return ["datasource: no dataset given (the paper-scale configs name none): export MMD_DATA=/path/to/"
                "manifests or MMD_DSET=audio/NAME (docs/DATA.md)"]
    rate, channels = int(cfg.sample_rate), int(cfg.channels)
    for split in SPLITS:
        source = sources.get(split)
        if not isinstance(source, str):
            continue
        try:
            entries = manifest_entries(source)
        except (OSError, ValueError) as exc:
            out.append(f"datasource.{split}={source}: no readable manifest ({type(exc).__name__}: {exc}); write it "
                       f"with `python -m audiocraft.data.audio_dataset AUDIO_DIR {Path(source) / 'data.jsonl'}` "
                       "(docs/DATA.md)")
            continue
        low = [e for e in entries if int(e["sample_rate"]) < rate]
        if low:
            out.append(f"datasource.{split}={source}: {len(low)} of {len(entries)} files are below the codec's "
                       f"sample_rate={rate} (e.g. {low[0]['path']} at {low[0]['sample_rate']} Hz): audiocraft would "
                       f"upsample them; give {rate} Hz audio or more")
        fewer = [e for e in entries if e.get("channels") is not None and int(e["channels"]) < channels]
        if fewer:
            out.append(f"datasource.{split}={source}: {len(fewer)} of {len(entries)} files have fewer channels "
                       f"than channels={channels} (e.g. {fewer[0]['path']})")
    return out


def xp_problems(cfg, gpus: int) -> list[str]:
    """What one XP's config needs on `gpus` GPUs per job (0: one CPU process), one line each."""
    out = _manifest_problems(cfg)
    try:
        check_batch_sizes(cfg, max(1, gpus))
    except ConfigError as exc:
        out.append(f"{exc} (the job asks for {gpus} GPUs: MMD_GRID_SLURM)")
    if cfg.get("solver") in CODEC_USERS:
        out += [str(m) for m in missing_t5(cfg)]
        try:
            out += [str(m) for m in missing_descriptions(cfg)]
        except (OSError, ValueError):  # no readable manifest: said above
            pass
        out += [str(m) for m in missing_requirements(cfg)]
    return out


def _dora_dir_problem(main) -> list[str]:
    folder = Path(main.dora.dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return [f"Dora dir {folder}: cannot be created ({exc.strerror}); set AUDIOCRAFT_DORA_DIR or the team "
                "config's dora_dir to a folder the jobs can write"]
    if not os.access(folder, os.W_OK):
        return [f"Dora dir {folder}: not writable; set AUDIOCRAFT_DORA_DIR or the team config's dora_dir"]
    return []


def _partition_problems(wanted: set[str]) -> list[str]:
    known, blocker = ask_sinfo()
    if blocker is not None:
        return [f"SLURM cannot take jobs here ({blocker}): run the grid where sbatch reaches the cluster"]
    from audiocraft.environment import AudioCraftEnvironment

    team = AudioCraftEnvironment.get_team()
    config = os.environ.get("AUDIOCRAFT_CONFIG", f"audiocraft's config/teams/{team}.yaml")
    return [f"partition {name!r} is not one of this cluster's ({', '.join(known)}): set partitions.team and "
            f"partitions.global of team {team!r} in {config} (AUDIOCRAFT_CONFIG, AUDIOCRAFT_TEAM)"
            for name in sorted(wanted) if name not in known]


def grid_problems(main, explorer) -> list[str]:
    """Every missing item of the grid's XPs (deduplicated, in order), [] when it can be submitted. Composes the
    XPs as `dora grid --dry_run` does; reads files, caches and `sinfo`; submits and downloads nothing."""
    with contextlib.redirect_stdout(io.StringIO()):  # the grid prints what waits when it runs, not here
        herd = xps.list_grid(main, explorer)
    problems = _dora_dir_problem(main)
    wanted = set()
    for sig, sheep in herd.sheeps.items():
        slurm = herd.slurm_configs.get(sig)
        gpus = int(getattr(slurm, "gpus", 0) or 0)
        wanted.update(p for p in str(getattr(slurm, "partition", "") or "").split(",") if p)
        problems += xp_problems(sheep.xp.cfg, gpus)
    problems += _partition_problems(wanted)
    return list(dict.fromkeys(problems))


def format_problems(grid: str, problems: list[str]) -> str:
    return (f"grid {grid}: {len(problems)} thing(s) missing, nothing submitted:\n"
            + "\n".join(f"  ({i}) {p}" for i, p in enumerate(problems, 1)))
