"""A local folder in transformers' EnCodec format (`config.json` + `model.safetensors` or `pytorch_model.bin`: what
users download by hand from facebook/encodec_32khz when the hub is unreachable, audiocraft issue 447) is accepted
wherever `//pretrained/NAME` is: `measure --model`, `continue_from` and `compression_model_checkpoint`.

The reference is transformers itself: a tiny EnCodec (the tiny codec's architecture, 4 x 1024 codes at 50 Hz) is
built with transformers, saved with its own writer, and every route must give the codes and decoded audio that
the transformers model gives on the same input. The fine-tuning route goes further: audiocraft converts the
weights into its own layout (the plugin renaming transformers' weight-norm tensors) and the audiocraft EncodecModel
that the solver config builds must compute exactly what transformers computes.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from .conftest import MUSIC_FIXTURE, SMALL_CODEC, TINY_LM, seeded_solver
from .test_measure_cli import one_line_error

# encodec_mmd_tiny's network (seanet.dimension 32, n_filters 8, ratios 8 5 4 2, 2 LSTM layers, constant padding,
# true skip) in transformers' terms; 1024 codes (10 bits: older transformers count quantizers at 10 bits each),
# 4 codebooks = 2 kbps at 50 Hz, no input renormalisation (audiocraft's LMs refuse codecs that rescale).
TINY_HF = dict(sampling_rate=16_000, audio_channels=1, hidden_size=32, num_filters=8, upsampling_ratios=[8, 5, 4, 2],
               codebook_size=1024, target_bandwidths=[2.0], use_causal_conv=False, normalize=False,
               use_conv_shortcut=False, pad_mode="constant")
SOLVER_FOR_TINY_HF = [*SMALL_CODEC, "rvq.bins=1024", "encodec.renormalize=false"]


def tiny_encodec():
    """The transformers model, in eval mode, with random codebooks at the latents' scale (the init leaves them at
    zero, which would give every frame code 0)."""
    from transformers import EncodecConfig, EncodecModel

    torch.manual_seed(0)
    model = EncodecModel(EncodecConfig(**TINY_HF)).eval()
    with torch.no_grad():
        scale = float(model.encoder(0.1 * torch.randn(1, 1, 16_000)).std())
        for layer in model.quantizer.layers:
            layer.codebook.embed.normal_(0.0, scale)
            layer.codebook.embed_avg.copy_(layer.codebook.embed)
    return model


@pytest.fixture(scope="module")
def encodec(tmp_path_factory):
    """(transformers model, {weights file name: folder saved in that format})."""
    model = tiny_encodec()
    root = tmp_path_factory.mktemp("hf_encodec")
    model.save_pretrained(root / "safetensors")
    model.config.save_pretrained(root / "bin")  # the older format: config.json + a pickled state dict
    torch.save(model.state_dict(), root / "bin" / "pytorch_model.bin")
    folders = {"model.safetensors": root / "safetensors", "pytorch_model.bin": root / "bin"}
    assert {p.name for p in folders["model.safetensors"].iterdir()} == {"config.json", "model.safetensors"}
    return model, folders


@pytest.fixture(scope="module")
def music() -> torch.Tensor:
    """Two seconds of the committed real music [2, 1, 16000] (16 kHz mono)."""
    import soundfile as sf

    wavs = [sf.read(p, dtype="float32", frames=16_000)[0] for p in sorted(MUSIC_FIXTURE.glob("*.wav"))[:2]]
    return torch.from_numpy(np.stack(wavs))[:, None]


@pytest.fixture
def manifest(tmp_path) -> Path:
    """A manifest that passes measure's checks (its file exists) and is never read: the model is refused first."""
    (tmp_path / "a.wav").write_bytes(b"")
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps({"path": str(tmp_path / "a.wav"), "duration": 1.0, "sample_rate": 16_000}) + "\n")
    return path


