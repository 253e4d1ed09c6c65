"""A non-editable install trains: the wheel and the sdist carry the Hydra configs and the grids as package data,
and from a directory outside the checkout the Dora main composes the shipped configs, a grid dry-runs and the
CLI starts, all from the installed package."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile

import pytest

from .conftest import ROOT

pytestmark = pytest.mark.slow

SHIPPED = ["mmd_audiocraft/config/mmd_config.yaml", "mmd_audiocraft/config/solver/compression/encodec_mmd_tiny.yaml",
           "mmd_audiocraft/config/dset/audio/mmd_music_16khz.yaml",
           "mmd_audiocraft/config/model/encodec/encodec_pvq_nq4.yaml", "mmd_audiocraft/grids/mmd_codec_weights.py",
           "mmd_audiocraft/grids/_paper.py", "mmd_audiocraft/demo/corpus_sources.json"]


def source_copy(dest):
    """The checkout's files (tracked, and untracked but not ignored) in `dest`: a build of its own, with no
    build/ left over from another (setuptools would ship stale modules from it)."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.splitlines()
    for name in files:
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


def build(kind: str, src, out) -> str:
    """`setuptools.build_meta.build_<kind>` (the PEP 517 backend pyproject.toml names) of `src` into `out`."""
    code = f"from setuptools import build_meta; print(build_meta.build_{kind}({str(out)!r}))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=src, capture_output=True, text=True, check=True)
    return proc.stdout.strip().splitlines()[-1]


def test_the_installed_wheel_composes_configs_runs_a_grid_dry_run_and_the_cli(tmp_path):
    dist, src = tmp_path / "dist", source_copy(tmp_path / "src")
    wheel = dist / build("wheel", src, dist)
    sdist = dist / build("sdist", src, dist)
    names = set(zipfile.ZipFile(wheel).namelist())
    assert [f for f in SHIPPED if f not in names] == []
    modules = {n for n in names if n.startswith("mmd_audiocraft/") and n.endswith(".py")}
    assert modules == {str(p.relative_to(ROOT)) for p in (ROOT / "mmd_audiocraft").rglob("*.py")}  # no stale one
    in_sdist = {n.split("/", 1)[1] for n in tarfile.open(sdist).getnames() if "/" in n}
    assert [f for f in SHIPPED if f not in in_sdist] == []

    # a fresh venv layered on this environment's packages (audiocraft, torch, ...) but not on this checkout
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    stack = [p for p in sys.path if p.endswith("site-packages") and "mmd_audiocraft" not in p and
             os.path.isdir(os.path.join(p, "torch"))]
    vsite = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                           capture_output=True, text=True, check=True).stdout.strip()
    with open(os.path.join(vsite, "_stack.pth"), "w") as pth:
        pth.write(f"import site; site.addsitedir({stack[0]!r})\n")
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)], check=True)

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MMD_AUDIOCRAFT_CONFIG_DIR")}
    env.update(AUDIOCRAFT_DORA_DIR=str(tmp_path / "dora"), HF_HUB_OFFLINE="1")

    def run(*args: str) -> str:
        proc = subprocess.run([str(a) for a in args], cwd=outside, env=env, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, f"{args}:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
        return proc.stdout + proc.stderr

    composed = run(python, "-c", "import mmd_audiocraft, mmd_audiocraft.plugin as e\n"
                   "from mmd_audiocraft.train import main\n"
                   "xp = main.get_xp(['solver=compression/encodec_mmd_tiny', 'losses.inde=1000'])\n"
                   "print('COMPOSED', mmd_audiocraft.__file__, e.plugin_config_dir(), xp.cfg.inde.kernel, "
                   "xp.cfg.rvq.bins, xp.cfg.losses.inde)")
    (line,) = [line for line in composed.splitlines() if line.startswith("COMPOSED ")]
    package_file, config_dir, kernel, bins, weight = line.split()[1:]
    assert package_file.startswith(vsite) and config_dir.startswith(vsite)  # the installed copy, not the checkout
    assert (kernel, bins, float(weight)) == ("gaussian", "128", 1000.0)
    assert "mmd_codec_weights" in run(python, "-m", "dora", "-P", "mmd_audiocraft", "grid", "mmd_codec_weights",
                                      "--dry_run", "--init")
    assert (tmp_path / "dora" / "xps").is_dir()
    assert "--model" in run(venv / "bin" / "mmd-audiocraft", "measure", "--help")
    assert sysconfig.get_paths()["purelib"] != vsite
