"""Chaining for Dora grids: an XP's signature and progress, and XPs that wait for another one to finish.

MusicGen loads the *last* checkpoint of `compression_model_checkpoint=//sig/SIG`, so an LM must start only
once its codec has finished; an evaluation (`continue_from=//sig/LM execute_only=evaluate`) reads its LM's best
state, so it must start once the LM has finished. Dora has no dependencies between XPs: a grid schedules the
XPs whose upstream XP is done and lists the others in its table, marked waiting, without scheduling them;
running the grid again later schedules them.
"""
from __future__ import annotations

import dataclasses
import json
import typing as tp
from pathlib import Path

SIG_PREFIX = "//sig/"


def _main():
    from mmd_audiocraft.train import main

    return main


def xp_of(overrides: tp.Any):
    """The Dora XP that a grid launching `overrides` schedules (same argv, hence same signature)."""
    main = _main()
    return main.get_xp(main.value_to_argv(overrides))


@dataclasses.dataclass
class XPProgress:
    """How far an XP (a codec, an LM) got, read from its folder (works for SLURM jobs and local `dora run`
    alike)."""
    sig: str
    folder: Path
    epochs_done: int
    epochs: int | None       # None: the XP is unknown to this Dora dir (never launched nor --init'ed)
    has_checkpoint: bool

    @property
    def finished(self) -> bool:
        return self.has_checkpoint and self.epochs is not None and self.epochs_done >= self.epochs

    @property
    def status(self) -> str:
        if self.finished:
            return "ready"
        if self.epochs is None:
            return "waiting (not started)"
        return f"waiting {self.epochs_done}/{self.epochs}"

    @classmethod
    def of_xp(cls, xp) -> XPProgress:
        return cls(xp.sig, xp.folder, len(read_history(xp.folder)), int(xp.cfg.optim.epochs),
                   (xp.folder / "checkpoint.th").exists())

    @classmethod
    def of_sig(cls, sig: str) -> XPProgress:
        main = _main()
        try:
            xp = main.get_xp_from_sig(sig)
        except RuntimeError:  # no argv stored for this sig: never run nor initialised here
            folder = main.dora.dir / main.dora.xps / sig
            return cls(sig, folder, len(read_history(folder)), None, (folder / "checkpoint.th").exists())
        return cls.of_xp(xp)


def read_history(folder: Path) -> list[dict]:
    """Per-epoch metrics flashy wrote for an XP ([] when it has not finished an epoch)."""
    path = folder / "history.json"
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return []


def sig_of(cfg, key: str = "compression_model_checkpoint") -> str | None:
    """The signature `cfg.<key>` points at (an LM's codec, an evaluation's LM with key="continue_from"), if it
    points at an XP."""
    value = str(cfg.get(key) or "")
    return value[len(SIG_PREFIX):] if value.startswith(SIG_PREFIX) else None


def list_without_scheduling(launcher, *args):
    """Put an XP in the grid (its table, `--init`) without ever scheduling it; returns its Sheep.

    Uses Dora's Launcher internals (dora-search 0.1.12-0.1.13): the XP joins the herd but no job array, and
    `dora grid` only submits the XPs of job arrays.
    """
    sub = launcher.bind(*args)
    try:
        herd, shepherd, argv, slurm = launcher._herd, launcher._shepherd, sub._argv, sub._slurm
    except AttributeError as exc:
        raise RuntimeError(f"this Dora version's Launcher changed ({exc}): waiting LMs cannot be listed; "
                           "use dora-search 0.1.12 or 0.1.13") from None
    herd.complete()  # keep the table in the order the grid lists its XPs
    sheep = shepherd.get_sheep_from_argv(argv)
    if sheep.xp.sig not in herd.sheeps:
        herd.sheeps[sheep.xp.sig] = sheep
        herd.slurm_configs[sheep.xp.sig] = slurm
    return sheep


def launch_when_finished(launcher, jobs: dict[str, tuple[tp.Any, list]], kind: str, upstream: str) -> list[str]:
    """For each name -> (upstream XP, args): schedule `launcher(*args)` if the upstream XP has finished, else list
    it as waiting (printing why). `kind` and `upstream` name both in that message ("LM", "codec"). Returns the
    names of the waiting XPs."""
    waiting = []
    for name, (before, args) in jobs.items():
        progress = XPProgress.of_xp(before)
        if progress.finished:
            launcher(*args)
            continue
        sheep = list_without_scheduling(launcher, *args)
        waiting.append(name)
        print(f"Grid: {kind} {name} ({sheep.xp.sig}) waits for {upstream} {progress.sig}: {progress.status}; "
              f"not scheduled, run this grid again once the {upstream} has finished.")
    return waiting
