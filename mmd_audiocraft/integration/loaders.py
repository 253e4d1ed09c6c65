"""Load an audiocraft compression model (codec) from what a user types: a path, `//sig/SIG` or `//pretrained/...`.

Reuses audiocraft: `checkpoint.resolve_checkpoint_path` for `//sig/` (its Dora dir, AUDIOCRAFT_DORA_DIR
included), `builders.get_compression_model` for the network (checkpoints and exported files alike) and
`CompressionModel.get_pretrained` for pretrained names and folders (a transformers EnCodec folder through the
seam of `integration/pretrained.py`, which this loader installs, so that audiocraft then reads `//pretrained/FOLDER`
in `continue_from` and `compression_model_checkpoint` too). The checkpoint is read once and checked first, so a
wrong file (an LM checkpoint, a file that is no checkpoint, an XP folder without checkpoint) gives one clear
`ModelLoadError` instead of an assertion deep inside audiocraft. Plain paths are checked before audiocraft is
imported, so they fail fast; a Hugging Face name with HF_HUB_OFFLINE set must be in the local cache. Used by
`mmd-audiocraft measure --model` and by the training preflight (`continue_from`, `compression_model_checkpoint`).
:func:`load_compression_model` sets up the process first, like the Dora main and the CLI
(`integration.process.prepare_process`: a default `USER` for audiocraft's config, the offline hub, OmegaConf for
weights-only loads; and `install_quantizers` for PVQ codecs), so it works as a plain library call.
"""
from __future__ import annotations

import importlib.util
import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

from . import xps
from .xps import CHECKPOINT_NAME, SIG_PREFIX

__all__ = ["ModelLoadError", "LoadedModel", "load_compression_model", "CHECKPOINT_NAME", "EXPORTED_NAME"]

EXPORTED_NAME = "compression_state_dict.bin"  # what audiocraft.models.loaders looks for in a folder
PRETRAINED_PREFIX = "//pretrained/"
BUILTIN_PRETRAINED = ("dac_44khz", "dac_24khz", "debug_compression_model")


class ModelLoadError(ValueError):
    """MODEL does not name a loadable compression model (a user error, reported in one line)."""


@dataclass
class LoadedModel:
    """The codec in eval mode, plus where it came from (for the JSON report)."""
    model: object  # audiocraft.models.CompressionModel
    spec: str
    source: str  # resolved file, or the pretrained name
    kind: str  # "checkpoint" | "exported" | "pretrained"
    info: dict = field(default_factory=dict)


def _torch_load(path: Path, label: str, trust: bool):
    """torch.load with torch's default (weights-only on torch >= 2.6) unless the file is trusted.

    Weights-only loading cannot rebuild everything audiocraft training checkpoints hold (the EMA state is a
    defaultdict, metrics may be numpy scalars), so those need trust: files of the user's own Dora dir
    (`//sig/`) are trusted, other paths only with --trust-checkpoint.
    """
    import torch

    try:
        return torch.load(path, map_location="cpu", **({"weights_only": False} if trust else {}))
    except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError, AttributeError, ImportError) as exc:
        hint = ""
        if "weights only load failed" in str(exc).lower():
            hint = "; if you trust this file, add --trust-checkpoint to unpickle it fully"
        raise ModelLoadError(f"{label}: cannot read {path} as a torch checkpoint "
                             f"({_load_error_summary(exc)}){hint}") from exc
    except OSError as exc:
        raise ModelLoadError(f"{label}: cannot read {path} ({exc.strerror or exc})") from exc


