"""Whether this machine can hand jobs to SLURM, asked before a Dora grid operation that needs it.

Dora submits through submitit's `SlurmExecutor`, which runs `sbatch`; a grid operation that deletes XP folders
(`--clear`) must know before it deletes that the replacement jobs can be submitted.
"""
from __future__ import annotations

import shutil
import subprocess


def submission_blocker(timeout: float = 30.0) -> str | None:
    """Why SLURM cannot take jobs from here (no `sbatch` on PATH, or `sinfo` cannot reach the controller), as
    one short phrase; None when it can."""
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return "no sbatch/sinfo on PATH"
    try:
        proc = subprocess.run(["sinfo", "--noheader", "--format=%P"], capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"sinfo did not answer within {timeout:.0f} s"
    if proc.returncode != 0:
        first = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[0]
        return first if first.startswith("sinfo") else f"sinfo: {first}"
    return None


def partitions(timeout: float = 30.0) -> list[str]:
    """The partitions `sinfo` lists (its default's `*` mark dropped); [] when it cannot be asked."""
    try:
        proc = subprocess.run(["sinfo", "--noheader", "--format=%P"], capture_output=True, text=True,
                              timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip().rstrip("*") for line in proc.stdout.splitlines() if line.strip()]
