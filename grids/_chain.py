"""Chaining for Dora grids: an XP's signature and progress, and XPs that wait for another one to finish.

MusicGen loads the *last* checkpoint of `compression_model_checkpoint=//sig/SIG`, so an LM must start only
once its codec has finished; an evaluation (`continue_from=//sig/LM execute_only=evaluate`) reads its LM's best
state, so it must start once the LM has finished. Dora has no dependencies between XPs: a grid schedules the
XPs whose upstream XP is done and lists the others in its table, marked waiting, without scheduling them;
running the grid again later schedules them.
"""
from __future__ import annotations

import dataclasses
import typing as tp
from pathlib import Path

from mmd_audiocraft.integration import xps
from mmd_audiocraft.integration.xps import SIG_PREFIX, list_without_scheduling, read_history

__all__ = ["SIG_PREFIX", "XPProgress", "launch_when_finished", "read_history", "sig_of", "xp_of"]


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
                   xps.checkpoint_of(xp.folder).exists())

    @classmethod
    def of_sig(cls, sig: str) -> XPProgress:
        main = _main()
        try:
            xp = main.get_xp_from_sig(sig)
        except RuntimeError:  # no argv stored for this sig: never run nor initialised here
            folder = xps.xp_folder(sig, main.dora.dir)
            return cls(sig, folder, len(read_history(folder)), None, xps.checkpoint_of(folder).exists())
        return cls.of_xp(xp)


def sig_of(cfg, key: str = "compression_model_checkpoint") -> str | None:
    """The signature `cfg.<key>` points at (an LM's codec, an evaluation's LM with key="continue_from"), if it
    points at an XP."""
    return xps.sig_of(cfg.get(key))


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