def _load_error_summary(exc: BaseException) -> str:
    """The informative line of a torch.load error (weights-only errors put it deep in a long text)."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(exc).splitlines()]
    lines = [line for line in lines if line]
    for i, line in enumerate(lines):
        match = re.search(r"Unsupported global: GLOBAL (\S+)", line)
        if match:
            return f"torch's weights-only unpickler refuses {match.group(1)}"
        if line.startswith("WeightsUnpickler error:"):
            detail = line.split(":", 1)[1].strip() or (lines[i + 1] if i + 1 < len(lines) else "")
            return f"torch's weights-only unpickler: {detail}"
    return lines[0] if lines else type(exc).__name__


def _config_of(state, label: str, path: Path):
    """The XP config stored in a checkpoint (a DictConfig, or YAML text in exported packages)."""
    from omegaconf import DictConfig, OmegaConf

    if not isinstance(state, dict):
        raise ModelLoadError(f"{label}: {path} holds a {type(state).__name__}, not an audiocraft "
                             "checkpoint (a dict with 'xp.cfg' and 'best_state')")
    if "xp.cfg" not in state:
        raise ModelLoadError(f"{label}: {path} has no 'xp.cfg': not an audiocraft training checkpoint "
                             "or exported compression model")
    cfg = state["xp.cfg"]
    if isinstance(cfg, str):
        cfg = OmegaConf.create(cfg)
    elif isinstance(cfg, dict):
        cfg = OmegaConf.create(cfg)
    if not isinstance(cfg, DictConfig):
        raise ModelLoadError(f"{label}: 'xp.cfg' of {path} is a {type(cfg).__name__}, not a config")
    solver = cfg.get("solver")
    if solver != "compression" or cfg.get("compression_model") is None:
        what = f"a '{solver}' checkpoint" if solver else "a checkpoint without `solver`"
        raise ModelLoadError(f"{label}: {path} is {what}, not a compression model (expected an XP of "
                             "solver=compression, e.g. an EnCodec codec)")
    return cfg


def _model_state(state, label: str, path: Path) -> tuple[dict, str]:
    best = state.get("best_state")
    if state.get("exported"):  # audiocraft.utils.export.export_encodec: best_state is the model's state dict
        if not best:
            raise ModelLoadError(f"{label}: exported package {path} has no 'best_state'")
        return best, "exported"
    if not isinstance(best, dict) or not best.get("model"):
        raise ModelLoadError(f"{label}: {path} has no best_state['model'] (a checkpoint written before "
                             "the first epoch finished?)")
    return best["model"], "checkpoint"


def _build(cfg, model_state: dict, device: str, label: str, path: Path):
    """audiocraft's builder on the stored config, with the plugin's quantizers registered."""
    from audiocraft.models import builders

    from .pvq import install_quantizers

    install_quantizers()  # PVQ codecs
    cfg = cfg.copy()
    cfg.device = device
    model = builders.get_compression_model(cfg).to(device)
    try:
        model.load_state_dict(model_state)
    except RuntimeError as exc:  # keys or shapes differ from what the config builds
        first = str(exc).strip().splitlines()[0]
        raise ModelLoadError(f"{label}: the weights in {path} do not fit the model its config builds "
                             f"({first})") from exc
    if model.sample_rate != cfg.sample_rate:
        raise ModelLoadError(f"{label}: model sample rate {model.sample_rate} differs from the "
                             f"config's {cfg.sample_rate}")
    return model.eval()


def _resolve_path(spec: str, label: str) -> Path:
    """A checkpoint file, or an XP folder holding checkpoint.th; `//sig/SIG` through audiocraft's Dora dir."""
    if spec.startswith(SIG_PREFIX):
        sig = spec[len(SIG_PREFIX):].strip("/")
        if not sig:
            raise ModelLoadError(f"{label}: expected //sig/SIG with an XP signature")
        from audiocraft.utils import checkpoint

        resolved = checkpoint.resolve_checkpoint_path(spec, use_fsdp=False)
        if resolved is None:
            xp_dir = xps.xp_folder(sig)
            if xp_dir.is_dir():
                why = f"has no {CHECKPOINT_NAME} yet: run that XP (to the end of its first epoch at least) first"
            else:
                why = ("does not exist: give the SIG of an XP of this Dora dir (AUDIOCRAFT_DORA_DIR or "
                       "audiocraft's team config), or a checkpoint path")
            raise ModelLoadError(f"{label}: XP folder {xp_dir} {why}")
        return Path(resolved)
    path = Path(spec).expanduser()
    if path.is_dir():
        candidate = path / CHECKPOINT_NAME
        if not candidate.is_file():
            raise ModelLoadError(f"{label}: {_folder_refusal(path, pretrained=False)}")
        return candidate
    if not path.exists():
        raise ModelLoadError(f"{label}: no such file or folder (expected a checkpoint path, an XP "
                             "folder, //sig/SIG or //pretrained/NAME)")
    return path


