"""Load an audiocraft compression model (codec) from what a user types: a path, `//sig/SIG` or `//pretrained/...`.

Reuses audiocraft: `checkpoint.resolve_checkpoint_path` for `//sig/` (its Dora dir, AUDIOCRAFT_DORA_DIR
included), `builders.get_compression_model` for the network (checkpoints and exported files alike) and
`CompressionModel.get_pretrained` for pretrained names. The checkpoint is read once and checked first, so a
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

__all__ = ["ModelLoadError", "LoadedModel", "load_compression_model", "CHECKPOINT_NAME", "EXPORTED_NAME"]

CHECKPOINT_NAME = "checkpoint.th"  # audiocraft's last checkpoint of an XP (checkpoint_name() on rank 0)
EXPORTED_NAME = "compression_state_dict.bin"  # what audiocraft.models.loaders looks for in a folder
SIG_PREFIX = "//sig/"
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
            from audiocraft import train

            xp_dir = Path(train.main.dora.dir) / "xps" / sig
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
            raise ModelLoadError(f"{label}: folder has no {CHECKPOINT_NAME} (expected an XP folder or "
                                 "a checkpoint file)")
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
    if local.exists():  # an exported model (file, or folder with compression_state_dict.bin)
        path = local / EXPORTED_NAME if local.is_dir() else local
        if not path.is_file():
            raise ModelLoadError(f"{label}: folder has no {EXPORTED_NAME}")
        state = _torch_load(path, label, trust)
        if isinstance(state, dict) and "pretrained" in state and "xp.cfg" not in state:  # a reference
            return _load_pretrained(PRETRAINED_PREFIX + str(state["pretrained"]), label, device, trust)
        cfg = _config_of(state, label, path)
        model_state, kind = _model_state(state, label, path)
        model = _build(cfg, model_state, device, label, path)
        return LoadedModel(model, spec, str(path), kind, _describe(model, cfg))

    if local.is_absolute() or name.startswith(("~", ".")):
        raise ModelLoadError(f"{label}: no such file or folder {local} (expected an exported "
                             f"{EXPORTED_NAME}, or the folder holding one)")
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


_LOCAL_INSTEAD = (f"give a local codec instead: //pretrained//ABSOLUTE/PATH/{EXPORTED_NAME} (an exported "
                  "package), //sig/SIG or a checkpoint path")


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
    `//pretrained/NAME_OR_PATH` (audiocraft's CompressionModel.get_pretrained: an exported file or folder,
    dac_44khz, dac_24khz, debug_compression_model, or a Hugging Face name when the hub is reachable).
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
