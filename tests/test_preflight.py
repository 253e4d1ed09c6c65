"""Configs checked against the run before audiocraft builds the solver (mmd_audiocraft/integration/preflight.py).

Batch sizes over processes, and every way a user names a codec (`continue_from`, `compression_model_checkpoint`):
each either works (the solver is built, and the weights it restores are the source's, compared tensor by tensor)
or fails before training with one ConfigError naming the key, its value and what to write instead. Solvers are
built in this process through audiocraft's `train.get_solver`, the function our Dora main calls; the last tests
run real `dora -P mmd_audiocraft run` processes, 2 gloo processes included.
"""
from __future__ import annotations

import json
import re
import shutil

import pytest
import torch

from mmd_audiocraft.integration.errors import ConfigError
from mmd_audiocraft.integration.preflight import check_batch_sizes

from .conftest import ROOT, TINY, TINY_LM, finish, load_checkpoint, start_dora

CODEC = ["solver=compression/encodec_mmd_tiny", "dataset.batch_size=4", "dataset.train.num_samples=8",
         "dataset.valid.num_samples=4", "dataset.evaluate.num_samples=4"]


@pytest.fixture
def build(compose, one_thread):
    """build(*overrides) -> the solver our main would build (restored, i.e. with continue_from loaded)."""
    from mmd_audiocraft.integration.seams import install_checkpoint_loading, install_solver_selection
    from mmd_audiocraft.train import audiocraft_train

    install_solver_selection()
    install_checkpoint_loading()  # as our main does: audiocraft's checkpoints on torch >= 2.6

    def _build(*overrides):
        xp = compose(*overrides)
        with xp.enter():
            solver = audiocraft_train.get_solver(xp.cfg)
            solver.restore()
        return solver
    return _build


def fails(build, *overrides) -> str:
    with pytest.raises(ConfigError) as error:
        build(*overrides)
    return str(error.value)


# -- batch sizes and shards over processes ----------------------------------------------------------------------
def test_shipped_tiny_configs_split_over_two_processes(compose):
    for cfg in (compose("solver=compression/encodec_mmd_tiny").cfg, compose(*TINY_LM).cfg):
        sizes = [cfg.dataset.batch_size] + [cfg.dataset[s].batch_size for s in ("train", "valid", "evaluate",
                                                                                  "generate")
                                            if "batch_size" in cfg.dataset[s]]
        assert all(size % 2 == 0 for size in sizes), sizes  # audiocraft's rule (train.get_solver)
        check_batch_sizes(cfg, 2)


@pytest.mark.parametrize("override, world, message", [
    ("dataset.generate.batch_size=1", 2, "dataset.generate.batch_size=1 cannot be split over 2 processes: "
                                         "audiocraft divides each batch size by the number of processes; use a "
                                         "multiple of 2, e.g. dataset.generate.batch_size=2"),
    ("dataset.batch_size=15", 2, "e.g. dataset.batch_size=16"),
    ("dataset.evaluate.batch_size=8", 3, "dataset.evaluate.batch_size=8 cannot be split over 3 processes"),
    ("dataset.batch_size=0", 1, "dataset.batch_size=0: expected a positive integer"),
    ("dataset.evaluate.batch_size=null", 1, "dataset.evaluate.batch_size=None: expected a positive integer"),
    ("dataset.valid.num_samples=1", 2, "dataset.valid.num_samples=1 leaves a process without data: the valid "
                                       "split is sharded over the 2 processes; use dataset.valid.num_samples=2"),
])
def test_batch_size_that_cannot_be_split_names_key_value_and_processes(compose, override, world, message):
    cfg = compose("solver=compression/encodec_mmd_tiny", "dataset.batch_size=24", "dataset.evaluate.batch_size=6",
                  "dataset.generate.batch_size=6", override).cfg
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_batch_sizes(cfg, world)


