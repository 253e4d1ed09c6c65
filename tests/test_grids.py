"""The paper's Dora grids: `dora -P mmd_audiocraft grid NAME --dry_run --init` for each, in a temporary Dora
dir, and the codec -> LM chaining (LMs point at the codec grids' own signatures and wait for them).

Dora's CLI is run in one subprocess for all grids (importing audiocraft costs ~15 s per process); the driver
records the XPs each `dora grid` lists, and replaces SLURM submission by a record of what would be submitted.
"""
from __future__ import annotations

import json
import re
import sys

import pytest

from .conftest import dora_env, run_driver

pytestmark = pytest.mark.slow

CODEC_GRIDS = {"mmd_codec_weights": 5, "mmd_codec_kernels": 4, "mmd_codec_decoding": 3,
               "mmd_codec_quantizers": 6, "mmd_codec_finetune": 2}
LM_GRIDS = {"mmd_musicgen": 4, "mmd_musicgen_quantizers": 3}

DRIVER = r"""
import contextlib, dataclasses, io, json, os, sys
import dora.grid, dora.shep
from dora.__main__ import main as dora_main

codec_grids, lm_grids = json.loads(sys.argv[1])
listed, submitted, slurm, folders = {}, [], {}, []
stock_run_grid = dora.grid.run_grid

def recording_run_grid(main, explorer, grid_name, *args, **kwargs):
    sheeps = stock_run_grid(main, explorer, grid_name, *args, **kwargs)
    listed[grid_name.split("@")[0]] = [{"sig": s.xp.sig, "argv": list(s.xp.argv)} for s in sheeps]
    folders.append(grid_name)  # NAME@SETTING: one grid folder per setting of the inputs
    return sheeps

dora.grid.run_grid = recording_run_grid
def record_submission(self, job_array):
    for sheep in job_array.sheeps:
        submitted.append(sheep.xp.sig)
        slurm[sheep.xp.sig] = dataclasses.asdict(job_array.slurm_config)

dora.shep.Shepherd._submit = record_submission
import mmd_audiocraft.integration.grid_check as grid_check
grid_check.grid_problems = lambda main, explorer: []  # what the check finds: tests/test_grid_check.py

def grid(name, *flags):
    out = io.StringIO()
    sys.argv = ["dora", "-P", "mmd_audiocraft", "grid", name, *flags]
    with contextlib.redirect_stdout(out):
        dora_main()
    return {"stdout": out.getvalue(), "xps": listed.pop(name)}

results = {name: grid(name, "--dry_run", "--init") for name in codec_grids + lm_grids}

from mmd_audiocraft.grids import _chain, _paper
from mmd_audiocraft.train import main

def finish_baseline():  # pretend the baseline codec of the current profile finished
    codec = _chain.xp_of(_paper.codec_overrides("baseline"))
    (codec.folder / "checkpoint.th").write_bytes(b"")
    (codec.folder / "history.json").write_text(json.dumps([{"train": {}}] * int(codec.cfg.optim.epochs)))
    return codec.sig

results["finished_codec"] = finish_baseline()
results["rerun"] = grid("mmd_musicgen")  # a real (not dry) run: submissions are recorded, not sent
results["rerun"]["submitted"], results["rerun"]["slurm"] = list(submitted), dict(slurm)

# The LMs' evaluations (paper profile): refused without the metrics' downloads, before anything is submitted.
try:
    grid("mmd_musicgen_eval", "--dry_run")
    results["eval_refusal"] = None
except SystemExit as exc:
    results["eval_refusal"] = str(exc)
import mmd_audiocraft.integration.preflight as preflight
events, stock_check, stock_submit = [], preflight.check_generation_metrics, dora.shep.Shepherd._submit
preflight.check_generation_metrics = lambda cfg: events.append(["preflight", str(cfg.continue_from)])
def submit_event(self, job_array):
    events.append(["submit", [s.xp.sig for s in job_array.sheeps], job_array.slurm_config.gpus])
dora.shep.Shepherd._submit = submit_event
for lm in (_paper.lm_overrides("baseline", {}), _paper.lm_overrides("baseline", _paper.FLATTEN)):
    xp = _chain.xp_of(lm)  # pretend the two LMs on the baseline codec finished
    xp.folder.mkdir(parents=True, exist_ok=True)
    (xp.folder / "checkpoint.th").write_bytes(b"")
    (xp.folder / "history.json").write_text(json.dumps([{"train": {}}] * int(xp.cfg.optim.epochs)))
results["evals"] = grid("mmd_musicgen_eval", "--init")
results["eval_events"] = events
results["eval_lms"] = {name: _chain.xp_of(_paper.lm_overrides(codec, lm)).sig
                       for name, (codec, lm) in {**_paper.DECODING_LMS, **_paper.QUANTIZER_LMS}.items()}
preflight.check_generation_metrics, dora.shep.Shepherd._submit = stock_check, stock_submit

from audiocraft.environment import AudioCraftEnvironment
results["audiocraft_partitions"] = AudioCraftEnvironment.get_slurm_partitions(["team", "global"])

os.environ["MMD_GRID_PROFILE"] = "cpu"  # the same grids at CPU scale, on its own (the demo's) corpus
os.environ.pop("MMD_DSET")
results["cpu_codecs"] = grid("mmd_codec_decoding", "--dry_run", "--init")
results["cpu_finished_codec"] = finish_baseline()
submitted.clear(), slurm.clear()
results["cpu_lms"] = grid("mmd_musicgen")
results["cpu_lms"]["submitted"], results["cpu_lms"]["slurm"] = list(submitted), dict(slurm)
os.environ["MMD_GRID_PROFILE"] = "gpu"
try:
    grid("mmd_codec_decoding", "--dry_run")
except SystemExit as exc:  # the seam's one line (integration/seams.py)
    results["unknown_profile"] = str(exc)
os.environ.pop("MMD_GRID_PROFILE")
try:  # the paper profile with no data given
    grid("mmd_codec_decoding", "--dry_run")
except SystemExit as exc:
    results["no_data"] = str(exc)

paper = main.get_xp(["solver=compression/encodec_mmd_musicgen_32khz"]).cfg
pvq = main.get_xp(["solver=compression/encodec_mmd_musicgen_32khz", "model=encodec/encodec_pvq_nq4"]).cfg
results["paper"] = {
    "losses.inde": paper.losses.inde, "macro_batch": paper.inde.macro_batch, "every": paper.inde.every,
    "kernel": paper.inde.kernel, "pattern": paper.inde.codebooks_pattern.modeling,
    "epochs": paper.optim.epochs, "updates": paper.optim.updates_per_epoch, "betas": list(paper.optim.adam.betas),
    "lr": paper.optim.lr, "batch": paper.dataset.batch_size, "segment": paper.dataset.segment_duration,
    "sample_rate": paper.sample_rate, "n_q": paper.rvq.n_q, "bins": paper.rvq.bins,
    "hop": __import__("math").prod(paper.seanet.ratios), "quantizer": paper.encodec.quantizer,
    "pvq_quantizer": pvq.encodec.quantizer, "pvq": dict(pvq.pvq), "pvq_hop": __import__("math").prod(pvq.seanet.ratios),
}
results["folders"] = folders
print("@@RESULTS@@" + json.dumps(results))
"""


