"""Shared fixtures: no network, a tiny real-music corpus, and real `dora -P mmd_audiocraft run` subprocesses."""
from __future__ import annotations

import dataclasses
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
# The tiny codec at batches of 4 on a few samples: for solvers composed and built in this process (`compose`).
SMALL_CODEC = ["solver=compression/encodec_mmd_tiny", "dset=audio/mmd_music_16khz", "dataset.batch_size=4",
               "dataset.train.num_samples=8", "dataset.valid.num_samples=4", "dataset.evaluate.num_samples=4",
               "dataset.generate.num_samples=1"]

os.environ["HF_HUB_OFFLINE"] = "1"  # tests never download


@pytest.fixture
def one_thread():
    """Many small torch calls: one thread avoids OpenMP hand-offs that dominate on a busy 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def fixture_corpus(root: Path) -> Path:
    """A corpus root in the layout of config/dset/audio/mmd_music_16khz.yaml and mmd_music_32khz.yaml whose every
    split is the committed real-music fixture (16 kHz files: the 32 kHz loader resamples them; also used by the
    benchmarks)."""
    manifest = root / "all.jsonl"
    subprocess.run([sys.executable, "-m", "audiocraft.data.audio_dataset", str(MUSIC_FIXTURE), str(manifest),
                    "--resolve"], check=True, capture_output=True)
    for folder in ("music_16khz", "music_32khz"):
        for split in SPLITS:
            (root / folder / split).mkdir(parents=True)
            shutil.copy(manifest, root / folder / split / "data.jsonl")
    return root


def user_dataset(root: Path, sample_rate: int = 16000, descriptions: bool = True) -> Path:
    """A user's dataset as docs/DATA.md makes one, outside the demo corpus: the committed music resampled to
    `sample_rate`, a folder per split with the manifest audiocraft's tool writes, and a `<audio>.json` text
    description beside each file (for MusicGen's conditioners) unless `descriptions` is false."""
    import torchaudio

    audio = root / "audio"
    audio.mkdir(parents=True)
    for i, wav in enumerate(sorted(MUSIC_FIXTURE.glob("*.wav"))):
        samples, rate = torchaudio.load(str(wav))
        target = audio / wav.name
        torchaudio.save(str(target), torchaudio.functional.resample(samples, rate, sample_rate), sample_rate)
        if descriptions:
            target.with_suffix(".json").write_text(json.dumps(  # every key audiocraft's MusicDataset requires
                {"title": wav.stem, "artist": "sectoid", "key": None, "bpm": None, "genre": "electronic",
                 "moods": [], "description": f"game music, excerpt {i}", "name": None, "instrument": None}))
    for split in SPLITS:
        (root / split).mkdir()
        subprocess.run([sys.executable, "-m", "audiocraft.data.audio_dataset", str(audio),
                        str(root / split / "data.jsonl"), "--resolve"], check=True, capture_output=True)
    return root


def fake_t5_cache(cache: Path) -> None:
    """The files the check looks for: t5-base's config and tokenizer model, in the hub cache's layout."""
    revision = "0" * 40
    snapshot = cache / "models--t5-base" / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for name in ("config.json", "spiece.model"):
        (snapshot / name).write_text("{}")
    (cache / "models--t5-base" / "refs").mkdir()
    (cache / "models--t5-base" / "refs" / "main").write_text(revision)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    return fixture_corpus(tmp_path_factory.mktemp("corpus"))


# -- codec XPs shared by the tests of a session ----------------------------------------------------------------
# MusicGen refuses codecs that rescale their input (renormalize): the LM's codec must not, like MusicGen's own.
LM_CODEC = [*TINY, "losses.inde=1000", "encodec.renormalize=false", "dataset.evaluate.num_samples=4"]


@pytest.fixture(scope="session")
def trained_codec(tiny_corpus, tmp_path_factory) -> tuple[Path, Path]:
    """(dora dir, XP folder) of the tiny codec (renormalising its input, as shipped) after one short epoch: the
    command of docs/TRAINING.md, as written."""
    from .documentation import documented, dora_args

    dora_dir = tmp_path_factory.mktemp("measure") / "dora"
    run_dora(dora_args(documented("docs/TRAINING.md", "solver=compression/encodec_mmd_tiny",
                                      "optim.updates_per_epoch=4")),
             dora_dir, tiny_corpus)
    (xp,) = xp_dirs(dora_dir)
    return dora_dir, xp


@pytest.fixture(scope="session")
def lm_codec(tiny_corpus, tmp_path_factory) -> tuple[Path, Path]:
    """(dora dir, XP folder) of a tiny MMD codec an LM can use (encodec.renormalize=false), one short epoch."""
    dora_dir = tmp_path_factory.mktemp("lm_codec") / "dora"
    run_dora(["run", *LM_CODEC], dora_dir, tiny_corpus)
    (xp,) = xp_dirs(dora_dir)
    return dora_dir, xp


TINY_LM = ["solver=musicgen/musicgen_mmd_tiny"]


@pytest.fixture(scope="session")
def tiny_lm(tiny_corpus, lm_codec) -> Path:
    """XP folder of the tiny LM (config/solver/musicgen/musicgen_mmd_tiny.yaml: one epoch of 8 updates) trained on
    the codes of `lm_codec` through `compression_model_checkpoint=//sig/SIG`, in that codec's Dora dir."""
    dora_dir, codec = lm_codec
    args = [*TINY_LM, f"compression_model_checkpoint=//sig/{codec.name}"]
    run_dora(["run", *args], dora_dir, tiny_corpus)
    (lm,) = [xp for xp in xp_dirs(dora_dir) if (xp / ".argv.json").is_file()
             and json.loads((xp / ".argv.json").read_text()) == args]
    return lm


# -- solvers built in this process ------------------------------------------------------------------------
@pytest.fixture
def compose(tmp_path, tiny_corpus, monkeypatch):
    """compose(*overrides) -> the XP `dora -P mmd_audiocraft run overrides` would run, in a fresh Dora dir, on
    the fixture corpus."""
    monkeypatch.setenv("MMD_AUDIOCRAFT_CORPUS", str(tiny_corpus))
    from mmd_audiocraft.train import audiocraft_train, main  # ours first: it sets up what audiocraft's reads

    dora_dir = tmp_path / "dora"
    monkeypatch.setattr(main.dora, "dir", dora_dir)
    monkeypatch.setattr(audiocraft_train.main.dora, "dir", dora_dir)
    return lambda *overrides: main.get_xp(list(overrides))


def seeded_solver(xp, build=None):
    """The solver of a composed Dora XP, built in this process after seeding torch, random and numpy with 0.

    ``build(cfg)`` replaces audiocraft's ``get_solver`` (through which our Dora main builds its solvers)."""
    import random

    import numpy as np
    import torch

    from mmd_audiocraft.integration.seams import install_solver_selection
    from mmd_audiocraft.train import audiocraft_train

    install_solver_selection()
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    with xp.enter():
        return (build or audiocraft_train.get_solver)(xp.cfg)


def train_batches(solver, n: int) -> list:
    """The first ``n`` batches of the solver's train loader."""
    it = iter(solver.dataloaders["train"])
    return [next(it) for _ in range(n)]


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


RESULTS = "@@RESULTS@@"  # what a driver subprocess prints before its JSON results


def run_driver(args: list[str], env: dict, cwd: Path, timeout: float = 600) -> dict:
    """Run `python ARGS` (a driver script or `-c CODE`, which prints RESULTS + JSON last) and return its JSON; an
    AssertionError with the output's tail when it fails or prints no results."""
    proc = subprocess.run([sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or RESULTS not in proc.stdout:
        raise AssertionError(f"driver failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return json.loads(proc.stdout.split(RESULTS)[-1])


@dataclasses.dataclass
class DoraRun:
    """A `dora` process started in the background, with its own log file."""
    proc: subprocess.Popen
    log: Path


def start_dora(args: list[str], dora_dir: Path, corpus: Path, *, package: str = "mmd_audiocraft",
               env_extra: dict | None = None, script: Path | None = None) -> DoraRun:
    """`dora -P package ARGS` (or `python script -P package ARGS`) in the background; several may share a
    Dora dir, each writes its own log next to it."""
    dora_dir.mkdir(parents=True, exist_ok=True)
    entry = [str(script)] if script is not None else ["-m", "dora"]
    log = dora_dir.parent / f"{dora_dir.name}-{len(list(dora_dir.parent.glob(f'{dora_dir.name}-*.log')))}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, *entry, "-P", package, *args], stdout=out,
                                stderr=subprocess.STDOUT, env=dora_env(dora_dir, corpus, **(env_extra or {})),
                                cwd=dora_dir.parent)
    return DoraRun(proc, log)


def finish(run: DoraRun, timeout: float = 600, expect_ok: bool = True) -> str:
    """Wait for the run; its output (an AssertionError with its tail when it failed and `expect_ok`)."""
    run.proc.wait(timeout=timeout)
    output = run.log.read_text()
    if expect_ok and run.proc.returncode != 0:
        raise AssertionError(f"dora run ({run.log}) failed ({run.proc.returncode}):\n{output[-6000:]}")
    return output


def load_checkpoint(path: Path) -> dict:
    import torch

    return torch.load(path, map_location="cpu", weights_only=False)


def xp_dirs(dora_dir: Path) -> list[Path]:
    return sorted(p for p in (dora_dir / "xps").iterdir() if p.is_dir()) if (dora_dir / "xps").exists() else []


def history(xp_dir: Path) -> list[dict]:
    """Per-epoch metrics {stage: {name: value}} that flashy wrote for an XP."""
    return json.loads((xp_dir / "history.json").read_text())