# -- continue_from: the codec a compression XP starts from -------------------------------------------------------
@pytest.fixture
def sources(trained_codec, tmp_path, compose):
    """The shipped tiny codec's XP in every form a user can name it, plus its exported package."""
    from audiocraft.utils.export import export_encodec

    from mmd_audiocraft.integration.seams import trusting_torch_load
    from mmd_audiocraft.train import main

    _, xp = trained_codec
    (main.dora.dir / "xps").mkdir(parents=True)
    shutil.copytree(xp, main.dora.dir / "xps" / xp.name)  # //sig/ looks in this test's Dora dir
    with trusting_torch_load():
        exported = export_encodec(xp / "checkpoint.th", tmp_path / "export" / "compression_state_dict.bin")
    weights = load_checkpoint(xp / "checkpoint.th")["best_state"]["model"]
    return {"sig": f"//sig/{xp.name}", "folder": str(xp), "path": str(xp / "checkpoint.th"),
            "exported": f"//pretrained/{exported}", "exported_folder": f"//pretrained/{exported.parent}",
            "exported_path": str(exported), "weights": weights}


def trained_tensors(state: dict) -> dict:
    return {k: v for k, v in state.items() if "._codebook." not in k}  # codebooks are EMA buffers


@pytest.mark.slow
@pytest.mark.parametrize("form", ["sig", "folder", "path", "exported", "exported_folder"])
def test_continue_from_every_form_starts_from_the_source_weights(build, sources, form):
    solver = build(*CODEC, f"continue_from={sources[form]}")
    given, loaded = trained_tensors(sources["weights"]), trained_tensors(solver.model.state_dict())
    assert loaded.keys() == given.keys() and all(torch.equal(loaded[k], given[k]) for k in given)


@pytest.mark.slow
def test_continue_from_mistakes_fail_before_the_solver_with_what_to_write(build, sources, tmp_path):
    exported_path = sources["exported_path"]
    assert f"write continue_from=//pretrained/{exported_path}" in fails(build, *CODEC,
                                                                        f"continue_from={exported_path}")
    message = fails(build, *CODEC, f"continue_from=//pretrained/{sources['path']}")
    assert f"is a training checkpoint, not an exported package: write continue_from={sources['path']}" in message
    message = fails(build, *CODEC, "continue_from=//sig/0badc0de")
    assert re.search(r"continue_from=//sig/0badc0de: XP folder \S+/xps/0badc0de does not exist: give the SIG", message)
    (tmp_path / "dora" / "xps" / "5eed0000").mkdir()
    assert "has no checkpoint.th yet: run that XP" in fails(build, *CODEC, "continue_from=//sig/5eed0000")
    missing = tmp_path / "nowhere" / "compression_state_dict.bin"
    assert f"no such file or folder {missing}" in fails(build, *CODEC, f"continue_from=//pretrained/{missing}")
    assert "not DAC" in fails(build, *CODEC, "continue_from=//pretrained/dac_44khz")
    message = fails(build, *CODEC, "seanet.dimension=64", f"continue_from={sources['sig']}")
    assert message.startswith(f"continue_from={sources['sig']}: its weights do not fit the model this config builds")
    assert "[128, 32, 7] in the source, [128, 64, 7] here" in message and "use the solver config" in message


