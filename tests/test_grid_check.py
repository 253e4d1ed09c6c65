"""The check before anything queues (issue 28, item 4): `mmd-audiocraft check GRID`, and `dora grid` refusing to
submit while anything is missing, one line per missing item with its fix.

SLURM is played by an `sinfo` that lists one partition (`gpu_a`) and an `sbatch` that records its calls, so the
partition check runs without a cluster and a submission would be seen (tests/test_slurm_cluster.py runs the
real one). The inputs are the documented ones: MMD_GRID_PROFILE, MMD_DATA, MMD_GRID_SLURM and audiocraft's team
config (AUDIOCRAFT_CONFIG).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from .conftest import dora_env, fake_t5_cache, run_dora, user_dataset

pytestmark = [pytest.mark.slow, pytest.mark.default_stack]  # reads files and configs: stack-independent


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("check")
    bin_dir = root / "bin"
    bin_dir.mkdir()
    (bin_dir / "sinfo").write_text("#!/bin/sh\necho 'gpu_a*'\n")
    (bin_dir / "sbatch").write_text(f"#!/bin/sh\necho \"$@\" >> {root}/sbatch.calls\nexit 1\n")
    for tool in ("sinfo", "sbatch"):
        (bin_dir / tool).chmod(0o755)
    team = root / "team.yaml"
    team.write_text("default:\n  dora_dir: /tmp/unused\n  partitions:\n    global: gpu_a\n    team: gpu_a\n"
                    "  reference_dir: /tmp\n")
    wrong = root / "wrong_team.yaml"
    wrong.write_text(team.read_text().replace("gpu_a", "gpu_z"))
    slurm = root / "slurm.yaml"
    slurm.write_text("codec:\n  gpus: 3\n  mem_per_gpu: 20\n")
    empty = root / "empty"
    empty.mkdir()
    fake_t5_cache(root / "t5")
    return {"root": root, "PATH": f"{bin_dir}:{os.environ['PATH']}", "team": team, "wrong": wrong,
            "slurm": slurm, "empty": empty, "good": user_dataset(root / "good"),
            "low_rate": user_dataset(root / "low_rate", sample_rate=8000),
            "no_text": user_dataset(root / "no_text", sample_rate=32000, descriptions=False), "t5": root / "t5"}


def check(world: dict, grid: str, **env: str) -> subprocess.CompletedProcess:
    base = {"PATH": world["PATH"], "AUDIOCRAFT_CONFIG": str(world["team"]), "MMD_GRID_PROFILE": "cpu",
            "HF_HUB_CACHE": str(world["empty"]), "AUDIOCRAFT_REFERENCE_DIR": str(world["empty"])}
    full = dora_env(world["root"] / "dora", **{**base, **env})
    return subprocess.run([sys.executable, "-m", "mmd_audiocraft.apps.cli", "check", grid], env=full,
                          capture_output=True, text=True, timeout=300, cwd=world["root"])


def items(proc) -> list[str]:
    """The numbered missing items of a refusal."""
    return [re.sub(r"^\s*\(\d+\) ", "", line) for line in proc.stdout.splitlines() if re.match(r"^\s*\(\d+\) ", line)]


def test_a_complete_setting_passes(world):
    proc = check(world, "mmd_musicgen", MMD_DATA=str(world["good"]))
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert re.fullmatch(r"grid mmd_musicgen@cpu-[0-9a-f]{8}: nothing missing; `dora -P mmd_audiocraft grid "
                        r"mmd_musicgen` can submit\n", proc.stdout)


def test_each_missing_item_is_one_line_with_its_fix(world):
    missing = check(world, "mmd_codec_decoding", MMD_DATA=str(world["root"] / "nowhere"))
    assert missing.returncode == 1
    lines = items(missing)
    assert len(lines) == 4  # one per split, each once for the grid's three XPs
    assert lines[0].startswith(f"datasource.train={world['root'] / 'nowhere' / 'train'}: no readable manifest")
    assert "python -m audiocraft.data.audio_dataset AUDIO_DIR" in lines[0]

    (rate,) = items(check(world, "mmd_codec_decoding", MMD_DATA=str(world["low_rate"])))[:1]
    assert rate.startswith(f"datasource.train={world['low_rate'] / 'train'}: 4 of 4 files are below the codec's "
                           "sample_rate=16000")

    (text,) = items(check(world, "mmd_musicgen", MMD_GRID_PROFILE="paper", MMD_DATA=str(world["no_text"]),
                          HF_HUB_CACHE=str(world["t5"])))  # MusicGen-small's T5 conditioner
    assert text.startswith(f"datasource.train={world['no_text'] / 'train'}: text for the LM's conditioners "
                           "(description): 4 of 4 files have none")

    partial = world["no_text"].parent / "partial"
    if not partial.exists():  # a json with the description only: audiocraft requires every MusicInfo key
        user_dataset(partial)
        for info in (partial / "audio").glob("*.json"):
            info.write_text('{"description": "game music"}')
    (keys,) = items(check(world, "mmd_musicgen", MMD_DATA=str(partial)))
    assert keys.startswith(f"datasource.train={partial / 'train'}: 4 of 4 files have a .json without keys "
                           "audiocraft's MusicDataset requires") and "title, artist, key" in keys

    (partition,) = items(check(world, "mmd_codec_decoding", MMD_DATA=str(world["good"]),
                               AUDIOCRAFT_CONFIG=str(world["wrong"])))
    assert partition.startswith("partition 'gpu_z' is not one of this cluster's (gpu_a): set partitions.team and "
                                f"partitions.global of team 'default' in {world['wrong']}")

    (gpus,) = items(check(world, "mmd_codec_decoding", MMD_DATA=str(world["good"]), MMD_GRID_SLURM=str(world["slurm"])))
    assert gpus.startswith("dataset.batch_size=16 cannot be split over 3 processes") and "3 GPUs" in gpus


def test_the_paper_lm_needs_t5_in_the_cache_the_jobs_read(world):
    proc = check(world, "mmd_musicgen", MMD_GRID_PROFILE="paper", MMD_DATA=str(world["good"]))
    t5 = [line for line in items(proc) if line.startswith("conditioners.description.t5.name=t5-base")]
    assert t5 and str(world["empty"]) in t5[0] and "huggingface-cli download t5-base" in t5[0]


def test_dora_grid_submits_nothing_while_anything_is_missing(world, tiny_corpus):
    env = {"PATH": world["PATH"], "AUDIOCRAFT_CONFIG": str(world["team"]), "MMD_GRID_PROFILE": "cpu",
           "MMD_DATA": str(world["low_rate"])}
    proc = run_dora(["grid", "mmd_codec_decoding", "--no_git_save"], world["root"] / "dora", check=False,
                    env_extra=env)
    assert proc.returncode == 1
    assert re.search(r"grid mmd_codec_decoding@cpu-[0-9a-f]{8}: \d thing\(s\) missing, nothing submitted:",
                     proc.stderr)
    assert "below the codec's sample_rate=16000" in proc.stderr
    assert not (world["root"] / "sbatch.calls").exists()


def test_refusals_of_the_inputs_are_one_line(world):
    proc = check(world, "mmd_codec_decoding", MMD_GRID_PROFILE="paper")
    assert proc.returncode == 2 and proc.stderr.strip() == (
        "mmd-audiocraft check: error: MMD_GRID_PROFILE=paper trains on your 32 kHz music: export "
        "MMD_DATA=/path/to/manifests (folders train/ valid/ evaluate/ generate/ of audiocraft manifests) or "
        "MMD_DSET=audio/NAME (a dset config); docs/DATA.md says how to make them")
    bad = world["root"] / "bad_slurm.yaml"
    bad.write_text(json.dumps({"codec": {"gpu": 8}}))
    proc = check(world, "mmd_codec_decoding", MMD_GRID_SLURM=str(bad), MMD_DATA=str(world["good"]))
    assert proc.returncode == 2 and f"MMD_GRID_SLURM={bad}: codec.gpu is not a Dora SLURM field" in proc.stderr
