"""What audiocraft's audio-generation metrics need from outside the Python environment, and which of it is missing.

audiocraft's MusicGen evaluate stage (`solvers/musicgen.py: MusicGenSolver.evaluate_audio_generation`) builds each
metric its config enables (`evaluate.metrics.<name>=true`) through `solvers/builders.py`, inside the job, and
each reads packages and files that are downloaded separately (audiocraft's docs/METRICS.md):

metric (evaluate.metrics.X)  audiocraft class (audiocraft/metrics/)       needs
---------------------------  -------------------------------------------  ----------------------------------------
fad (FAD, VGGish)            fad.FrechetAudioDistanceMetric               `metrics.fad.tf.bin`: Google Research's
                                                                          frechet_audio_distance code; the VGGish
                                                                          checkpoint `metrics.fad.tf.model_path`;
                                                                          an interpreter ($TF_PYTHON_EXE, else
                                                                          `python`) with TensorFlow, tf_slim,
                                                                          apache_beam and scipy
kld (KL, PaSST)              kld.PasstKLDivergenceMetric                  package hear21passt; the PaSST weights it
                                                                          downloads into torch hub's checkpoints
text_consistency (CLAP)      clap_consistency.CLAPTextConsistencyMetric   package laion_clap; the CLAP checkpoint
                                                                          `metrics.text_consistency.clap.model_path`;
                                                                          roberta-base from the Hugging Face hub
chroma_cosine                chroma_cosinesim.ChromaCosineSimilarityMetric nothing (librosa's chroma filters)
base (CE, perplexity)        (the LM's own cross-entropy)                 nothing

Missing, an item fails in the job after the model was built and generated (an ImportError, audiocraft's bare
assert on a path, a download that hangs offline, `os._exit(1)` from FAD). :func:`missing_requirements` lists
each missing item with the config key (or environment variable) that names it, where it looked and how to get
it; `preflight.check_generation_metrics` turns the list into one ConfigError before the solver is built, and
grid mmd_musicgen_eval calls it before anything is submitted. `//reference/` in a path is audiocraft's reference
dir (`AudioCraftEnvironment.get_reference_dir()`: $AUDIOCRAFT_REFERENCE_DIR, else the team config's).
"""
from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import omegaconf

__all__ = ["Missing", "GENERATION_METRICS", "missing_requirements", "reference_path"]

GENERATION_METRICS = ("fad", "kld", "text_consistency", "chroma_cosine")  # keys of `evaluate.metrics` that need models
REFERENCE_PREFIX = "//reference"
# frechet_audio_distance: the modules audiocraft runs (`python -m ...` with PYTHONPATH=metrics.fad.tf.bin)
FAD_MODULES = ("frechet_audio_distance.create_embeddings_main", "frechet_audio_distance.compute_fad")
FAD_PACKAGES = ("tensorflow", "tf_slim", "apache_beam", "scipy")  # what those modules import
FAD_SETUP = ("clone github.com/google-research/google-research and set up its frechet_audio_distance as the "
             "docstring of audiocraft/metrics/fad.py says")
VGGISH_URL = "https://storage.googleapis.com/audioset/vggish_model.ckpt"
# hear21passt's model per `metrics.kld.passt.pretrained_length` (audiocraft's PasstKLDivergenceMetric): the module
# audiocraft imports and the weights file its get_basic_model() fetches into torch hub's checkpoints/ folder.
PASST_RELEASES = "https://github.com/kkoutini/PaSST/releases/download"
PASST = {30: ("hear21passt.base30sec", "v0.0.5", "passt-s-f128-30sec-p16-s10-ap.473-swa.pt"),
         20: ("hear21passt.base20sec", "v0.0.5", "passt-s-f128-20sec-p16-s10-ap.474-swa.pt"),
         None: ("hear21passt.base", "v0.0.1-audioset", "passt-s-f128-p16-s10-ap.476-swa.pt")}
PASST_INSTALL = "pip install 'git+https://github.com/kkoutini/passt_hear21@0.0.19#egg=hear21passt'"
CLAP_REPO = "lukewys/laion_clap"  # Hugging Face repository of LAION's CLAP checkpoints
ROBERTA = "roberta-base"  # CLAPTextConsistencyMetric's tokenizer and laion_clap's text encoder
ROBERTA_FILES = ("config.json", "vocab.json", "merges.txt")