@pytest.mark.slow
def test_continue_from_a_hub_name_offline_names_the_local_alternatives(build, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty_hub"))
    message = fails(build, *CODEC, "continue_from=//pretrained/facebook/encodec_32khz")
    assert "facebook/encodec_32khz is not a local path, so it names a Hugging Face model, which needs the hub" \
        in message
    assert "huggingface-cli download facebook/encodec_32khz" in message
    assert "//pretrained//ABSOLUTE/PATH/compression_state_dict.bin" in message and "//sig/SIG" in message


@pytest.mark.slow
def test_a_resumed_xp_ignores_continue_from_like_audiocraft(build, compose, trained_codec):
    xp = compose(*CODEC, "continue_from=//sig/0badc0de")
    xp.folder.mkdir(parents=True)
    shutil.copy(trained_codec[1] / "checkpoint.th", xp.folder / "checkpoint.th")
    solver = build(*CODEC, "continue_from=//sig/0badc0de")  # resumes its own checkpoint: no error
    assert solver.epoch == 2


# -- compression_model_checkpoint: the codec an LM runs on -------------------------------------------------------
@pytest.mark.slow
def test_lm_codec_forms_build_and_mistakes_name_the_key(build, trained_codec, lm_codec, tmp_path):
    from audiocraft.utils.export import export_encodec

    from mmd_audiocraft.integration.seams import trusting_torch_load
    from mmd_audiocraft.train import main

    _, good = lm_codec
    (main.dora.dir / "xps").mkdir(parents=True)
    shutil.copytree(good, main.dora.dir / "xps" / good.name)
    with trusting_torch_load():
        exported = export_encodec(good / "checkpoint.th", tmp_path / "export" / "compression_state_dict.bin")
    codec_weights = trained_tensors(load_checkpoint(good / "checkpoint.th")["best_state"]["model"])
    for form in (f"//sig/{good.name}", str(good), str(good / "checkpoint.th"), f"//pretrained/{exported}"):
        solver = build(*TINY_LM, f"compression_model_checkpoint={form}")
        loaded = trained_tensors(solver.compression_model.state_dict())
        assert all(torch.equal(loaded[k], codec_weights[k]) for k in codec_weights), form

    key = "compression_model_checkpoint"
    assert fails(build, *TINY_LM).startswith(f"{key}=None: give the codec the LM runs on: {key}=//sig/SIG")
    renormalizing = str(trained_codec[1])
    message = fails(build, *TINY_LM, f"{key}={renormalizing}")
    assert message == (f"{key}={renormalizing}: this codec renormalizes its input (a scale per item), which "
                       "audiocraft's LM solvers do not support; train the codec with encodec.renormalize=false")
    assert f"write {key}=//pretrained/{exported}" in fails(build, *TINY_LM, f"{key}={exported}")
    assert "does not exist" in fails(build, *TINY_LM, f"{key}=//sig/0badc0de")
    sig = f"{key}=//sig/{good.name}"
    assert f"{sig} has 4 codebooks of 128 codes, which this LM config does not fit: set transformer_lm.card=128 (" \
        in fails(build, *TINY_LM, sig, "transformer_lm.card=64")
    assert "does not fit: set transformer_lm.n_q=4 (" in fails(build, *TINY_LM, sig, "transformer_lm.n_q=3")
    assert "sample_rate=32000 but the codec" in fails(build, *TINY_LM, sig, "sample_rate=32000")


@pytest.mark.slow
def test_an_lm_codec_mismatch_names_every_key_to_change_and_following_it_builds(build, compose, one_thread):
    """A 2-codebook codec under the 4-codebook tiny LM: the advice names transformer_lm.n_q and the pattern's
    delays together (setting n_q alone ends in audiocraft's bare assertion on the delays); following it exactly,
    the LM solver builds on that codec."""
    from .conftest import seeded_solver

    codec = compose(*CODEC, "rvq.n_q=2", "encodec.renormalize=false")
    untrained = seeded_solver(codec)  # a 2 x 128 codec in this Dora dir: the preflight only reads its shape
    with codec.enter():
        codec.folder.mkdir(parents=True, exist_ok=True)
        untrained.save_checkpoints()
    sig = f"compression_model_checkpoint=//sig/{codec.sig}"
    message = fails(build, *TINY_LM, sig)
    assert message.startswith(f"{sig} has 2 codebooks of 128 codes, which this LM config does not fit: set "
                              "transformer_lm.n_q=2 codebooks_pattern.delay.delays=[0,1] (they change together")
    advice = message.split(": set ", 1)[1].split(" (", 1)[0].split()
    solver = build(*TINY_LM, sig, *advice)
    assert (solver.model.n_q, solver.model.card) == (2, 128)
    assert solver.model.pattern_provider.delays == [0, 1]


# -- through the Dora main, in real processes --------------------------------------------------------------------
@pytest.mark.slow
def test_dora_runs_stop_before_training_with_one_line(tmp_path, tiny_corpus, trained_codec):
    """2 gloo processes with an odd batch; an LM on a renormalising codec: each process exits non-zero with our
    one-line message, before any training and without audiocraft's asserts (the other codec mistakes take the
    same path, tested in-process above)."""
    codec = trained_codec[1]
    shutil.copytree(codec, tmp_path / "lm" / "xps" / codec.name)  # its own Dora dir: the failed LM XP lands there
    runs = {
        "odd": start_dora(["run", "-d", "--ddp_workers", "2", *TINY, "dataset.batch_size=15"], tmp_path / "odd",
                          tiny_corpus),
        "lm": start_dora(["run", *TINY_LM, f"compression_model_checkpoint=//sig/{codec.name}"], tmp_path / "lm",
                        tiny_corpus),
    }
    expected = {
        "odd": "mmd_audiocraft: config error: dataset.batch_size=15 cannot be split over 2 processes",
        "lm": f"mmd_audiocraft: config error: compression_model_checkpoint=//sig/{codec.name}: this codec "
              "renormalizes its input",
    }
    for name, run in runs.items():
        output = finish(run, timeout=600, expect_ok=False)
        assert run.proc.returncode != 0, output[-3000:]
        assert expected[name] in output, output[-3000:]
        assert "Traceback" not in output and "AssertionError" not in output and "Train Summary" not in output


def test_recommended_config_is_the_tiny_codec_with_the_demos_recommended_overrides(compose):
    """The demo trains the recommended codec from overrides (so it is the sweep's XP); the shipped config that
    the README recommends must compose the very same settings."""
    from omegaconf import OmegaConf

    from mmd_audiocraft.apps.demo.run import RECOMMENDED_OVERRIDES, RECOMMENDED_SOLVER

    shipped = OmegaConf.to_container(compose(f"solver={RECOMMENDED_SOLVER}").cfg, resolve=True)
    overrides = OmegaConf.to_container(compose("solver=compression/encodec_mmd_tiny", *RECOMMENDED_OVERRIDES).cfg,
                                       resolve=True)
    assert shipped.pop("solver") == overrides.pop("solver") == "compression"
    assert shipped == overrides
    assert shipped["losses"]["inde"] == 1000 and shipped["inde"]["grad_ratio"] == 1


def test_demo_budget_halves_the_batch_and_the_sweep_budget_adds_no_override(compose):
    """The demo trains on batches of 8 (its 20-minute budget) for the same 400 updates; the sweep's budget adds no
    batch override, so its XPs keep the signatures of benchmarks/results/sweep_recommended.json."""
    from mmd_audiocraft.apps.demo.run import FULL, RECOMMENDED_OVERRIDES, SWEEP, common_args

    demo, sweep = compose(*common_args(FULL)).cfg, compose(*common_args(SWEEP)).cfg
    assert (demo.dataset.batch_size, demo.dataset.train.num_samples) == (8, 8 * 50)
    assert (sweep.dataset.batch_size, sweep.dataset.train.num_samples) == (16, 16 * 50)
    assert demo.optim.epochs * demo.optim.updates_per_epoch == sweep.optim.epochs * sweep.optim.updates_per_epoch == 400
    assert not any(a.startswith("dataset.batch_size=") for a in common_args(SWEEP))
    recorded = json.loads((ROOT / "benchmarks" / "results" / "sweep_recommended.json").read_text())
    for seed in (42, 43):  # the recommended setting's sweep XPs, as recorded
        xp = compose(*common_args(SWEEP, seed), *RECOMMENDED_OVERRIDES)
        assert xp.sig == recorded["runs"][f"grad_ratio=1 seed={seed}"]["xp"]


def test_a_missing_corpus_is_named_with_how_to_build_it(compose, monkeypatch, tmp_path):
    """The tiny configs read the demo's corpus: without it, one line saying how to build it, not audiocraft's
    FileNotFoundError traceback from inside the data loader."""
    from mmd_audiocraft.integration.preflight import check_before_build

    xp = compose(*CODEC)
    check_before_build(xp.cfg, world_size=1)  # the fixture corpus is there
    monkeypatch.setenv("MMD_AUDIOCRAFT_CORPUS", str(tmp_path / "nocorpus"))
    build_it = r"`python -m mmd_audiocraft\.apps\.demo\.corpus`"
    with pytest.raises(ConfigError, match=rf"datasource\.train={tmp_path}/nocorpus/music_16khz/train: no such "
                                          rf"manifest folder or file; .* {build_it}"):
        check_before_build(xp.cfg, world_size=1)


# -- FSDP where it cannot run (issue 30, item 4) ------------------------------------------------------------------
def test_fsdp_without_gpus_is_refused_before_building_and_the_advice_trains(compose, tiny_corpus, tmp_path):
    from mmd_audiocraft.integration.preflight import check_fsdp

    with pytest.raises(ConfigError) as error:  # the paper's LM settings on a machine without CUDA
        check_fsdp(compose(*TINY_LM, "device=cuda", "fsdp.use=true", "autocast=false").cfg)
    if not torch.cuda.is_available():
        assert str(error.value) == ("fsdp.use=true shards the model over CUDA GPUs (audiocraft's FSDP wrapper), and "
                                    "here no CUDA GPU is visible: set fsdp.use=false to train without sharding")
    dora_dir = tmp_path / "dora"
    refused = finish(start_dora(["run", *TINY, "fsdp.use=true"], dora_dir, tiny_corpus), expect_ok=False)
    assert ("mmd_audiocraft: config error: fsdp.use=true shards the model over CUDA GPUs (audiocraft's FSDP "
            "wrapper), and here device=cpu: set fsdp.use=false to train without sharding") in refused.splitlines()
    assert "Please upgrade Dora" not in refused and "Model hash" not in refused
    finish(start_dora(["run", *TINY, "fsdp.use=false"], dora_dir, tiny_corpus))  # the advice, as typed


# -- the paper's codec config names no data (issue 28, item 2) ----------------------------------------------------
def test_the_paper_codec_config_refuses_to_start_without_your_data(compose, tiny_corpus, tmp_path):
    from mmd_audiocraft.integration.preflight import check_datasource

    refused = finish(start_dora(["run", "solver=compression/encodec_mmd_musicgen_32khz"], tmp_path / "dora",
                                tiny_corpus), expect_ok=False)
    assert ("mmd_audiocraft: config error: datasource.train=null: no dataset given (the paper-scale configs name "
            "none, so that they never train on a corpus by accident): add dset=audio/NAME (a dset config) or "
            "datasource.train=, .valid=, .evaluate=, .generate= manifest folders with datasource.max_sample_rate "
            "and datasource.max_channels; docs/DATA.md") in refused.splitlines()
    assert "Model hash" not in refused
    # both forms it names pass the check (the 32 kHz corpus of the fixture stands for the user's)
    check_datasource(compose("solver=compression/encodec_mmd_musicgen_32khz", "dset=audio/mmd_music_32khz").cfg)
    folders = [f"datasource.{s}={tiny_corpus / 'music_32khz' / s}" for s in ("train", "valid", "evaluate", "generate")]
    check_datasource(compose("solver=compression/encodec_mmd_musicgen_32khz", *folders,
                             "datasource.max_sample_rate=32000", "datasource.max_channels=1").cfg)
