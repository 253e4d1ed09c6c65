"""What an LM's text conditioners need that a compute node cannot fetch: the T5 model in the Hugging Face cache,
and a text description beside each training file.

audiocraft's MusicGen builds its T5 conditioner from the hub (`transformers.T5EncoderModel.from_pretrained`)
when the solver is built, and its MusicDataset reads `<audio>.json` beside each file for the conditioning
attributes, falling back to none without a word when the file is missing (the LM then trains unconditioned).
Both are found here from files only; nothing is downloaded.
"""
from __future__ import annotations

import json
from pathlib import Path

import omegaconf

from .metric_requirements import Missing

# MusicInfo's text attributes (audiocraft.data.music_dataset): a conditioner on one of these reads it from the json
TEXT_ATTRIBUTES = ("title", "artist", "key", "bpm", "genre", "moods", "keywords", "description", "name",
                   "instrument")
T5_FILES = ("config.json", "spiece.model")


def text_conditioners(cfg: omegaconf.DictConfig) -> dict[str, str]:
    """attribute -> conditioner model (t5, lut, ...) of the LM's conditioners on text attributes."""
    conditioners = cfg.get("conditioners") or {}
    return {name: str(node.get("model")) for name, node in conditioners.items()
            if name in TEXT_ATTRIBUTES and isinstance(node, omegaconf.DictConfig)}


def _t5_cached(name: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return all(isinstance(try_to_load_from_cache(name, file), str) for file in T5_FILES)


def missing_t5(cfg: omegaconf.DictConfig) -> list[Missing]:
    """The T5 models the conditioners load, when not in the Hugging Face cache that this process (and so a job
    started from its environment) reads."""
    out = []
    for attribute, model in text_conditioners(cfg).items():
        if model != "t5":
            continue
        name = omegaconf.OmegaConf.select(cfg, f"conditioners.{attribute}.t5.name")
        if not _t5_cached(str(name)):
            from huggingface_hub.constants import HF_HUB_CACHE

            out.append(Missing(f"conditioners.{attribute}.t5.name={name}", "the T5 text encoder MusicGen's "
                               "conditioner loads from the Hugging Face hub when the solver is built",
                               f"{', '.join(T5_FILES)} of {name} in {HF_HUB_CACHE}",
                               f"huggingface-cli download {name} on a connected machine into the cache the jobs "
                               "read (HF_HUB_CACHE)"))
    return out


def manifest_entries(source: str) -> list[dict]:
    """The entries of an audiocraft manifest (a folder holding data.jsonl[.gz], or that file)."""
    from audiocraft.data.audio_dataset import load_audio_meta

    path = Path(source)
    if path.is_dir():
        path = next((path / n for n in ("data.jsonl", "data.jsonl.gz") if (path / n).exists()), path / "data.jsonl")
    return [meta.to_dict() for meta in load_audio_meta(path)]


def missing_descriptions(cfg: omegaconf.DictConfig, split: str = "train") -> list[Missing]:
    """Files of the `split` manifest without `<audio>.json` holding every text attribute the conditioners read."""
    attributes = sorted(text_conditioners(cfg))
    source = omegaconf.OmegaConf.select(cfg, f"datasource.{split}")
    if not attributes or not isinstance(source, str):
        return []
    files = [entry["path"] for entry in manifest_entries(source)]
    lacking = []
    for audio in files:
        info = Path(audio).with_suffix(".json")
        try:
            fields = json.loads(info.read_text())
        except (OSError, ValueError):
            fields = {}
        if any(fields.get(a) in (None, "") for a in attributes):
            lacking.append(audio)
    if not lacking:
        return []
    return [Missing(f"datasource.{split}={source}", f"text for the LM's conditioners ({', '.join(attributes)}): "
                    f"{len(lacking)} of {len(files)} files have none, e.g. {lacking[0]}; audiocraft would train "
                    "those unconditioned", "<audio>.json beside each file",
                    f"write {Path(lacking[0]).with_suffix('.json').name} with "
                    f"{json.dumps({a: '...' for a in attributes})} beside each audio file (docs/DATA.md)")]