@pytest.fixture(scope="module")
def grids(tmp_path_factory) -> dict:
    dora_dir = tmp_path_factory.mktemp("grids") / "dora"
    empty = dora_dir.parent / "empty"  # no reference files, no Hugging Face cache; an interpreter without TensorFlow
    env = dora_env(dora_dir, AUDIOCRAFT_REFERENCE_DIR=str(empty), HF_HUB_CACHE=str(empty), TF_PYTHON_EXE=sys.executable,
                   MMD_DSET="audio/mmd_music_32khz")  # the paper profile trains on the data it is given
    results = run_driver(["-c", DRIVER, json.dumps([list(CODEC_GRIDS), list(LM_GRIDS)])], env, dora_dir.parent)
    results["dora_dir"] = dora_dir
    return results


def sigs(grids: dict, name: str) -> list[str]:
    return [xp["sig"] for xp in grids[name]["xps"]]


def codec_sig(argv: list[str]) -> str:
    (arg,) = [a for a in argv if a.startswith("compression_model_checkpoint=")]
    value = arg.split("=", 1)[1].strip('"')  # Dora quotes string values for Hydra
    assert value.startswith("//sig/"), arg
    return value[len("//sig/"):]


@pytest.mark.parametrize("name", [*CODEC_GRIDS, *LM_GRIDS])
def test_each_grid_lists_its_xps_with_distinct_signatures_and_inits_them(grids, name):
    expected = {**CODEC_GRIDS, **LM_GRIDS}[name]
    listed = sigs(grids, name)
    assert len(listed) == expected and len(set(listed)) == expected
    for xp in grids[name]["xps"]:  # --init wrote each XP's argv (the last grid listing it), for `dora run -f`
        assert (grids["dora_dir"] / "xps" / xp["sig"] / ".argv.json").is_file()
    assert "Traceback" not in grids[name]["stdout"]


def test_codec_grids_share_their_definitions(grids):
    weights, kernels = sigs(grids, "mmd_codec_weights"), sigs(grids, "mmd_codec_kernels")
    decoding, quantizers = sigs(grids, "mmd_codec_decoding"), sigs(grids, "mmd_codec_quantizers")
    baseline, mmd_delay = weights[0], weights[3]  # weights 0 and 1e3
    assert decoding[0] == baseline and decoding[2] == mmd_delay and decoding[1] not in weights
    assert kernels[0] == mmd_delay  # Gaussian kernel at 1e3 = the default MMD codec
    assert quantizers[:2] == [baseline, mmd_delay]
    assert not set(sigs(grids, "mmd_codec_finetune")) & set(weights)  # continue_from is part of the sig


