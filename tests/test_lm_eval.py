"""The LMs' evaluation: what its metrics need (integration/metric_requirements.py) and grid mmd_musicgen_eval.

Fast: a fake installation of everything FAD, KL and CLAP look for (empty files and packages at the places audiocraft
reads them from) is complete, and with one item removed at a time the preflight names exactly that item (its
config key, where it looked); `execute_only` without a model to run is refused.
Slow: the CPU profile's evaluation grid end to end, in one driver process: the grid lists an evaluation per LM
of grids mmd_musicgen and mmd_musicgen_quantizers, all waiting; once one LM XP has finished (the session's tiny
LM and codec checkpoints, copied to the signatures the grid computes for its Table 2 MMD LM: training the grid's
own codec and LM would add a minute) the grid schedules that evaluation only, and `dora run -f SIG` runs it:
audiocraft's evaluate stage with the LM's cross-entropy and the chroma cosine similarity, no download. The chroma
cosine it logs is recomputed here from the audio it compared, with numpy (STFT, librosa's chroma filters), and
`mmd-audiocraft compare` on the codec shows what the evaluation logged beside its LM.
"""
from __future__ import annotations

import importlib
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from mmd_audiocraft.integration.errors import ConfigError
from mmd_audiocraft.integration.metric_requirements import (
    FAD_MODULES,
    FAD_PACKAGES,
    PASST,
    ROBERTA,
    ROBERTA_FILES,
    missing_requirements,
)
from mmd_audiocraft.integration.preflight import check_execute_only, check_generation_metrics

from .conftest import TINY_LM, dora_env, history, run_driver

CLAP_FILE = "music_audioset_epoch_15_esc_90.14.pt"  # audiocraft's metrics.text_consistency.clap.model_path
FAKE_PACKAGES = ("hear21passt", "laion_clap")


