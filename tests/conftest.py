"""Shared fixtures: no network, a tiny real-music corpus, and real `dora -P mmd_audiocraft run` subprocesses."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MUSIC_FIXTURE = ROOT / "tests" / "assets" / "music"
SPLITS = ("train", "valid", "evaluate", "generate")
# One short epoch of the tiny codec: enough to exercise every stage in ~15-30 s on 2 cores.
TINY = ["solver=compression/encodec_mmd_tiny", "dset=audio/mmd_music_16khz", "optim.epochs=1",
        "optim.updates_per_epoch=4", "dataset.train.num_samples=64", "dataset.valid.num_samples=16",
        "dataset.evaluate.num_samples=8", "dataset.generate.num_samples=1", "evaluate.every=1"]

os.environ["HF_HUB_OFFLINE"] = "1"  # tests never download


@pytest.fixture
def one_thread():
    """Many small torch calls: one thread avoids OpenMP hand-offs that dominate on a busy 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """A corpus root in the layout of config/dset/audio/mmd_music_16khz.yaml, from the committed fixture."""
    root = tmp_path_factory.mktemp("corpus")
    manifest = root / "all.jsonl"
    subprocess.run([sys.executable, "-m", "audiocraft.data.audio_dataset", str(MUSIC_FIXTURE), str(manifest),
                    "--resolve"], check=True, capture_output=True)
    for split in SPLITS:
        (root / "music_16khz" / split).mkdir(parents=True)
        shutil.copy(manifest, root / "music_16khz" / split / "data.jsonl")
    return root


def dora_env(dora_dir: Path, corpus: Path | None = None, **extra: str) -> dict:
    env = dict(os.environ, AUDIOCRAFT_DORA_DIR=str(dora_dir), HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    env.pop("USER", None)  # our main must cope without it
    if corpus is not None:
        env["MMD_AUDIOCRAFT_CORPUS"] = str(corpus)
    env.update(extra)
    return env


def run_dora(args: list[str], dora_dir: Path, corpus: Path | None = None, *, package: str = "mmd_audiocraft",
             check: bool = True, timeout: float = 600, env_extra: dict | None = None,
             ) -> subprocess.CompletedProcess:
    """`dora -P package ARGS` in a subprocess (audiocraft sets the multiprocessing start method per process)."""
    cmd = [sys.executable, "-m", "dora", "-P", package, *args]
    proc = subprocess.run(cmd, env=dora_env(dora_dir, corpus, **(env_extra or {})), cwd=dora_dir.parent,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n"
                             f"{proc.stderr[-6000:]}")
    return proc


def xp_dirs(dora_dir: Path) -> list[Path]:
    return sorted(p for p in (dora_dir / "xps").iterdir() if p.is_dir()) if (dora_dir / "xps").exists() else []


def history(xp_dir: Path) -> list[dict]:
    """Per-epoch metrics {stage: {name: value}} that flashy wrote for an XP."""
    return json.loads((xp_dir / "history.json").read_text())
