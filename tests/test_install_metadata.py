"""Installing the plugin into an environment that has torch gives a stack that works (issue 30).

pyproject.toml has one extra per supported torch line, which pairs torch with its torchaudio (torchaudio 2.11.0
declares no torch) and with a numpy it was built for (torch 2.1 declares no bound; flashy asks for any numpy);
the lock files satisfy the extras; every entry point refuses a stack that does not pair, in one line naming the
pip command that fixes it (integration/process.py).

The online tests run docs/INSTALL.md's commands and the refusals' advice as `pip install --dry-run --report`
against PyPI, in a scratch venv where the environment's packages are bare dist-info folders: pip takes them as
installed, and reads only metadata (PEP 658), so nothing is downloaded but a few kB per package and setuptools to
build this checkout's metadata. They skip, saying why, where PyPI cannot be reached.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import venv
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from mmd_audiocraft.integration.process import SUPPORTED_TORCH, hub_reachable, installed_versions, stack_mismatch

from .conftest import MUSIC_FIXTURE, ROOT
from .documentation import documented

LOCKS = {"torch21": "pinned", "torch211": "latest"}  # extra -> the stack whose lock file must satisfy it
STACK = ("torch", "torchaudio", "numpy")


def requirements(extra: str) -> dict[str, SpecifierSet]:
    """name -> what the base dependencies and `extra` of pyproject.toml ask of it, together."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found: dict[str, SpecifierSet] = {}
    for text in [*project["dependencies"], *project["optional-dependencies"][extra]]:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        found[name] = found.get(name, SpecifierSet()) & req.specifier
    return found


def pinned(specifier: SpecifierSet) -> str:
    """The version `specifier` pins with `==` (the extras pin torch and torchaudio exactly)."""
    exact = [spec.version for spec in specifier if spec.operator == "=="]
    assert len(exact) == 1, f"not one exact pin: {specifier}"
    return exact[0]


def lock(stack: str) -> dict[str, str]:
    """name -> version of requirements/STACK.lock.txt."""
    pins = {}
    for line in (ROOT / "requirements" / f"{stack}.lock.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            req = Requirement(line.split(" --hash")[0])
            pins[canonicalize_name(req.name)] = pinned(req.specifier)
    return pins


# -- offline: the metadata, the locks and the runtime check agree -----------------------------------------------
def test_the_extras_are_the_supported_torch_lines():
    optional = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(LOCKS) <= set(optional)
    assert sorted(pinned(requirements(extra)["torch"]) for extra in LOCKS) == sorted(SUPPORTED_TORCH.values())


@pytest.mark.parametrize("extra", sorted(LOCKS))
def test_each_extra_pairs_torch_with_its_torchaudio_and_a_numpy_it_can_use(extra):
    reqs = requirements(extra)
    torch, torchaudio = pinned(reqs["torch"]), pinned(reqs["torchaudio"])
    assert torchaudio == torch
    assert SUPPORTED_TORCH[Version(torch).release[:2]] == torch  # what the refusal advises for this line
    for numpy in ("1.24.0", "1.26.4", "2.0.0", "2.4.6"):  # allowed exactly where the runtime check accepts it
        works = stack_mismatch({"torch": torch, "torchaudio": torchaudio, "numpy": numpy}) is None
        assert reqs["numpy"].contains(numpy) == works, (extra, numpy)


@pytest.mark.parametrize("extra", sorted(LOCKS))
def test_the_lock_file_satisfies_its_extra(extra):
    pins = lock(LOCKS[extra])
    unmet = {name: (str(spec), pins.get(name)) for name, spec in requirements(extra).items()
             if name not in pins or not spec.contains(pins[name], prereleases=True)}
    assert unmet == {}, f"requirements/{LOCKS[extra]}.lock.txt does not satisfy pyproject.toml's [{extra}]"
    assert stack_mismatch({name: pins[name] for name in STACK}) is None


def test_the_documented_stacks_are_the_lock_files():
    """docs/INSTALL.md's table of stacks prints each package's version exactly as its lock file pins it, and the
    audiocraft version and free-space check its text names are the setup script's."""
    text = (ROOT / "docs" / "INSTALL.md").read_text()
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in text.split("## Supported stacks", 1)[1].split("\n## ", 1)[0].splitlines()
            if line.startswith("|")]
    header, body = rows[0], rows[2:]
    assert header[0] == "stack" and header[-1] == "lock file"
    assert sorted(row[0].split("`")[1] for row in body) == sorted(set(LOCKS.values()))
    for row in body:
        stack = row[0].split("`")[1]
        pins = lock(stack)
        assert row[-1] == f"`requirements/{stack}.lock.txt`"
        assert {name: version for name, version in zip(header[1:-1], row[1:-1])} == \
            {name: pins[canonicalize_name(name)] for name in header[1:-1]}, f"docs/INSTALL.md, stack {stack}"
    setup = (ROOT / "scripts" / "setup_env.sh").read_text()
    version = setup.split("AUDIOCRAFT_VERSION=", 1)[1].split()[0]
    need_gb = setup.split("MMD_AUDIOCRAFT_NEED_GB:-", 1)[1].split("}")[0]
    assert f"audiocraft {version} from its PyPI source distribution" in " ".join(text.split())
    assert f"checks that {need_gb} GB are free first" in " ".join(text.split())


