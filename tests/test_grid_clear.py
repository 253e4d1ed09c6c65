"""`dora grid NAME --clear` never deletes trained XPs it cannot replace (issue 30, item 2).

Dora deletes every XP folder of the grid right after "Confirm [yN]" and only then submits; with SLURM
unreachable (here: `sbatch`/`sinfo` that fail as they do without a controller) the clear is refused before
anything is deleted, naming `dora run --clear -f SIG`, which is then followed and retrains one XP locally. That
the clear goes through on a reachable cluster is checked on the one-node cluster (tests/test_slurm_cluster.py).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from .conftest import dora_env, history, run_dora
from .documentation import documented

pytestmark = [pytest.mark.slow, pytest.mark.default_stack]
GRID = "mmd_codec_decoding"  # 3 codec XPs at CPU scale


def unreachable_slurm(folder) -> dict:
    """PATH with an `sbatch` and an `sinfo` that fail like SLURM's clients without a controller."""
    folder.mkdir()
    for tool in ("sbatch", "sinfo"):
        script = folder / tool
        script.write_text(f"#!/bin/sh\necho '{tool}: error: Unable to contact slurm controller (connect failure)' "
                          ">&2\nexit 1\n")
        script.chmod(0o755)
    return {"PATH": f"{folder}:{os.environ['PATH']}"}


def test_clear_is_refused_before_deleting_when_slurm_cannot_take_the_jobs(tiny_corpus, tmp_path):
    dora_dir = tmp_path / "dora"
    env = {"MMD_GRID_PROFILE": "cpu", **unreachable_slurm(tmp_path / "bin")}
    run_dora(["grid", GRID, "--dry_run", "--init"], dora_dir, tiny_corpus, env_extra=env)
    sigs = sorted(p.name for p in (dora_dir / "xps").iterdir())
    assert len(sigs) == 3
    for sig in sigs:  # stand-ins for trained runs
        (dora_dir / "xps" / sig / "checkpoint.th").write_bytes(b"trained weights")

    proc = subprocess.run([sys.executable, "-m", "dora", "-P", "mmd_audiocraft", "grid", GRID, "--clear"],
                          input="y\n", env=dora_env(dora_dir, tiny_corpus, **env), cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith(f"dora grid {GRID} --clear refused, nothing was deleted: --clear deletes every XP "
                           "folder of the grid before it submits, and SLURM cannot take jobs here (sinfo: "
                           "error: Unable to contact slurm controller (connect failure)). To restart one XP from "
                           "scratch on this machine: dora -P mmd_audiocraft run --clear -f SIG")
    assert sorted(re.search(r"XPs: ([0-9a-f ]+)\)$", line).group(1).split()) == sigs
    assert "Confirm" not in proc.stdout
    for sig in sigs:
        assert (dora_dir / "xps" / sig / "checkpoint.th").read_bytes() == b"trained weights"

    # the advice, as typed: one XP from scratch, here
    advice = re.search(r"(dora -P mmd_audiocraft run --clear -f) SIG", line).group(1).split()
    assert documented("docs/RUNS.md", "--clear").words == [*advice, "SIG"]
    run_dora([*advice[3:], sigs[0]], dora_dir, tiny_corpus, env_extra=env)
    assert (dora_dir / "xps" / sigs[0] / "checkpoint.th").read_bytes() != b"trained weights"
    assert len(history(dora_dir / "xps" / sigs[0])) == 1
    assert (dora_dir / "xps" / sigs[1] / "checkpoint.th").read_bytes() == b"trained weights"
