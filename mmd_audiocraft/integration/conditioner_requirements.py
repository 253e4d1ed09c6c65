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
# the keys MusicInfo.from_dict requires of a json when fields are required (all but its optional `keywords`)
REQUIRED_KEYS = ("title", "artist", "key", "bpm", "genre", "moods", "description", "name", "instrument")


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
    """Files of the `split` manifest whose `<audio>.json` would fail or starve the LM: a json without every key
    MusicDataset requires (`dataset.info_fields_required`, audiocraft's default: a KeyError in the job), or no
    text where MusicGen's T5 conditioners read it (other conditioners, e.g. the CPU tiny LM's lookup table,
    train on what is there)."""
    source = omegaconf.OmegaConf.select(cfg, f"datasource.{split}")
    if not text_conditioners(cfg) or not isinstance(source, str):
        return []
    wanted = sorted(a for a, model in text_conditioners(cfg).items() if model == "t5")
    required = REQUIRED_KEYS if omegaconf.OmegaConf.select(cfg, "dataset.info_fields_required", default=True) else ()
    files = [entry["path"] for entry in manifest_entries(source)]
    no_text, partial = [], []
    for audio in files:
        try:
            fields = json.loads(Path(audio).with_suffix(".json").read_text())
        except (OSError, ValueError):
            fields = None
        if fields is not None and any(key not in fields for key in required):
            partial.append(audio)
        elif any((fields or {}).get(a) in (None, "") for a in wanted):
            no_text.append(audio)
    out = []
    if partial:
        lacking = [k for k in required if k not in json.loads(Path(partial[0]).with_suffix(".json").read_text())]
        out.append(Missing(f"datasource.{split}={source}", f"{len(partial)} of {len(files)} files have a .json "
                           f"without keys audiocraft's MusicDataset requires (e.g. {partial[0]}: {', '.join(lacking)}"
                           "): the job would stop on a KeyError", "<audio>.json beside each file",
                           f"give every key of {json.dumps(dict.fromkeys(required))} (null where unknown), or "
                           "dataset.info_fields_required=false (docs/DATA.md)"))
    if no_text:
        out.append(Missing(f"datasource.{split}={source}", f"text for the LM's conditioners ({', '.join(wanted)}): "
                           f"{len(no_text)} of {len(files)} files have none, e.g. {no_text[0]}; audiocraft would "
                           "train those unconditioned", "<audio>.json beside each file",
                           f"write {Path(no_text[0]).with_suffix('.json').name} with "
                           f"{json.dumps({a: '...' for a in wanted})} beside each audio file (docs/DATA.md)"))
    return out
