"""Pretrained EnCodec weights in transformers' format: hub names and local folders.

Fine-tuning (`CompressionSolver.load_from_pretrained`, integration/solver.py's seam): transformers now stores
weight norm as `parametrizations.weight.original0/1`; audiocraft's conversion expects the older `weight_g` /
`weight_v` names and fails on load; :func:`convert_hf_weight_norm_keys` renames them.

Local folders (:func:`install_hf_encodec_folders`): audiocraft's `CompressionModel.get_pretrained(name)` reads an
existing path as an exported audiocraft package (`compression_state_dict.bin`), so a folder in transformers'
EnCodec format (`config.json` + `model.safetensors` or `pytorch_model.bin`, what users download by hand from
`facebook/encodec_32khz` when the hub is unreachable: audiocraft issue 447) fails there. The seam reads such a
folder as audiocraft reads a hub name: transformers' `EncodecModel.from_pretrained` (which takes a local folder)
in audiocraft's `HFEncodecCompressionModel`; `load_from_pretrained` then converts it to audiocraft's layout as it
does for hub names. Wherever audiocraft takes `//pretrained/NAME` (continue_from, compression_model_checkpoint),
`//pretrained/FOLDER` then works too. `loaders.load_compression_model` installs the seam when it loads such a
folder; the training preflight loads both keys' codecs with it before audiocraft does.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from .process import wrap_once

__all__ = ["convert_hf_weight_norm_keys", "HF_CONFIG_NAME", "HF_WEIGHTS_NAMES", "hf_encodec_folder_problem",
           "is_hf_encodec_folder", "load_hf_encodec_folder", "install_hf_encodec_folders"]

_RENAMES = {".parametrizations.weight.original0": ".weight_g", ".parametrizations.weight.original1": ".weight_v"}
HF_CONFIG_NAME = "config.json"  # transformers' save_pretrained / the hub repository's files
HF_WEIGHTS_NAMES = ("model.safetensors", "pytorch_model.bin")
_EXPORTED_NAME = "compression_state_dict.bin"  # audiocraft's own folder format wins when both are there

logger = logging.getLogger(__name__)


def convert_hf_weight_norm_keys(state: dict) -> dict:
    """Rename weight-norm keys in the `best_state.model` of a checkpoint-like dict, in place; returns it."""
    model_state = state.get("best_state", {}).get("model")
    if model_state is None:
        return state
    renamed = {}
    for key, value in model_state.items():
        for new_style, old_style in _RENAMES.items():
            key = key.replace(new_style, old_style)
        renamed[key] = value
    state["best_state"]["model"] = renamed
    return state


def hf_encodec_folder_problem(folder: Path) -> str | None:
    """Why `folder` is not a transformers EnCodec folder (None when it is one): it needs `config.json` of
    model_type "encodec" and `model.safetensors` or `pytorch_model.bin`."""
    config = folder / HF_CONFIG_NAME
    if not config.is_file():
        return f"no {HF_CONFIG_NAME}"
    if not any((folder / name).is_file() for name in HF_WEIGHTS_NAMES):
        return f"{HF_CONFIG_NAME} but no weights ({' or '.join(HF_WEIGHTS_NAMES)})"
    try:
        model_type = json.loads(config.read_text()).get("model_type")
    except (OSError, ValueError, AttributeError) as exc:
        return f"a {HF_CONFIG_NAME} that is no JSON object ({exc})"
    if model_type != "encodec":
        return f"a {HF_CONFIG_NAME} of model_type {model_type!r}, not 'encodec'"
    return None


def is_hf_encodec_folder(path) -> bool:
    """`path` is a folder in transformers' EnCodec format, without audiocraft's own exported package."""
    folder = Path(path).expanduser()
    return folder.is_dir() and not (folder / _EXPORTED_NAME).exists() and hf_encodec_folder_problem(folder) is None


def load_hf_encodec_folder(path, device="cpu"):
    """audiocraft's `HFEncodecCompressionModel` of the transformers EnCodec folder `path`, in eval mode on `device`
    (as `CompressionModel.get_pretrained` builds it for a hub name). Raises what transformers raises for
    unreadable weights (OSError, ValueError, RuntimeError)."""
    from audiocraft.models.encodec import HFEncodecCompressionModel
    from transformers import EncodecModel

    logger.info("Getting pretrained compression model from the transformers EnCodec folder %s", path)
    return HFEncodecCompressionModel(EncodecModel.from_pretrained(str(Path(path).expanduser()))).to(device).eval()


def install_hf_encodec_folders() -> None:
    """audiocraft's `CompressionModel.get_pretrained` reads a transformers EnCodec folder (see the module
    docstring); other names go to audiocraft unchanged. Idempotent."""
    from audiocraft.models.encodec import CompressionModel

    def make(stock):
        def get_pretrained(name, device="cpu"):
            if is_hf_encodec_folder(name):
                return load_hf_encodec_folder(name, device)
            return stock(name, device=device)
        return get_pretrained

    wrap_once(CompressionModel, "get_pretrained", make)
    if not isinstance(vars(CompressionModel)["get_pretrained"], staticmethod):  # keep audiocraft's staticmethod
        CompressionModel.get_pretrained = staticmethod(vars(CompressionModel)["get_pretrained"])