def fake_installation(root: Path, hf_cache: Path | None = None) -> dict[str, Path]:
    """Empty stand-ins for everything FAD, KL and CLAP read, where audiocraft reads them, under `root` (the
    Hugging Face files in `hf_cache`, default root/hf); name -> path. Point at it: $AUDIOCRAFT_REFERENCE_DIR =
    reference, $TF_PYTHON_EXE = any Python (TensorFlow's stand-ins are in fad_bin), `site` on the Python path,
    $TORCH_HOME = torch_home, $HF_HUB_CACHE = hf_cache."""
    def touch(path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
        return path

    fad_bin = root / "google-research"
    site = root / "site"
    hf_cache = hf_cache or root / "hf"
    paths = {"fad_bin": fad_bin, "site": site, "reference": root / "reference", "torch_home": root / "torch",
             "hf_cache": hf_cache}
    for module in FAD_MODULES:
        paths[module.rsplit(".", 1)[1]] = touch(fad_bin.joinpath(*module.split(".")).with_suffix(".py"))
    touch(fad_bin / "frechet_audio_distance" / "__init__.py")
    for package in FAD_PACKAGES:  # TensorFlow and co., found by $TF_PYTHON_EXE with PYTHONPATH=metrics.fad.tf.bin
        paths[package] = touch(fad_bin / package / "__init__.py").parent
    paths["hear21passt"] = touch(site / "hear21passt" / "__init__.py").parent
    touch(site / "hear21passt" / f"{PASST[20][0].rsplit('.', 1)[1]}.py")
    paths["laion_clap"] = touch(site / "laion_clap" / "__init__.py").parent
    paths["vggish"] = touch(root / "reference" / "fad" / "vggish_model.ckpt")
    paths["clap_checkpoint"] = touch(root / "reference" / "clap" / CLAP_FILE)
    paths["passt_weights"] = touch(root / "torch" / "hub" / "checkpoints" / PASST[20][2])  # torch.hub.get_dir()
    snapshot = "0" * 40  # the Hugging Face cache layout: refs/main names the snapshot holding the files
    repo = hf_cache / f"models--{ROBERTA}"
    touch(repo / "refs" / "main").write_text(snapshot)
    for name in ROBERTA_FILES:
        touch(repo / "snapshots" / snapshot / name)
    paths["roberta"] = repo
    return paths


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """The fake installation, pointed at as audiocraft would find it: $AUDIOCRAFT_REFERENCE_DIR, $TF_PYTHON_EXE,
    the packages on sys.path, torch hub's dir and the Hugging Face cache (offline)."""
    import huggingface_hub.constants
    import torch

    paths = fake_installation(tmp_path / "installed")
    monkeypatch.setenv("AUDIOCRAFT_REFERENCE_DIR", str(paths["reference"]))
    monkeypatch.setenv("TF_PYTHON_EXE", sys.executable)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.syspath_prepend(str(paths["site"]))
    monkeypatch.setattr(torch.hub, "_hub_dir", str(paths["torch_home"] / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(paths["hf_cache"]))
    importlib.invalidate_caches()
    yield paths
    for name in [m for m in sys.modules if m.split(".")[0] in FAKE_PACKAGES]:  # imported from the fake site
        del sys.modules[name]


def evaluation_cfg(compose, fad_bin: Path, *extra: str):
    """The tiny LM with the paper's evaluation metrics (audiocraft's objective_eval: FAD, KL, CLAP) and chroma."""
    return compose(*TINY_LM, "solver/musicgen/evaluation=objective_eval", "evaluate.metrics.chroma_cosine=true",
                   f"metrics.fad.tf.bin={fad_bin}", *extra).cfg


def test_a_complete_installation_misses_nothing(compose, installed):
    assert missing_requirements(evaluation_cfg(compose, installed["fad_bin"])) == []


# item removed -> (the key the preflight names, what it says it looked for)
REMOVED = {
    "compute_fad": ("metrics.fad.tf.bin={fad_bin}", "{compute_fad}"),
    "vggish": ("metrics.fad.tf.model_path=//reference/fad/vggish_model.ckpt", "{vggish}"),
    "tensorflow": (f"TF_PYTHON_EXE={sys.executable}", "tensorflow importable by"),
    "apache_beam": (f"TF_PYTHON_EXE={sys.executable}", "apache_beam importable by"),
    "hear21passt": ("evaluate.metrics.kld=true", "module hear21passt.base20sec"),
    "passt_weights": ("metrics.kld.passt.pretrained_length=20", "{passt_weights}"),
    "laion_clap": ("evaluate.metrics.text_consistency=true", "module laion_clap"),
    "clap_checkpoint": (f"metrics.text_consistency.clap.model_path=//reference/clap/{CLAP_FILE}",
                        "{clap_checkpoint}"),
    "roberta": ("evaluate.metrics.text_consistency=true", f"{', '.join(ROBERTA_FILES)} of {ROBERTA} in {{hf_cache}}"),
}


@pytest.mark.parametrize("item", REMOVED)
def test_each_missing_item_is_named_with_its_key_and_where_it_was_looked_for(compose, installed, item):
    path = installed[item]
    shutil.rmtree(path) if path.is_dir() else path.unlink()
    importlib.invalidate_caches()
    (missing,) = missing_requirements(evaluation_cfg(compose, installed["fad_bin"]))
    key, looked_for = REMOVED[item]
    where = {k: str(v) for k, v in installed.items()}
    assert missing.key == key.format(**where)
    assert looked_for.format(**where) in missing.looked_for
    assert missing.how  # and how to get it


def test_the_preflight_names_every_missing_item_one_per_line(compose, installed, monkeypatch):
    installed["vggish"].unlink()
    monkeypatch.setenv("TF_PYTHON_EXE", str(installed["fad_bin"] / "no-python"))
    with pytest.raises(ConfigError) as error:
        check_generation_metrics(evaluation_cfg(compose, installed["fad_bin"], "metrics.kld.model=vggish"))
    message = str(error.value)
    lines = message.splitlines()
    assert lines[0].startswith("the evaluate stage's metrics need 3 thing(s) that are not here (//reference/ is "
                               "audiocraft's reference dir, $AUDIOCRAFT_REFERENCE_DIR: here ")
    assert [line[:6] for line in lines[1:]] == ["  (1) ", "  (2) ", "  (3) "]  # one item per line
    assert "(1) metrics.fad.tf.model_path=//reference/fad/vggish_model.ckpt: the VGGish checkpoint" in message
    assert f"looked for {installed['vggish']}); download https://storage.googleapis.com/audioset/" in message
    assert f"(2) TF_PYTHON_EXE={installed['fad_bin'] / 'no-python'}: " in message
    assert "(3) metrics.kld.model=vggish: audiocraft computes KL with the PaSST classifier only" in message


def test_metrics_that_need_no_download_need_nothing_even_offline(compose, monkeypatch, tmp_path):
    monkeypatch.setenv("AUDIOCRAFT_REFERENCE_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("TF_PYTHON_EXE", str(tmp_path / "no-python"))
    cfg = compose(*TINY_LM, "evaluate.metrics.base=true", "evaluate.metrics.chroma_cosine=true").cfg
    assert missing_requirements(cfg) == []  # the CPU profile's evaluation
    assert missing_requirements(compose(*TINY_LM, "evaluate.metrics.fad=true").cfg)  # FAD alone: needs its files
    other = compose(*TINY_LM, "evaluate.metrics.chroma_cosine=true", "metrics.chroma_cosine.model=chroma_other").cfg
    with pytest.raises(ConfigError, match="metrics.chroma_cosine.model=chroma_other: audiocraft computes chroma "
                                          "cosine with chroma_base only"):
        check_generation_metrics(other)


def test_the_solver_is_not_built_while_a_metric_misses_something(compose, monkeypatch, tmp_path):
    """Through audiocraft's `train.get_solver`, the function our Dora main calls (which prints the ConfigError as
    `mmd_audiocraft: config error: ...`): refused before the codec is loaded or the LM built."""
    from mmd_audiocraft.integration.seams import install_solver_selection
    from mmd_audiocraft.train import audiocraft_train

    install_solver_selection()
    monkeypatch.setenv("AUDIOCRAFT_REFERENCE_DIR", str(tmp_path))
    xp = compose(*TINY_LM, "compression_model_checkpoint=//sig/0badc0de", "evaluate.metrics.text_consistency=true")
    with xp.enter(), pytest.raises(ConfigError, match=r"^the evaluate stage's metrics need \d thing\(s\)"):
        audiocraft_train.get_solver(xp.cfg)


def test_execute_only_needs_a_model_to_run(compose):
    def refusal(*overrides) -> str:
        with pytest.raises(ConfigError) as error:
            check_execute_only(compose(*TINY_LM, *overrides).cfg)
        return str(error.value)

    assert refusal("execute_only=evaluate") == (
        "execute_only=evaluate runs one stage of a trained model, and continue_from is not set: use "
        "`dora -P mmd_audiocraft run -f SIG execute_only=evaluate execute_inplace=true` (in that XP, on its own "
        "checkpoint; writes only evaluate.log.0 there) or `dora -P mmd_audiocraft run -f SIG "
        "continue_from=//sig/SIG execute_only=evaluate` (a new XP that logs the evaluate metrics in its "
        "history.json)")  # followed as typed in tests/test_evaluate_only.py
    assert refusal("execute_only=train") == "execute_only=train: expected one of generate, evaluate, valid"
    message = refusal("execute_only=evaluate", "continue_from=//sig/0badc0de")
    assert message.startswith("continue_from=//sig/0badc0de: ") and "/xps/0badc0de has no checkpoint.th" in message
    check_execute_only(compose(*TINY_LM, "execute_only=evaluate", "execute_inplace=true").cfg, resuming=True)
    assert refusal("execute_only=evaluate", "execute_inplace=true").startswith(  # no checkpoint: nothing to run
        "execute_only=evaluate execute_inplace=true: this XP (SIG) has no checkpoint.th, so there are no trained "
        "weights to run")
    check_execute_only(compose(*TINY_LM).cfg)


# -- the CPU profile's evaluation grid, end to end ----------------------------------------------------------------
DRIVER = r"""
import contextlib, io, json, os, shutil, sys
from pathlib import Path
import dora.shep
from dora.__main__ import main as dora_main

codec_checkpoint, lm_folder, work = sys.argv[1:4]
events = []
dora.shep.Shepherd._submit = lambda self, job_array: events.append([s.xp.sig for s in job_array.sheeps])
import mmd_audiocraft.integration.grid_check as grid_check
grid_check.grid_problems = lambda main, explorer: []  # no SLURM here: the check itself is tests/test_grid_check.py

def dora(*args):
    out = io.StringIO()
    sys.argv = ["dora", "-P", "mmd_audiocraft", *args]
    with contextlib.redirect_stdout(out):
        dora_main()
    return out.getvalue()

from mmd_audiocraft.grids import _chain, _paper, mmd_musicgen_eval
results = {"before": dora("grid", "mmd_musicgen_eval", "--init")}  # nothing trained: every evaluation waits
lm_args = _paper.lm_overrides("mmd_delay", {})  # Table 2's MMD LM, as grid mmd_musicgen launches it
codec, lm = _chain.xp_of(_paper.codec_overrides("mmd_delay")), _chain.xp_of(lm_args)
evaluation = _chain.xp_of(mmd_musicgen_eval.evaluation_overrides(lm_args))
for xp, files in ((codec, [codec_checkpoint]), (lm, [f"{lm_folder}/checkpoint.th", f"{lm_folder}/history.json"])):
    xp.folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copy(f, xp.folder)
events.clear()
results["after"] = dora("grid", "mmd_musicgen_eval", "--init")
results["submitted"] = list(events)

from audiocraft.metrics import ChromaCosineSimilarityMetric
import numpy as np
compared, stock_update = [], ChromaCosineSimilarityMetric.update
def update(self, preds, targets, sizes, sample_rates):
    compared.append({"preds": preds.numpy(), "targets": targets.numpy(), "sizes": sizes.numpy(),
                     "sample_rates": sample_rates.numpy()})
    return stock_update(self, preds, targets, sizes, sample_rates)
ChromaCosineSimilarityMetric.update = update
import multiprocessing
multiprocessing.set_start_method(None, force=True)  # `dora grid` set it; audiocraft's main sets it once per process
dora("run", "-f", evaluation.sig)
np.savez(Path(work) / "chroma_inputs.npz", **{f"{k}_{i}": v for i, c in enumerate(compared) for k, v in c.items()})
results.update(codec=codec.sig, lm=lm.sig, evaluation=evaluation.sig, folder=str(evaluation.folder),
               argv=list(evaluation.argv), batches=len(compared))

from mmd_audiocraft.apps.compare import compare, format_compare_table
from mmd_audiocraft.train import main
shutil.copy(Path(codec_checkpoint).parent / "history.json", codec.folder)
for xp in (codec, lm):
    main.init_xp(xp)  # their argv, as `dora grid --init` writes it
results["compare"] = compare([str(codec.folder)])
results["table"] = format_compare_table(results["compare"])
print("@@RESULTS@@" + json.dumps(results))
"""


@pytest.fixture(scope="module")
def cpu_evaluation(tmp_path_factory, tiny_corpus, lm_codec, tiny_lm) -> dict:
    work = tmp_path_factory.mktemp("lm_eval")
    env = dora_env(work / "dora", tiny_corpus, MMD_GRID_PROFILE="cpu")
    results = run_driver(["-c", DRIVER, str(lm_codec[1] / "checkpoint.th"), str(tiny_lm), str(work)], env, work)
    results["work"], results["folder"] = work, Path(results["folder"])
    return results


@pytest.mark.slow
def test_the_grid_evaluates_each_lm_once_it_has_finished(cpu_evaluation):
    before, after = cpu_evaluation["before"], cpu_evaluation["after"]
    assert before.count("waits for LM") == 6  # Tables 2 and 5: 4 + 3 LMs, the delay LM shared by both
    assert f"waits for LM {cpu_evaluation['lm']}" in before
    assert after.count("waits for LM") == 5 and f"waits for LM {cpu_evaluation['lm']}" not in after
    assert cpu_evaluation["submitted"] == [[cpu_evaluation["evaluation"]]]  # that evaluation alone
    argv = cpu_evaluation["argv"]
    assert f'continue_from="//sig/{cpu_evaluation["lm"]}"' in argv and 'execute_only="evaluate"' in argv
    assert f'compression_model_checkpoint="//sig/{cpu_evaluation["codec"]}"' in argv


@pytest.mark.slow
def test_the_evaluate_stage_logs_the_lms_cross_entropy_and_chroma_cosine(cpu_evaluation):
    folder = cpu_evaluation["folder"]
    (epoch,) = history(folder)
    assert set(epoch) == {"evaluate"}
    metrics = epoch["evaluate"]
    log = (folder / "evaluate.log.0").read_text()
    assert f"Continuing from provided checkpoint: //sig/{cpu_evaluation['lm']}" in log
    assert not (folder / "checkpoint.th").exists()  # an evaluation writes no checkpoint
    # one batch of 4 excerpts: audiocraft's ce is the mean of the per-codebook ce, ppl its exponential
    per_codebook = [metrics[f"ce_q{k}"] for k in range(1, 5)]
    assert metrics["ce"] == pytest.approx(sum(per_codebook) / 4, rel=1e-6)
    assert metrics["ppl"] == pytest.approx(math.exp(metrics["ce"]), rel=1e-5)
    assert 0 < metrics["ce"] < 2 * math.log(128)  # nats per code over 128-entry codebooks, an LM of 8 updates
    assert 0.0 <= metrics["chroma_cosine"] <= 1.0  # argmax chroma: one-hot vectors, cosine 0 or 1 per frame
    assert cpu_evaluation["batches"] == 1
    inputs = np.load(cpu_evaluation["work"] / "chroma_inputs.npz")
    sample_rate = int(inputs["sample_rates_0"][0])
    expected, frames = chroma_cosine(inputs["preds_0"], inputs["targets_0"], inputs["sizes_0"], sample_rate)
    assert inputs["preds_0"].shape == inputs["targets_0"].shape == (4, 1, 32000)  # 2 s at 16 kHz
    assert abs(metrics["chroma_cosine"] - expected) <= 1 / frames  # a near-tie may flip one frame's argmax
    # the reference excerpts change pitch class: the value depends on the generated audio (one run: the 8-update
    # LM's greedy samples held one pitch class the references never had, and both computations gave 0)
    assert len({int(c) for wav in inputs["targets_0"] for c in argmax_chroma(wav[0], sample_rate)}) > 1


N_FFT = 2 ** 14  # audiocraft's default metrics.chroma_cosine: radix2_exp 14, 12 chroma, argmax


def argmax_chroma(wav, sample_rate: int, n_fft: int = N_FFT):
    """The dominant pitch class (0 = C) of each frame of a mono `wav` [T] (T >= n_fft): a centred, reflect-padded
    periodic-Hann STFT with hop n_fft / 4, its power spectrum through librosa's chroma filters (tuning 0)."""
    import librosa

    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    bank = librosa.filters.chroma(sr=sample_rate, n_fft=n_fft, tuning=0, n_chroma=12)
    padded = np.pad(wav.astype(np.float64), n_fft // 2, mode="reflect")
    starts = range(0, len(padded) - n_fft + 1, n_fft // 4)
    power = np.stack([np.abs(np.fft.rfft(window * padded[s:s + n_fft])) ** 2 for s in starts], axis=1)
    return (bank @ power).argmax(axis=0)


def chroma_cosine(preds, targets, sizes, sample_rate: int, n_fft: int = N_FFT) -> tuple[float, int]:
    """Mean over frames of the cosine between the one-hot argmax chromas of `preds` and `targets` [B, 1, T] (1 where
    their pitch classes agree, else 0), over the first ceil(size / hop) frames of each item, as MusicGen's chroma
    cosine metric defines it; and the number of frames."""
    hop = n_fft // 4
    agree = total = 0
    for pred, target, size in zip(preds, targets, sizes):
        t = math.ceil(int(size) / hop)
        agree += int((argmax_chroma(pred[0], sample_rate)[:t] == argmax_chroma(target[0], sample_rate)[:t]).sum())
        total += t
    return agree / total, total


@pytest.mark.slow
def test_compare_shows_the_evaluation_beside_its_lm(cpu_evaluation):
    (epoch,) = history(cpu_evaluation["folder"])
    (row,) = cpu_evaluation["compare"]["xps"]
    (lm,) = row["lm"]
    assert lm["sig"] == cpu_evaluation["lm"] and lm["modeling"] == "delay"
    logged = epoch["evaluate"]
    assert lm["evaluation"] == {"sig": cpu_evaluation["evaluation"], "epoch": 1,
                                "chroma_cosine": logged["chroma_cosine"], "ce": logged["ce"], "ppl": logged["ppl"]}
    table = cpu_evaluation["table"].split("LM evaluations", 1)[1].splitlines()
    assert table[1].split()[2:] == ["chroma", "delay", "eval", "ce", "delay", "eval", "ppl", "delay"]
    assert table[2].split()[2:] == [format(logged["chroma_cosine"], ".3f"), format(logged["ce"], ".4f"),
                                    format(logged["ppl"], ".2f")]
