"""Installed copies train: the wheel and the sdist carry the top-level config/ and grids/ inside the package
(`mmd_audiocraft.config`, `mmd_audiocraft.grids`), and an editable install finds them in the checkout. From a
directory outside the source, each install composes a shipped solver config, dry-runs a grid and starts the CLI,
all from the installed package."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from .conftest import ROOT

pytestmark = pytest.mark.slow

# repository folder -> where it lands in the installed package
SOURCE_FOLDERS = {"mmd_audiocraft": "mmd_audiocraft", "config": "mmd_audiocraft/config",
                  "grids": "mmd_audiocraft/grids"}
SHIPPED = ["config/mmd_config.yaml", "config/solver/compression/encodec_mmd_tiny.yaml",
           "config/dset/audio/mmd_music_16khz.yaml", "config/model/encodec/encodec_pvq_nq4.yaml",
           "grids/mmd_codec_weights.py", "grids/_paper.py", "mmd_audiocraft/apps/demo/corpus_sources.json"]


def installed_name(source: str) -> str:
    """Where a source file of the repository lands in the installed package."""
    folder, rest = source.split("/", 1)
    return f"{SOURCE_FOLDERS[folder]}/{rest}"


def source_files(suffixes: tuple[str, ...]) -> set[str]:
    return {str(p.relative_to(ROOT)) for folder in SOURCE_FOLDERS for p in (ROOT / folder).rglob("*")
            if p.suffix in suffixes and "__pycache__" not in p.parts}


def source_copy(dest: Path) -> Path:
    """The checkout's files (tracked, and untracked but not ignored) in `dest`: a build of its own, with no
    build/ left over from another (setuptools would ship stale modules from it)."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.splitlines()
    for name in files:
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


def build(kind: str, src: Path, out: Path) -> Path:
    """`setuptools.build_meta.build_<kind>` (the PEP 517 backend pyproject.toml names) of `src` into `out`."""
    code = f"from setuptools import build_meta; print(build_meta.build_{kind}({str(out)!r}))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=src, capture_output=True, text=True, check=True)
    return out / proc.stdout.strip().splitlines()[-1]


def layered_venv(path: Path) -> tuple[Path, str]:
    """A fresh venv layered on this environment's packages (audiocraft, torch, ...) but not on this checkout:
    (its python, its site-packages)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    stack = [p for p in sys.path if p.endswith("site-packages") and os.path.isdir(os.path.join(p, "torch"))]
    vsite = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                           capture_output=True, text=True, check=True).stdout.strip()
    with open(os.path.join(vsite, "_stack.pth"), "w") as pth:
        pth.write(f"import site; site.addsitedir({stack[0]!r})\n")
    return python, vsite


def check_installed(python: Path, tmp_path: Path, package_root: str, config_root: str) -> None:
    """Outside the source: the Dora main composes a shipped solver config from `config_root`, the package is
    imported from `package_root`, a grid dry-runs and the CLI starts."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MMD_AUDIOCRAFT_CONFIG_DIR")}
    env.update(AUDIOCRAFT_DORA_DIR=str(tmp_path / "dora"), HF_HUB_OFFLINE="1",
               MMD_DSET="audio/mmd_music_32khz")  # the paper-scale grids train on the data they are given

    def run(*args) -> str:
        proc = subprocess.run([str(a) for a in args], cwd=outside, env=env, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, f"{args}:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
        return proc.stdout + proc.stderr

    composed = run(python, "-c", "import mmd_audiocraft, mmd_audiocraft.grids\n"
                   "from mmd_audiocraft.integration.seams import plugin_config_dir\n"
                   "from mmd_audiocraft.train import main\n"
                   "xp = main.get_xp(['solver=compression/encodec_mmd_tiny', 'losses.inde=1000'])\n"
                   "print('COMPOSED', mmd_audiocraft.__file__, mmd_audiocraft.grids.__path__[0], plugin_config_dir(), "
                   "xp.cfg.inde.kernel, xp.cfg.rvq.bins, xp.cfg.losses.inde)")
    (line,) = [line for line in composed.splitlines() if line.startswith("COMPOSED ")]
    package_file, grids_dir, config_dir, kernel, bins, weight = line.split()[1:]
    assert package_file.startswith(package_root) and config_dir.startswith(config_root), line
    assert Path(grids_dir, "_paper.py").is_file()
    assert (kernel, bins, float(weight)) == ("gaussian", "128", 1000.0)
    assert "mmd_codec_weights" in run(python, "-m", "dora", "-P", "mmd_audiocraft", "grid", "mmd_codec_weights",
                                      "--dry_run", "--init")
    assert (tmp_path / "dora" / "xps").is_dir()
    assert "--model" in run(python.parent / "mmd-audiocraft", "measure", "--help")


def test_the_wheel_and_sdist_ship_configs_and_grids_and_the_installed_wheel_trains(tmp_path):
    dist, src = tmp_path / "dist", source_copy(tmp_path / "src")
    wheel, sdist = build("wheel", src, dist), build("sdist", src, dist)
    names = set(zipfile.ZipFile(wheel).namelist())
    assert sorted(installed_name(f) for f in SHIPPED if installed_name(f) not in names) == []
    # every module and config of the source, under its installed name; nothing stale
    assert {n for n in names if n.endswith((".py", ".yaml"))} == {installed_name(f) for f in
                                                                  source_files((".py", ".yaml"))}
    in_sdist = {n.split("/", 1)[1] for n in tarfile.open(sdist).getnames() if "/" in n}
    assert [f for f in SHIPPED if f not in in_sdist] == []  # the sdist keeps the source layout

    python, vsite = layered_venv(tmp_path / "venv")
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)], check=True)
    check_installed(python, tmp_path, package_root=vsite, config_root=vsite)


def test_an_editable_install_finds_the_top_level_configs_and_grids(tmp_path):
    src = source_copy(tmp_path / "src")
    python, _ = layered_venv(tmp_path / "venv")
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "-e", str(src)],
                   check=True, capture_output=True)
    check_installed(python, tmp_path, package_root=str(src / "mmd_audiocraft"), config_root=str(src / "config"))