# -- the runtime check, on version strings ------------------------------------------------------------------------
@pytest.mark.parametrize("versions", [
    {"torch": "2.1.0+cu121", "torchaudio": "2.1.0+cu121", "numpy": "1.26.4"},
    {"torch": "2.11.0", "torchaudio": "2.11.1", "numpy": "2.4.6"},
    {"torch": "2.3.0a0+git1234", "numpy": "2.0.0"},  # the first torch built for numpy 2, as a source build
    {"torchaudio": "2.11.0", "numpy": "2.4.6"},  # no torch: nothing to pair (importing it fails on its own)
])
def test_a_stack_that_pairs_passes(versions):
    assert stack_mismatch(versions) is None


@pytest.mark.parametrize("versions, named, fix", [
    ({"torch": "2.1.0", "torchaudio": "2.11.0", "numpy": "2.4.6"},  # issue 30: plain `pip install` on torch 2.1
     ["numpy 2.4.6", "torchaudio 2.11.0 (built for torch 2.11)"], 'pip install "numpy<2" torchaudio==2.1.0'),
    ({"torch": "2.1.2+cu118", "torchaudio": "2.1.2", "numpy": "2.0.0"}, ["numpy 2.0.0"], 'pip install "numpy<2"'),
    ({"torch": "2.11.0", "torchaudio": "2.1.0", "numpy": "2.4.6"}, ["torchaudio 2.1.0"],
     "pip install torchaudio==2.11.0"),
    # what plain `pip install` resolves on torch 2.1 since torchaudio 2.11.1 asks for torch >= 2.11: a torch of no
    # supported line, whose torchaudio may not exist, gets the newest supported pair
    ({"torch": "2.15.0", "torchaudio": "2.11.1", "numpy": "2.4.6"}, ["torchaudio 2.11.1", "not a supported line"],
     "pip install torch==2.11.0 torchaudio==2.11.0"),
])
def test_a_stack_that_does_not_pair_is_named_with_its_fix(versions, named, fix):
    message = stack_mismatch(versions)
    assert message.startswith(f"torch {versions['torch']} does not work with ")
    assert all(words in message for words in named)
    assert message.endswith(f"; fix it with: {fix}") and "\n" not in message


def fake_site(folder: Path, versions: dict[str, str]) -> Path:
    """`folder` holding a bare dist-info for each name -> version: metadata says installed, no code."""
    for name, version in versions.items():
        info = folder / f"{name}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        (info / "INSTALLER").write_text("pip\n")
        (info / "RECORD").write_text("")
    return folder