def _load_pretrained(spec: str, label: str, device: str, trust: bool) -> LoadedModel:
    name = spec[len(PRETRAINED_PREFIX):]
    if not name:
        raise ModelLoadError(f"{label}: expected //pretrained/NAME or //pretrained/PATH")
    local = Path(name).expanduser()
    if local.is_dir() and not (local / EXPORTED_NAME).is_file():  # a transformers EnCodec folder, or nothing
        return _load_hf_folder(spec, local, label, device)
    if local.exists():  # an exported model (file, or folder with compression_state_dict.bin)
        path = local / EXPORTED_NAME if local.is_dir() else local
        state = _torch_load(path, label, trust)
        if isinstance(state, dict) and "pretrained" in state and "xp.cfg" not in state:  # a reference
            return _load_pretrained(PRETRAINED_PREFIX + str(state["pretrained"]), label, device, trust)
        cfg = _config_of(state, label, path)
        model_state, kind = _model_state(state, label, path)
        model = _build(cfg, model_state, device, label, path)
        return LoadedModel(model, spec, str(path), kind, _describe(model, cfg))

    if local.is_absolute() or name.startswith(("~", ".")):
        raise ModelLoadError(f"{label}: no such file or folder {local} (expected an exported "
                             f"{EXPORTED_NAME}, the folder holding one, or a transformers EnCodec folder)")
    if name.startswith("dac_") and importlib.util.find_spec("dac") is None:
        raise ModelLoadError(f"{label}: {name} needs the descript-audio-codec package (import dac)")
    if name not in BUILTIN_PRETRAINED:
        _check_hub_name(name, label)
    from audiocraft.models import CompressionModel

    try:
        model = CompressionModel.get_pretrained(name, device=device)
    except ImportError as exc:
        raise ModelLoadError(f"{label}: {name} needs a package that is not installed ({exc})") from exc
    except OSError as exc:  # hub unreachable, unknown repo, missing files (huggingface_hub/transformers)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"{label}: no local path of that name, and the Hugging Face hub could not provide "
                             f"it ({first}); {_LOCAL_INSTEAD}") from exc
    return LoadedModel(model, spec, name, "pretrained", _describe(model, None))


def _load_hf_folder(spec: str, folder: Path, label: str, device: str) -> LoadedModel:
    """A folder in transformers' EnCodec format, through audiocraft's `CompressionModel.get_pretrained` with the
    plugin's seam (integration/pretrained.py): the route training takes for `//pretrained/FOLDER`."""
    from .pretrained import hf_encodec_folder_problem, install_hf_encodec_folders

    if hf_encodec_folder_problem(folder) is not None:
        raise ModelLoadError(f"{label}: {_folder_refusal(folder, pretrained=True)}")
    from audiocraft.models import CompressionModel
    from safetensors import SafetensorError

    install_hf_encodec_folders()
    try:
        model = CompressionModel.get_pretrained(str(folder), device=device)
    except (OSError, ValueError, RuntimeError, KeyError, SafetensorError) as exc:  # unreadable weights
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"{label}: transformers cannot load the EnCodec folder {folder} ({first})") from exc
    return LoadedModel(model, spec, str(folder), "pretrained", _describe(model, None))


FOLDER_FORMS = (f"an XP folder ({CHECKPOINT_NAME}) as PATH, or as //pretrained/PATH an audiocraft export folder "
                f"({EXPORTED_NAME}) or a transformers EnCodec folder (config.json + model.safetensors or "
                "pytorch_model.bin, e.g. facebook/encodec_32khz downloaded by hand)")


def _folder_refusal(folder: Path, pretrained: bool) -> str:
    """Why `folder` holds no codec in the form it was given in, and the folder forms that work (one line)."""
    from .pretrained import hf_encodec_folder_problem

    hf_problem = hf_encodec_folder_problem(folder)
    if not pretrained:
        if (folder / EXPORTED_NAME).is_file() or hf_problem is None:
            what = "an audiocraft export folder" if (folder / EXPORTED_NAME).is_file() else \
                "a transformers EnCodec folder"
            return (f"folder has no {CHECKPOINT_NAME}: it is {what}, which loads as //pretrained/{folder} "
                    f"(folders that load: {FOLDER_FORMS})")
        return f"folder has no {CHECKPOINT_NAME} (expected a checkpoint file, or one of the folders that load: " \
               f"{FOLDER_FORMS})"
    if (folder / CHECKPOINT_NAME).is_file():
        return (f"{folder} is an XP folder ({CHECKPOINT_NAME}), which loads without //pretrained/: give {folder} "
                "or //sig/SIG")
    return (f"folder {folder} holds no codec: no {EXPORTED_NAME}, and as a transformers EnCodec folder it has "
            f"{hf_problem} (folders that load: {FOLDER_FORMS})")