def transformers_outputs(model, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """What transformers gives: codes [B, K, T] at the largest bandwidth, and their decoded audio [B, 1, T']."""
    with torch.no_grad():
        encoded = model.encode(x, bandwidth=max(model.config.target_bandwidths))
        audio = model.decode(encoded.audio_codes, encoded.audio_scales).audio_values
    return encoded.audio_codes[0], audio


def audiocraft_outputs(model, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        codes, scale = model.encode(x)
        return codes, model.decode(codes, scale)


@pytest.mark.parametrize("weights", ["model.safetensors", "pytorch_model.bin"])
def test_measure_loader_gives_the_transformers_codes_and_audio(encodec, music, weights):
    from mmd_audiocraft.integration.loaders import load_compression_model

    model, folders = encodec
    loaded = load_compression_model(f"//pretrained/{folders[weights]}")
    assert loaded.kind == "pretrained" and loaded.source == str(folders[weights])
    assert loaded.info == {"class": "HFEncodecCompressionModel", "sample_rate": 16_000, "channels": 1,
                           "frame_rate": 50.0, "num_codebooks": 4, "bins": 1024}
    codes, audio = audiocraft_outputs(loaded.model, music)
    want_codes, want_audio = transformers_outputs(model, music)
    assert codes.shape == (2, 4, 50) and len(torch.unique(codes)) > 20  # real codes, not a constant
    assert torch.equal(codes, want_codes)
    assert torch.equal(audio, want_audio)


def test_fine_tuning_converts_it_to_audiocraft_layout_with_the_same_outputs(encodec, music, compose):
    """continue_from=//pretrained/FOLDER: the preflight loads it, audiocraft's load_from_pretrained converts the
    weights (the plugin renames weight-norm tensors), the solver's own audiocraft EncodecModel loads them."""
    model, folders = encodec
    xp = compose(*SOLVER_FOR_TINY_HF, f"continue_from=//pretrained/{folders['model.safetensors']}")
    solver = seeded_solver(xp)
    with xp.enter():
        solver.load_checkpoints()
    assert type(solver.model).__name__ == "EncodecModel"  # audiocraft's own, not the transformers wrapper
    codes, audio = audiocraft_outputs(solver.model.eval(), music)
    want_codes, want_audio = transformers_outputs(model, music)
    assert torch.equal(codes, want_codes)
    assert torch.allclose(audio, want_audio, atol=1e-6)  # the same arithmetic in another module layout


def test_lm_reads_its_codec_from_the_folder(encodec, music, compose):
    """compression_model_checkpoint=//pretrained/FOLDER: the LM solver's codec encodes as transformers does."""
    model, folders = encodec
    xp = compose(*TINY_LM, "transformer_lm.card=1024",
                 f"compression_model_checkpoint=//pretrained/{folders['model.safetensors']}")
    solver = seeded_solver(xp)
    codes, _ = audiocraft_outputs(solver.compression_model, music)
    assert torch.equal(codes, transformers_outputs(model, music)[0])


def test_the_seam_leaves_other_names_to_audiocraft(encodec):
    """Installed twice, audiocraft's get_pretrained stays one static method; names that are not EnCodec folders
    (a built-in name, an exported package) still get audiocraft's own models."""
    from audiocraft.models import CompressionModel

    from mmd_audiocraft.integration.pretrained import install_hf_encodec_folders

    install_hf_encodec_folders()
    install_hf_encodec_folders()
    assert isinstance(vars(CompressionModel)["get_pretrained"], staticmethod)
    stock = vars(CompressionModel)["get_pretrained"].__func__.__mmd_audiocraft_wraps__
    assert not hasattr(stock, "__mmd_audiocraft_wraps__")  # wrapped once
    debug = CompressionModel.get_pretrained("debug_compression_model")
    assert type(debug).__name__ == "EncodecModel" and debug.sample_rate == 32_000
    _, folders = encodec
    assert type(CompressionModel.get_pretrained(str(folders["model.safetensors"]))).__name__ == \
        "HFEncodecCompressionModel"


def test_other_folders_are_refused_in_one_line_naming_the_forms_that_load(encodec, tmp_path, manifest, capsys):
    _, folders = encodec
    forms = ("an XP folder (checkpoint.th) as PATH, or as //pretrained/PATH an audiocraft export folder "
             "(compression_state_dict.bin) or a transformers EnCodec folder (config.json + model.safetensors or "
             "pytorch_model.bin")

    def refused(folder: Path, prefix: str = "//pretrained/") -> str:
        message = one_line_error(capsys, ["measure", "--model", f"{prefix}{folder}", "--data", str(manifest)])
        assert message.startswith(f"mmd-audiocraft measure: error: --model {prefix}{folder}: ")
        return message

    empty = tmp_path / "empty"
    empty.mkdir()
    assert "holds no codec: no compression_state_dict.bin, and as a transformers EnCodec folder it has no " \
           "config.json" in refused(empty) and forms in refused(empty)
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text((folders["model.safetensors"] / "config.json").read_text())
    assert "config.json but no weights (model.safetensors or pytorch_model.bin)" in refused(no_weights)
    other = tmp_path / "bert"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (other / "model.safetensors").write_bytes(b"")
    assert "a config.json of model_type 'bert', not 'encodec'" in refused(other)
    xp = tmp_path / "xp"
    xp.mkdir()
    (xp / "checkpoint.th").write_bytes(b"")
    assert f"{xp} is an XP folder (checkpoint.th), which loads without //pretrained/" in refused(xp)
    # without //pretrained/: a folder is an XP folder; an EnCodec folder is named the way it loads
    message = refused(folders["model.safetensors"], prefix="")
    assert f"folder has no checkpoint.th: it is a transformers EnCodec folder, which loads as " \
           f"//pretrained/{folders['model.safetensors']}" in message and forms in message
    assert forms in refused(empty, prefix="")


def test_unreadable_weights_are_one_line(encodec, tmp_path, manifest, capsys):
    _, folders = encodec
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((folders["model.safetensors"] / "config.json").read_text())
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    message = one_line_error(capsys, ["measure", "--model", f"//pretrained/{broken}", "--data", str(manifest)])
    assert f"transformers cannot load the EnCodec folder {broken}" in message