def test_lms_point_at_the_codec_grids_signatures(grids):
    decoding = sigs(grids, "mmd_codec_decoding")
    lms = {name: xp["argv"] for name, xp in zip(("delay", "mmd_parallel", "mmd", "flatten"),
                                                 grids["mmd_musicgen"]["xps"])}
    assert [codec_sig(lms[n]) for n in ("delay", "mmd_parallel", "mmd", "flatten")] == [
        decoding[0], decoding[1], decoding[2], decoding[0]]
    assert 'codebooks_pattern.modeling="unroll"' in lms["flatten"]
    assert all("solver=musicgen/musicgen_base_32khz" in argv for argv in lms.values())
    quantizers = sigs(grids, "mmd_codec_quantizers")
    assert [codec_sig(xp["argv"]) for xp in grids["mmd_musicgen_quantizers"]["xps"]] == [
        quantizers[0], quantizers[2], quantizers[4]]  # RVQ, PVQ, PVQ w/ dropout, no MMD


def test_lms_wait_for_unfinished_codecs_and_are_scheduled_once_they_finish(grids):
    first = grids["mmd_musicgen"]
    for xp in first["xps"]:  # nothing trained yet: every LM waits, and is shown so in the table
        assert re.search(rf"LM \w+ \({xp['sig']}\) waits for codec {codec_sig(xp['argv'])}", first["stdout"])
    table = first["stdout"].split("Monitoring Grid", 1)[1]
    assert len(re.findall(r"waiting", table)) == 4

    rerun, finished = grids["rerun"], grids["finished_codec"]
    on_finished = {xp["sig"] for xp in rerun["xps"] if codec_sig(xp["argv"]) == finished}
    assert len(on_finished) == 2  # delay and flatten LMs read the baseline codec
    assert set(rerun["submitted"]) == on_finished  # only they are submitted, each once
    assert len(rerun["submitted"]) == 2
    for xp in rerun["xps"]:
        waits = f"({xp['sig']}) waits for codec" in rerun["stdout"]
        assert waits == (xp["sig"] not in on_finished)
    assert "ready" in rerun["stdout"].split("Monitoring Grid", 1)[1]


def test_paper_profile_asks_for_the_papers_gpus_by_default(grids):
    for config in grids["rerun"]["slurm"].values():  # the LMs submitted above
        assert config["gpus"] == 32 and config["partition"] == grids["audiocraft_partitions"]
        assert config["mem_per_gpu"] == 40 and config["cpus_per_gpu"] == 10  # audiocraft's and Dora's defaults


def test_cpu_profile_runs_the_same_grids_on_tiny_configs_and_one_cpu(grids):
    paper, cpu = grids["mmd_codec_decoding"]["xps"], grids["cpu_codecs"]["xps"]
    assert len(cpu) == len(paper) and not {xp["sig"] for xp in cpu} & {xp["sig"] for xp in paper}
    for paper_xp, cpu_xp in zip(paper, cpu):  # same experiment, other base: the grid's own overrides carry over
        assert "solver=compression/encodec_mmd_tiny" in cpu_xp["argv"]
        assert "encodec.renormalize=false" in cpu_xp["argv"]  # MusicGen refuses renormalising codecs
        assert set(paper_xp["argv"]) - set(cpu_xp["argv"]) == {
            "solver=compression/encodec_mmd_musicgen_32khz", "dset=audio/mmd_music_32khz"}
    lms = grids["cpu_lms"]
    assert len(lms["submitted"]) == 2  # delay and flatten, on the finished CPU-scale baseline
    assert all("fsdp.use=true" in xp["argv"] for xp in grids["mmd_musicgen"]["xps"])  # paper: FSDP on GPUs
    for xp in lms["xps"]:
        assert "solver=musicgen/musicgen_mmd_tiny" in xp["argv"] and "fsdp.use=true" not in xp["argv"]
        assert codec_sig(xp["argv"]) in {x["sig"] for x in cpu}
    for config in lms["slurm"].values():
        assert (config["gpus"], config["cpus_per_gpu"], config["mem_per_gpu"], config["time"]) == (0, 1, 3, 15)
        assert config["partition"] == grids["audiocraft_partitions"]
    assert "MMD_GRID_PROFILE='gpu'" in grids["unknown_profile"] and "'cpu'" in grids["unknown_profile"]