_LOCAL_INSTEAD = (f"give a local codec instead: //pretrained//ABSOLUTE/PATH/{EXPORTED_NAME} (an exported "
                  "package), //pretrained//ABSOLUTE/FOLDER with config.json + model.safetensors (a transformers "
                  "EnCodec folder, e.g. facebook/encodec_32khz downloaded by hand), //sig/SIG or a checkpoint path")


def _check_hub_name(name: str, label: str) -> None:
    """A Hugging Face name with the hub off (HF_HUB_OFFLINE) must be in the local cache: say so, before
    transformers fails deep in its download code."""
    if os.environ.get("HF_HUB_OFFLINE") in (None, "", "0"):
        return
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return
    from huggingface_hub.constants import HF_HUB_CACHE

    raise ModelLoadError(
        f"{label}: {name} is not a local path, so it names a Hugging Face model, which needs the hub: "
        f"HF_HUB_OFFLINE is set and the Hugging Face cache ({HF_HUB_CACHE}) does not hold it. Either "
        f"`huggingface-cli download {name}` on a connected machine and point HF_HUB_CACHE at that cache, or "
        f"{_LOCAL_INSTEAD}")


def _describe(model, cfg) -> dict:
    info = {"class": type(model).__name__, "sample_rate": int(model.sample_rate),
            "channels": int(model.channels), "frame_rate": float(model.frame_rate),
            "num_codebooks": int(model.num_codebooks), "bins": int(model.cardinality)}
    if cfg is not None:
        encodec = cfg.get("encodec") or {}
        info["quantizer"] = encodec.get("quantizer") if hasattr(encodec, "get") else None
    return info


def load_compression_model(spec: str, device: str = "cpu", trust_checkpoint: bool | None = None,
                           key: str = "--model") -> LoadedModel:
    """The codec named by `spec`, in eval mode on `device`; raises ModelLoadError for a wrong MODEL.

    spec: a checkpoint file (checkpoint.th, or an exported compression package), an XP folder (its
    checkpoint.th), `//sig/SIG` (resolved in audiocraft's Dora dir; AUDIOCRAFT_DORA_DIR honoured) or
    `//pretrained/NAME_OR_PATH` (audiocraft's CompressionModel.get_pretrained: an exported file or folder, a
    folder in transformers' EnCodec format (config.json + model.safetensors or pytorch_model.bin, loaded as
    audiocraft loads a hub name), dac_44khz, dac_24khz, debug_compression_model, or a Hugging Face name when the
    hub is reachable). A folder that holds none of these is refused naming the folder forms that load.
    trust_checkpoint: unpickle fully (torch.load weights_only=False); None trusts `//sig/` only (the user's
    own Dora dir), which torch >= 2.6 needs for audiocraft training checkpoints (see _torch_load).
    key: how the user named it, for the messages: `--model` (the CLI) or a config key (`continue_from`, ...).
    """
    from .process import prepare_process

    prepare_process()  # before audiocraft reads its config (USER) or the hub; imports no audiocraft
    spec = str(spec)
    trust = spec.startswith(SIG_PREFIX) if trust_checkpoint is None else bool(trust_checkpoint)
    label = f"{key} {spec}" if key.startswith("-") else f"{key}={spec}"
    if spec.startswith(PRETRAINED_PREFIX):
        return _load_pretrained(spec, label, device, trust)
    path = _resolve_path(spec, label)
    state = _torch_load(path, label, trust)
    cfg = _config_of(state, label, path)
    model_state, kind = _model_state(state, label, path)
    del state  # optimizer and discriminator states can be large
    model = _build(cfg, model_state, device, label, path)
    return LoadedModel(model, spec, str(path), kind, _describe(model, cfg))
