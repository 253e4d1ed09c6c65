"""Whether this machine can hand jobs to SLURM, and its partitions, asked before a Dora grid operation needs them.

Dora submits through submitit's `SlurmExecutor`, which runs `sbatch`; a grid operation that deletes XP folders
(`--clear`) must know before it deletes that the replacement jobs can be submitted, and the check before a grid
submits (grid_check.py) that the partitions it names exist. One `sinfo` call answers both.
"""
from __future__ import annotations

import shutil
import subprocess


def ask_sinfo(timeout: float = 30.0) -> tuple[list[str], str | None]:
    """(the partitions `sinfo` lists, their default's `*` dropped; why SLURM cannot take jobs from here, as one
    short phrase, or None when it can: no `sbatch`/`sinfo` on PATH, or `sinfo` cannot reach the controller)."""
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return [], "no sbatch/sinfo on PATH"
    try:
        proc = subprocess.run(["sinfo", "--noheader", "--format=%P"], capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return [], f"sinfo did not answer within {timeout:.0f} s"
    if proc.returncode != 0:
        first = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[0]
        return [], first if first.startswith("sinfo") else f"sinfo: {first}"
    return [line.strip().rstrip("*") for line in proc.stdout.splitlines() if line.strip()], None