def test_paper_profile_refuses_without_your_data_and_each_setting_has_its_own_grid_folder(grids):
    assert grids["no_data"] == (  # one line, as `dora grid` prints it
        "dora grid mmd_codec_decoding: MMD_GRID_PROFILE=paper trains on your 32 kHz music: export "
        "MMD_DATA=/path/to/manifests (folders train/ valid/ evaluate/ generate/ of audiocraft manifests) or "
        "MMD_DSET=audio/NAME (a dset config); docs/DATA.md says how to make them")
    folders = grids["folders"]
    paper = [f for f in folders if f.startswith("mmd_codec_decoding@paper-")]
    assert paper and len(set(paper)) == 1  # MMD_DSET set: the paper setting, hashed
    assert "mmd_codec_decoding@cpu" in folders  # the CPU profile with its own corpus: no inputs to hash
    assert all("@" in f for f in folders)


def test_paper_codec_config_composes_with_the_papers_settings(grids):
    paper = grids["paper"]
    assert paper["losses.inde"] == 1000 and paper["macro_batch"] == 32 and paper["every"] == 32
    assert (paper["kernel"], paper["pattern"]) == ("gaussian", "delay")
    assert paper["epochs"] * paper["updates"] == 600_000
    assert paper["betas"] == [0.5, 0.9] and paper["lr"] == 3e-4 and paper["batch"] == 64
    assert paper["segment"] == 1 and paper["sample_rate"] == 32000 and paper["hop"] == 640
    assert (paper["n_q"], paper["bins"], paper["quantizer"]) == (4, 2048, "rvq")
    assert paper["pvq_quantizer"] == "pvq" and paper["pvq_hop"] == 640
    assert paper["pvq"] == {"n_q": 4, "bins": 2048, "decay": 0.99, "kmeans_init": True, "kmeans_iters": 50,
                            "threshold_ema_dead_code": 2, "hierarchical_dropout": False}


def test_evaluation_grid_refuses_without_the_metrics_downloads_naming_each(grids):
    message = grids["eval_refusal"]  # offline, nothing installed: FAD, KL and CLAP all miss something
    assert message.startswith("mmd_audiocraft: config error: the evaluate stage's metrics need 7 thing(s)")
    for named in ("metrics.fad.tf.bin=None: Google Research's frechet_audio_distance code",
                  "metrics.fad.tf.model_path=//reference/fad/vggish_model.ckpt: the VGGish checkpoint FAD embeds "
                  f"audio with (looked for {grids['dora_dir'].parent}/empty/fad/vggish_model.ckpt)",
                  f"TF_PYTHON_EXE={sys.executable}: the interpreter audiocraft runs FAD with: it cannot import "
                  "tensorflow, tf_slim, apache_beam",
                  "evaluate.metrics.kld=true: the package hear21passt",
                  "evaluate.metrics.text_consistency=true: the package laion_clap",
                  "metrics.text_consistency.clap.model_path=//reference/clap/music_audioset_epoch_15_esc_90.14.pt",
                  "evaluate.metrics.text_consistency=true: roberta-base"):
        assert named in message
    assert len(message.splitlines()) == 1 + 7  # the summary, then one line per missing item


def test_each_lm_gets_one_evaluation_checked_before_anything_is_submitted(grids):
    xps, lms = grids["evals"]["xps"], grids["eval_lms"]
    lm_grids = set(sigs(grids, "mmd_musicgen")) | set(sigs(grids, "mmd_musicgen_quantizers"))
    assert set(lms.values()) == lm_grids and len(lm_grids) == 6  # Table 2's delay LM is Table 5's RVQ LM
    evaluated = {}
    for xp in xps:
        (spec,) = [a.split("=", 1)[1].strip('"') for a in xp["argv"] if a.startswith("continue_from=")]
        evaluated[spec[len("//sig/"):]] = xp["sig"]
        assert 'execute_only="evaluate"' in xp["argv"] and "solver/musicgen/evaluation=objective_eval" in xp["argv"]
        assert "generate.lm.top_k=250" in xp["argv"] and "solver=musicgen/musicgen_base_32khz" in xp["argv"]
    assert set(evaluated) == lm_grids and len(xps) == 6  # one evaluation per LM XP of the LM grids
    events = grids["eval_events"]
    kinds = [e[0] for e in events]
    first_submit = kinds.index("submit")
    assert kinds[:first_submit] == ["preflight"] * 6 and "preflight" not in kinds[first_submit:]
    assert sorted(e[1] for e in events[:first_submit]) == sorted(f"//sig/{s}" for s in lm_grids)
    finished = {lms["delay"], lms["flatten"]}  # the LMs made to look finished
    (submit,) = events[first_submit:]
    assert sorted(submit[1]) == sorted(evaluated[s] for s in finished) and submit[2] == 4  # audiocraft's eval GPUs
    assert grids["evals"]["stdout"].count("waits for LM") == 4