@pytest.mark.parametrize("entry", ["measure", "dora"])
def test_entry_points_refuse_a_stack_that_does_not_pair_in_one_line(entry, tmp_path):
    """The installed torch with a torchaudio of another line (only its metadata, first on sys.path): `measure`
    stops before reading audio, the Dora main before training, with the refusal's one line and no traceback."""
    real = installed_versions()
    other = "2.11.0" if Version(real["torch"]).release[:2] == (2, 1) else "2.1.0"
    site = fake_site(tmp_path / "site", {"torchaudio": other})
    expected = stack_mismatch({**real, "torchaudio": other})
    assert expected is not None
    audio = next(MUSIC_FIXTURE.glob("*.wav"))
    manifest = tmp_path / "data.jsonl"
    manifest.write_text(json.dumps({"path": str(audio), "duration": 1.0, "sample_rate": 16000}) + "\n")
    command = {"measure": [sys.executable, "-m", "mmd_audiocraft.apps.cli", "measure", "--model",
                           str(tmp_path / "none.th"), "--data", str(manifest)],
               "dora": [str(Path(sys.executable).parent / "dora"), "-P", "mmd_audiocraft", "run"]}[entry]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])),
               AUDIOCRAFT_DORA_DIR=str(tmp_path / "dora"))
    proc = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert proc.stderr == f"mmd_audiocraft: {expected}\n"


# -- online: pip resolves the documented commands and the advice against PyPI ----------------------------------
@pytest.fixture(scope="module")
def registry() -> None:
    hosts = ("pypi.org", "files.pythonhosted.org")
    unreachable = [host for host in hosts if not hub_reachable(host, timeout=5)]
    if unreachable:
        pytest.skip(f"PyPI cannot be reached ({', '.join(unreachable)}): pip's resolution is not checked here")
    if subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True).returncode != 0:
        pytest.skip(f"no pip in {sys.executable}: pip's resolution is not checked here")


def environment(folder: Path, versions: dict[str, str]) -> tuple[Path, Path]:
    """(python, site-packages) of a new venv without pip where `versions` (name -> version) are installed as far
    as pip can tell."""
    venv.create(folder, with_pip=False)
    python = folder / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    return python, fake_site(Path(site), versions)


def resolve(folder: Path, versions: dict[str, str], args: list[str]) -> dict[str, str]:
    """torch, torchaudio and numpy of an environment holding `versions` after `pip install ARGS` (a dry run
    against PyPI alone: this machine's pip config, mirrors and constraints are left out)."""
    python, site = environment(folder / "env", versions)
    report = folder / "report.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k == "PIP_CERT"}
    env["PIP_CONFIG_FILE"] = os.devnull
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--dry-run", "--quiet",
                           "--report", str(report), *args], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    after = installed_versions([str(site)])
    for item in json.loads(report.read_text())["install"]:
        name = canonicalize_name(item["metadata"]["name"])
        if name in STACK:
            after[name] = item["metadata"]["version"]
    return after


@pytest.mark.slow  # 10-20 s each: pip builds this checkout's metadata and resolves against PyPI
@pytest.mark.parametrize("extra", sorted(LOCKS))
def test_the_documented_install_into_a_torch_environment_pairs_its_stack(extra, registry, tmp_path):
    """docs/INSTALL.md's command for the line, into an environment that has only that torch (issue 30: plain
    `pip install` put numpy 2.4 and torchaudio 2.11 next to torch 2.1)."""
    words = documented("docs/INSTALL.md", "pip install", f"mmd-audiocraft[{extra}]").words
    assert words[:3] == ["pip", "install", "-e"], words
    torch = pinned(requirements(extra)["torch"])
    after = resolve(tmp_path, {"torch": torch}, [w.replace("/path/to/mmd-audiocraft", str(ROOT)) for w in words[2:]])
    assert (after["torch"], after["torchaudio"]) == (torch, torch)  # the environment's torch is kept
    if Version(torch) < Version("2.3"):
        assert Version(after["numpy"]) < Version("2")
    assert stack_mismatch(after) is None


@pytest.mark.slow  # the newest pair's advice resolves torch 2.11's CUDA packages: ~20 s
@pytest.mark.parametrize("broken", [{"torch": "2.1.0", "torchaudio": "2.11.0", "numpy": "2.4.6"},
                                    {"torch": "2.15.0", "torchaudio": "2.11.1", "numpy": "2.4.6"}])
def test_following_the_refusals_advice_gives_a_stack_that_pairs(broken, registry, tmp_path):
    words = shlex.split(stack_mismatch(broken).split("; fix it with: ")[1])
    assert words[:2] == ["pip", "install"], words
    after = resolve(tmp_path, broken, words[2:])
    assert stack_mismatch(after) is None, after
    if Version(broken["torch"]).release[:2] in SUPPORTED_TORCH:
        assert after["torch"] == broken["torch"]  # a supported torch is kept
