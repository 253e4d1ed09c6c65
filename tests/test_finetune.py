"""Fine-tuning an existing codec with `losses.inde` through every `continue_from` form audiocraft accepts.

`//sig/SIG` of a codec XP, a checkpoint path, `//pretrained/<exported compression_state_dict.bin>`, and
`//pretrained/facebook/encodec_32khz` (the paper's codec, from a Hugging Face cache built here offline with
random weights: transformers' current weight-norm key names break audiocraft's own conversion). The
fine-tuning runs use `optim.lr=0`, so their final parameters must be exactly the weights they were given, while
the independence loss still runs its forward and backward on the loaded codec.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from .conftest import ROOT, TINY, finish, history, load_checkpoint, start_dora, xp_dirs

pytestmark = pytest.mark.slow

SMALL = [*TINY, "dataset.batch_size=4", "dataset.valid.num_samples=4", "dataset.evaluate.num_samples=4"]
FINETUNE = [*SMALL, "losses.inde=1000", "optim.updates_per_epoch=1", "optim.lr=0"]
# The paper's codec config (encodec_large_nq4_s640, 32 kHz, adversary on), cut to one tiny update.
PAPER_CODEC = ["solver=compression/encodec_musicgen_32khz", "dset=audio/mmd_music_32khz", "device=cpu",
               "losses.inde=1000", "optim.lr=0", "optim.epochs=1", "optim.updates_per_epoch=1",
               "dataset.num_workers=0", "evaluate.num_workers=0", "dataset.batch_size=2",
               "dataset.segment_duration=0.5", "dataset.train.num_samples=2", "dataset.valid.num_samples=2",
               "dataset.evaluate.num_samples=1", "dataset.evaluate.batch_size=1", "dataset.generate.num_samples=1",
               "dataset.generate.batch_size=1", "dataset.generate.segment_duration=0.5", "generate.audio.format=wav"]
HF_CONFIG = dict(upsampling_ratios=[8, 5, 4, 4], target_bandwidths=[2.2], num_filters=64, sampling_rate=32_000,
                 codebook_size=2048, use_causal_conv=False, normalize=False, use_conv_shortcut=False)


def parameters(state: dict) -> dict:
    """The trained tensors of an EncodecModel state (codebooks are EMA buffers, updated by any forward)."""
    return {k: v for k, v in state.items() if "._codebook." not in k}


def fake_hf_cache(cache: Path) -> Path:
    """A Hugging Face hub cache holding `facebook/encodec_32khz` (its hyper-parameters, random weights)."""
    from transformers import EncodecConfig, EncodecModel

    torch.manual_seed(0)
    model = EncodecModel(EncodecConfig(**HF_CONFIG))
    with torch.no_grad():  # random codebooks at the latents' scale (the init leaves them at zero): real codes
        scale = float(model.encoder(0.1 * torch.randn(1, 1, 16000)).std())
        for layer in model.quantizer.layers:
            layer.codebook.embed.normal_(0.0, scale)
            layer.codebook.embed_avg.copy_(layer.codebook.embed)
    revision = "0" * 40
    repo = cache / "models--facebook--encodec_32khz"
    model.save_pretrained(repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    # a cache transformers 4.x has seen: otherwise its import "migrates" it under a tqdm bar, whose
    # multiprocessing lock fixes the start method that audiocraft then fails to set
    (cache / "version.txt").write_text("1")
    return repo / "snapshots" / revision


@pytest.fixture(scope="module")
def started(tmp_path_factory, tiny_corpus):
    """The source codec XP and the paper-codec fine-tuning, started side by side."""
    root = tmp_path_factory.mktemp("finetune")
    snapshot = fake_hf_cache(root / "hf")
    runs = {
        "source": start_dora(["run", *SMALL, "optim.updates_per_epoch=2"], root / "dora", tiny_corpus),
        "hf": start_dora(["run", *PAPER_CODEC, "continue_from=//pretrained/facebook/encodec_32khz"], root / "hf_dora",
                         tiny_corpus, env_extra={"HF_HUB_CACHE": str(root / "hf"), "HF_HUB_OFFLINE": "1"}),
    }
    yield root, runs, snapshot
    for run in runs.values():
        if run.proc.poll() is None:
            run.proc.kill()


def test_continue_from_sig_checkpoint_path_and_exported_package(started, tiny_corpus):
    from audiocraft.utils.export import export_encodec

    from mmd_audiocraft.integration.seams import trusting_torch_load

    root, runs, _ = started
    finish(runs["source"])
    (source,) = xp_dirs(root / "dora")
    given = parameters(load_checkpoint(source / "checkpoint.th")["best_state"]["model"])
    with trusting_torch_load():
        exported = export_encodec(source / "checkpoint.th", root / "export" / "compression_state_dict.bin")
    forms = {"sig": f"//sig/{source.name}", "path": str(source / "checkpoint.th"), "export": f"//pretrained/{exported}"}
    finetunes = {name: start_dora(["run", *FINETUNE, f"continue_from={value}"], root / "dora", tiny_corpus)
                 for name, value in forms.items()}
    outputs = {name: finish(run) for name, run in finetunes.items()}
    assert "Continuing from provided checkpoint" in outputs["sig"] + outputs["path"]
    assert "Loading a pretrained model" in outputs["export"]
    xps = [xp for xp in xp_dirs(root / "dora") if xp != source]
    assert len(xps) == 3
    for xp in xps:
        (epoch,) = history(xp)
        assert epoch["train"]["inde_grad_norm"] > 0  # the loss ran on the loaded codec
        final = parameters(load_checkpoint(xp / "checkpoint.th")["model"])
        assert final.keys() == given.keys()
        different = [k for k in given if not torch.equal(final[k], given[k])]
        assert not different, f"{xp.name}: not the source codec's weights: {different[:4]}"


def test_continue_from_hugging_face_encodec_32khz_offline(started):
    from safetensors.torch import load_file

    root, runs, snapshot = started
    output = finish(runs["hf"])
    assert "Getting pretrained compression model from HF facebook/encodec_32khz" in output
    (xp,) = xp_dirs(root / "hf_dora")
    (epoch,) = history(xp)
    assert epoch["train"]["inde"] != 0 and epoch["train"]["inde_grad_norm"] > 0
    assert epoch["train"]["usage_entropy_q0"] > 1  # the loaded codebooks are in use
    hf = list(load_file(snapshot / "model.safetensors").values())
    final = parameters(load_checkpoint(xp / "checkpoint.th")["model"])
    # every parameter of the fine-tuned codec is one of the Hugging Face tensors, value for value
    unmatched = [k for k, v in final.items() if not any(h.shape == v.shape and torch.equal(h, v) for h in hf)]
    assert not unmatched, f"{len(unmatched)} of {len(final)} parameters are not the pretrained ones: {unmatched[:4]}"
    assert len(final) > 50


# -- the fine-tune recipe (issue 29): what ships is what the study measured -----------------------------------
STUDY = ROOT / "benchmarks" / "results" / "finetune_study.json"
RECIPE_SOLVER = "compression/encodec_mmd_finetune_32khz"
PAPER_SOLVER = "compression/encodec_mmd_musicgen_32khz"


def study_script():
    """scripts/finetune_study.py as a module (scripts/ is not a package): the docs' text is its output."""
    spec = importlib.util.spec_from_file_location("finetune_study", ROOT / "scripts" / "finetune_study.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_fine_tune_config_is_the_studys_setting_at_its_derived_budget(compose):
    from mmd_audiocraft.grids._paper import FINETUNE_MMD
    from omegaconf import OmegaConf

    shipped = json.loads(STUDY.read_text())["summary"]["shipped"]
    xp = compose(f"solver={RECIPE_SOLVER}")
    cfg, paper = xp.cfg, compose(f"solver={PAPER_SOLVER}").cfg
    for override in shipped["overrides"]:  # the loss setting the study chose
        key, value = override.split("=")
        assert OmegaConf.select(cfg, key) == pytest.approx(float(value)), override
    # the grid states the same setting: same signature
    assert compose(f"solver={RECIPE_SOLVER}", *(f"{k}={v}" for k, v in FINETUNE_MMD.items())).sig == xp.sig
    # the paper's codec otherwise (a source's weights load strictly), macro-batch included
    for key in ("sample_rate", "channels", "compression_model", "encodec", "seanet", "rvq", "losses.msspec",
                "losses.adv", "inde.macro_batch", "inde.every", "inde.codebooks_pattern"):
        assert OmegaConf.select(cfg, key) == OmegaConf.select(paper, key), key
    # the budget: as many MMD steps as the study's (one per update there, one every inde.every updates here)
    assert cfg.optim.epochs * cfg.optim.updates_per_epoch == shipped["updates"] * cfg.inde.every
    assert cfg.optim.epochs * cfg.optim.updates_per_epoch < paper.optim.epochs * paper.optim.updates_per_epoch / 50
    # every epoch evaluated and its checkpoint kept (the page: compare the epochs and pick one)
    assert cfg.evaluate.every == 1 and cfg.checkpoint.save_every == 1
    assert (cfg.checkpoint.keep_last or cfg.optim.epochs) >= cfg.optim.epochs


def test_the_docs_show_the_studys_numbers():
    """The study is stated once, on the fine-tune page; docs/EVIDENCE.md links to it without repeating it."""
    study = study_script()
    results = json.loads(STUDY.read_text())
    page = (ROOT / "examples/finetune_existing_codec.md").read_text()
    evidence = (ROOT / "docs/EVIDENCE.md").read_text()
    for text in (study.headline(results), study.markdown_sources(results), study.markdown(results)):
        assert text in page
        assert text not in evidence
    assert "examples/finetune_existing_codec.md#the-study-the-tiny-codec-fine-tuned-on-cpu" in evidence
    assert "### The study: the tiny codec, fine-tuned on CPU" in page