@dataclasses.dataclass(frozen=True)
class Missing:
    """One thing a metric needs that is not here: the config key or environment variable that names it (with its
    value), what it is, where it was looked for, and how to get it."""
    key: str
    what: str
    looked_for: str
    how: str

    def __str__(self) -> str:
        return f"{self.key}: {self.what} (looked for {self.looked_for}); {self.how}"


def _select(cfg, key: str):
    return omegaconf.OmegaConf.select(cfg, key, default=None)


def reference_path(path) -> Path:
    """`path` with audiocraft's `//reference` placeholder replaced by its reference dir (what
    `AudioCraftEnvironment.resolve_reference_path` does, without its bare assert on the dir)."""
    text = str(path)
    if text.startswith(REFERENCE_PREFIX):
        from audiocraft.environment import AudioCraftEnvironment

        return Path(str(AudioCraftEnvironment.get_reference_dir()) + text[len(REFERENCE_PREFIX):])
    return Path(text)


def _module_missing(name: str) -> bool:
    """Whether `name` cannot be imported here (its parent packages are imported to find it)."""
    try:
        return importlib.util.find_spec(name) is None
    except (ImportError, ValueError):
        return True


@functools.cache
def _modules_missing_in(python: str, path: str | None, modules: tuple[str, ...]) -> tuple[str, ...]:
    """The modules of `modules` that interpreter `python` cannot find with PYTHONPATH=`path` (nothing is imported
    but the modules' parent packages). Raises OSError when the interpreter cannot be run."""
    probe = ("import importlib.util, sys\n"
             "def missing(name):\n"
             "    try:\n"
             "        return importlib.util.find_spec(name) is None\n"
             "    except (ImportError, ValueError):\n"
             "        return True\n"
             "print(','.join(m for m in sys.argv[1:] if missing(m)))\n")
    env = dict(os.environ)
    if path is not None:
        env["PYTHONPATH"] = path  # audiocraft's FrechetAudioDistanceMetric replaces it the same way
    done = subprocess.run([python, "-c", probe, *modules], env=env, capture_output=True, text=True, timeout=120)
    if done.returncode:
        raise OSError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}")
    return tuple(m for m in done.stdout.strip().split(",") if m)


def _fad(cfg) -> list[Missing]:
    out = []
    model = _select(cfg, "metrics.fad.model")
    if model != "tf":
        return [Missing(f"metrics.fad.model={model}", "audiocraft computes FAD with TensorFlow only", "'tf'",
                        "set metrics.fad.model=tf")]
    binary = _select(cfg, "metrics.fad.tf.bin")
    modules = [str(Path(str(binary), *m.split(".")).with_suffix(".py")) for m in FAD_MODULES]
    if binary is None or not all(Path(m).is_file() for m in modules):
        out.append(Missing(f"metrics.fad.tf.bin={binary}", "Google Research's frechet_audio_distance code, which "
                           "audiocraft runs for FAD", " and ".join(modules) if binary is not None else
                           "a folder holding frechet_audio_distance/",
                           f"{FAD_SETUP}, then set metrics.fad.tf.bin to the checkout (grid mmd_musicgen_eval: "
                           "export MMD_FAD_BIN=/path/to/google-research before `dora grid`)"))
    model_path = _select(cfg, "metrics.fad.tf.model_path")
    resolved = reference_path(model_path)
    if not resolved.is_file():
        out.append(Missing(f"metrics.fad.tf.model_path={model_path}", "the VGGish checkpoint FAD embeds audio with",
                           str(resolved), f"download {VGGISH_URL} to that path"))
    python = os.environ.get("TF_PYTHON_EXE") or "python"
    executable = shutil.which(python)
    if executable is None:
        out.append(Missing(f"TF_PYTHON_EXE={python}", "the Python interpreter audiocraft runs FAD's TensorFlow "
                           "code with", python, "export TF_PYTHON_EXE=<python of an environment with "
                           f"{', '.join(FAD_PACKAGES)}> (audiocraft/metrics/fad.py)"))
        return out
    try:
        lacking = _modules_missing_in(executable, None if binary is None else str(binary), FAD_PACKAGES)
    except (OSError, subprocess.SubprocessError) as exc:
        lacking, why = FAD_PACKAGES, f"it does not run: {exc}"
    else:
        why = f"it cannot import {', '.join(lacking)}"
    if lacking:
        out.append(Missing(f"TF_PYTHON_EXE={python}", f"the interpreter audiocraft runs FAD with: {why}",
                           f"{', '.join(lacking)} importable by {executable}",
                           "pip install tensorflow tf_slim apache-beam scipy in that environment, or export "
                           "TF_PYTHON_EXE=<the python of one that has them> (audiocraft/metrics/fad.py)"))
    return out


