"""Reading audiocraft manifests in order, in fixed segments: what `mmd-audiocraft measure` and the demo encode.

A manifest is a folder with `data.jsonl[.gz]` (one JSON line per file: path, duration, sample_rate, ...), or
that file itself; audiocraft writes them with `python -m audiocraft.data.audio_dataset`. Segments cover every
file from its start, without random sampling, so a measurement is reproducible.
"""
from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["MANIFEST_NAMES", "ManifestError", "AudioFile", "Segment", "find_manifest", "read_manifest",
           "plan_segments", "read_segment"]

MANIFEST_NAMES = ("data.jsonl", "data.jsonl.gz")


class ManifestError(ValueError):
    """A manifest or audio file that cannot be read (reported to the user in one line)."""


@dataclass(frozen=True)
class AudioFile:
    path: Path
    duration: float  # seconds, from the manifest
    sample_rate: int  # of the file, from the manifest


@dataclass(frozen=True)
class Segment:
    file: AudioFile
    start: int  # first sample, at the file's rate
    length: int  # samples at the file's rate


def find_manifest(data: str | Path) -> Path:
    """`data.jsonl(.gz)` inside a manifest folder, or the given manifest file itself."""
    path = Path(data).expanduser()
    if path.is_dir():
        for name in MANIFEST_NAMES:
            if (path / name).is_file():
                return path / name
        raise ManifestError(f"--data {data}: folder has no {' or '.join(MANIFEST_NAMES)} (expected an "
                                "audiocraft manifest folder, see python -m audiocraft.data.audio_dataset)")
    if not path.is_file():
        raise ManifestError(f"--data {data}: no such manifest folder or file")
    return path


def read_manifest(data: str | Path) -> tuple[Path, list[AudioFile]]:
    """(manifest file, its audio files in order). Relative audio paths are tried as given, then beside it.

    Parsed here rather than with audiocraft's load_audio_meta so bad data fails before the (slow) audiocraft
    import; the format is the same (one JSON object per line with path, duration, sample_rate).
    """
    manifest = find_manifest(data)
    opener = gzip.open if manifest.name.endswith(".gz") else open
    try:
        with opener(manifest, "rt", encoding="utf-8") as f:
            lines = [(i + 1, line) for i, line in enumerate(f) if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"--data {data}: cannot read {manifest} ({exc})") from exc
    if not lines:
        raise ManifestError(f"--data {data}: manifest {manifest} lists no audio files")
    files = []
    for lineno, line in lines:
        try:
            entry = json.loads(line)
            raw_path = entry["path"]
            duration = float(entry["duration"])
            sample_rate = int(entry["sample_rate"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ManifestError(f"--data {data}: {manifest} line {lineno} is not an audiocraft manifest "
                                    f"entry with path, duration and sample_rate ({exc})") from exc
        path = Path(raw_path)
        if not path.is_absolute() and not path.exists() and (manifest.parent / path).exists():
            path = manifest.parent / path
        if not path.is_file():
            raise ManifestError(f"--data {data}: {manifest} line {lineno}: audio file {raw_path} not found")
        if sample_rate <= 0 or not duration >= 0:
            raise ManifestError(f"--data {data}: {manifest} line {lineno}: bad duration {duration} or "
                                    f"sample_rate {sample_rate}")
        files.append(AudioFile(path, duration, sample_rate))
    return manifest, files


def plan_segments(files: Sequence[AudioFile], segment_seconds: float) -> list[Segment]:
    """Consecutive segments of `segment_seconds` covering each file (the last one may be shorter)."""
    out = []
    for f in files:
        total = int(round(f.duration * f.sample_rate))
        step = max(1, int(round(segment_seconds * f.sample_rate)))
        out.extend(Segment(f, start, min(step, total - start)) for start in range(0, total, step))
    return out


def read_segment(seg: Segment, sample_rate: int, channels: int) -> torch.Tensor:
    """[channels, samples] at `sample_rate`, via audiocraft's audio_read and convert_audio."""
    from audiocraft.data.audio import audio_read
    from audiocraft.data.audio_utils import convert_audio

    sr = seg.file.sample_rate
    # audio_read takes seconds and floors seconds * rate: half-sample offsets give exact sample indices
    try:
        wav, read_sr = audio_read(seg.file.path, seek_time=(seg.start + 0.5) / sr,
                                  duration=(seg.length + 0.5) / sr)
    except AssertionError:  # audiocraft's av reader when seeking past the end (manifest duration too long)
        return torch.zeros(channels, 0)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ManifestError(f"cannot read audio {seg.file.path} at {seg.start / sr:.2f} s ({exc})") from exc
    if wav.shape[-1] == 0:
        return torch.zeros(channels, 0)
    return convert_audio(wav.float(), read_sr, sample_rate, channels)