def _kld(cfg) -> list[Missing]:
    model = _select(cfg, "metrics.kld.model")
    if model != "passt":
        return [Missing(f"metrics.kld.model={model}", "audiocraft computes KL with the PaSST classifier only",
                        "'passt'", "set metrics.kld.model=passt")]
    length = _select(cfg, "metrics.kld.passt.pretrained_length")
    module, release, weights = PASST.get(length, PASST[None])
    if _module_missing("hear21passt") or _module_missing(module):
        return [Missing("evaluate.metrics.kld=true", "the package hear21passt (the PaSST classifier)",
                        f"module {module} in {sys.executable}", f"{PASST_INSTALL} (or pip install hear21passt)")]
    import torch

    path = Path(torch.hub.get_dir()) / "checkpoints" / weights
    if path.is_file():
        return []
    return [Missing(f"metrics.kld.passt.pretrained_length={length}",
                    f"the PaSST weights {module} loads (hear21passt downloads them at first use)", str(path),
                    f"download {PASST_RELEASES}/{release}/{weights} to that path (torch hub's dir: $TORCH_HOME/hub)")]


def _hub_has(repo: str, files) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return all(isinstance(try_to_load_from_cache(repo, name), str) for name in files)


def _text_consistency(cfg) -> list[Missing]:
    model = _select(cfg, "metrics.text_consistency.model")
    if model != "clap":
        return [Missing(f"metrics.text_consistency.model={model}", "audiocraft scores text consistency with CLAP only",
                        "'clap'", "set metrics.text_consistency.model=clap")]
    out = []
    if _module_missing("laion_clap"):
        out.append(Missing("evaluate.metrics.text_consistency=true", "the package laion_clap (CLAP)",
                           f"module laion_clap in {sys.executable}", "pip install laion_clap"))
    model_path = _select(cfg, "metrics.text_consistency.clap.model_path")
    resolved = reference_path(model_path)
    if not resolved.is_file():
        out.append(Missing(f"metrics.text_consistency.clap.model_path={model_path}", "the CLAP checkpoint",
                           str(resolved), f"huggingface-cli download {CLAP_REPO} {resolved.name} --local-dir "
                           f"{resolved.parent}"))
    if os.environ.get("HF_HUB_OFFLINE") not in (None, "", "0") and not _hub_has(ROBERTA, ROBERTA_FILES):
        from huggingface_hub.constants import HF_HUB_CACHE

        out.append(Missing("evaluate.metrics.text_consistency=true", f"{ROBERTA} (CLAP's tokenizer and text "
                           "encoder, from the Hugging Face hub; HF_HUB_OFFLINE is set)",
                           f"{', '.join(ROBERTA_FILES)} of {ROBERTA} in {HF_HUB_CACHE}",
                           f"huggingface-cli download {ROBERTA} on a connected machine and point HF_HUB_CACHE at "
                           "that cache"))
    return out


def _chroma_cosine(cfg) -> list[Missing]:
    model = _select(cfg, "metrics.chroma_cosine.model")
    if model == "chroma_base":
        return []
    return [Missing(f"metrics.chroma_cosine.model={model}", "audiocraft computes chroma cosine with chroma_base "
                    "only", "'chroma_base'", "set metrics.chroma_cosine.model=chroma_base")]


CHECKS = {"fad": _fad, "kld": _kld, "text_consistency": _text_consistency, "chroma_cosine": _chroma_cosine}


def missing_requirements(cfg: omegaconf.DictConfig) -> list[Missing]:
    """Everything the generation metrics enabled in `cfg` (`evaluate.metrics.<name>` true, for name in
    GENERATION_METRICS) need and do not find here, in the order fad, kld, text_consistency, chroma_cosine;
    [] when nothing is missing or no such metric is enabled. Reads files, the torch hub and Hugging Face caches,
    and runs $TF_PYTHON_EXE once (cached) to find TensorFlow without importing it; never downloads."""
    enabled = _select(cfg, "evaluate.metrics") or {}
    return [item for name in GENERATION_METRICS if enabled.get(name) for item in CHECKS[name](cfg)]
