"""Build a real-music corpus for audiocraft from recorded music shipped in Debian packages.

Why this exists: no registry reachable here ships music data sets or pretrained codecs, but Debian ships a
few game soundtracks under free licences. This module turns a fixed, recorded selection of them
(``corpus_sources.json``: package, version, path, sha256, licence, duration of every file) into 10 s mono
WAV clips at the sample rates audiocraft needs, split train / valid / test *by track* (so test music is
never heard in training), with audiocraft manifests and an attribution file.

    python -m mmd_audiocraft.apps.demo.corpus [--out DIR] [--sample-rates 16000 32000] [--quick]

DIR defaults to ``$MMD_AUDIOCRAFT_CORPUS``, else ``$MMD_AUDIOCRAFT_CACHE/corpus``, else
``~/.cache/mmd-audiocraft/corpus`` (the same rule ``config/dset/audio/mmd_music_*khz.yaml`` use). ``--quick``
builds a small corpus (a 72 s excerpt of each Frets on Fire song) into ``DIR/quick`` with the same layout,
so pointing ``MMD_AUDIOCRAFT_CORPUS`` at ``DIR/quick`` makes the same dset configs use it.

Layout of a corpus root::

    music_16khz/audio/{train,valid,test}/<track>_<NNN>.wav
    music_16khz/{train,valid,evaluate,generate}/data.jsonl    (evaluate = test, generate = a few test clips)
    music_32khz/...                                            (one folder per sample rate)
    ATTRIBUTION.md, LICENSES/<package>/..., splits.json
    .corpus-complete.json                                      (written last: the corpus is complete)

The ``.deb`` files go to ``DIR/.debs`` and are deleted after a successful build (about 145 MB; downloading
them again takes seconds) unless ``--keep-debs``; the extracted package trees live in the build's temporary
folder and are always deleted.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

SOURCES_JSON = Path(__file__).with_name("corpus_sources.json")
BUILD_FORMAT = 1  # bump when the way clips are made changes, so existing corpora rebuild
DEFAULT_SAMPLE_RATES = (16000, 32000)
SPLITS = ("train", "valid", "test")
MANIFEST_SPLITS = {"train": "train", "valid": "valid", "evaluate": "test"}  # manifest folder -> audio split
MARKER = ".corpus-complete.json"
PEAK = 0.9  # per-track peak after normalisation: loud enough, with headroom for resampling overshoot
SILENCE_DB = -50.0  # clips with an RMS below this (dBFS) carry nothing a codec can learn from
ENV_CORPUS = "MMD_AUDIOCRAFT_CORPUS"
ENV_CACHE = "MMD_AUDIOCRAFT_CACHE"

SECTOID = "fretsonfire-songs-sectoid"
MULDJORD = "fretsonfire-songs-muldjord"
WARZONE = "warzone2100-music"


class CorpusError(RuntimeError):
    """A build problem a person can fix; the message says what and how."""


@dataclass(frozen=True)
class SourceFile:
    """One recorded source file; files sharing ``track`` are stems of one song."""

    track: str
    title: str
    artist: str
    package: str
    version: str
    path: str
    sha256: str
    license: str
    duration_s: float


@dataclass(frozen=True)
class Plan:
    """What to build from the sources: which packages, how to split, how to cut."""

    name: str
    packages: tuple[str, ...]
    fractions: tuple[tuple[str, float], ...]
    min_test_s: float
    excerpt_offset_s: float = 0.0
    excerpt_s: float | None = None
    seed: int = 0
    clip_s: float = 10.0
    min_last_s: float = 2.0
    n_generate: int = 8


FULL_PLAN = Plan("full", (SECTOID, MULDJORD, WARZONE), (("train", 0.65), ("valid", 0.10), ("test", 0.25)),
                 min_test_s=600.0)
# CI-sized: 8 songs x 72 s (from 30 s in, past the intros) -> about 5 / 1 / 3.5 minutes.
QUICK_PLAN = Plan("quick", (SECTOID, MULDJORD), (("train", 0.5), ("valid", 0.15), ("test", 0.35)),
                  min_test_s=180.0, excerpt_offset_s=30.0, excerpt_s=72.0)


Fetcher = Callable[[Sequence[str], Path], Mapping[str, Path]]  # (package names, .deb folder) -> {name: .deb}


def _log(msg: str) -> None:
    print(f"[corpus] {msg}", flush=True)


# ----------------------------------------------------------------------------------------------- sources
def load_sources(path: Path = SOURCES_JSON) -> tuple[dict[str, dict], list[SourceFile]]:
    """Read the recorded source list: (packages by name, files in recorded order)."""
    doc = json.loads(Path(path).read_text())
    packages = doc["packages"]
    files = [SourceFile(**f) for f in doc["files"]]
    for f in files:
        if f.package not in packages:
            raise CorpusError(f"{path}: file {f.path} names package {f.package}, which is not listed")
    return packages, files


def default_corpus_dir(env: Mapping[str, str] | None = None) -> Path:
    """MMD_AUDIOCRAFT_CORPUS > MMD_AUDIOCRAFT_CACHE/corpus > ~/.cache/mmd-audiocraft/corpus (as the YAMLs)."""
    env = os.environ if env is None else env
    for name, suffix in ((ENV_CORPUS, ""), (ENV_CACHE, "corpus")):
        value = env.get(name)
        if value:
            if not os.path.isabs(value):
                raise CorpusError(f"{name}={value!r} must be an absolute path: the dset configs use it as "
                                  "is, and Dora runs experiments from another directory")
            return Path(value) / suffix if suffix else Path(value)
    home = env.get("HOME") or str(Path.home())
    return Path(home) / ".cache" / "mmd-audiocraft" / "corpus"


def corpus_key(plan: Plan, files: Sequence[SourceFile]) -> str:
    """Hash of everything that determines the corpus: build format, plan and the source files' sha256."""
    blob = {"format": BUILD_FORMAT, "plan": asdict(plan),
            "files": sorted([f.package, f.path, f.sha256] for f in files)}
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


def is_ready(root: Path, key: str, sample_rates: Sequence[int]) -> bool:
    """True when ``root`` holds a complete corpus of this key with every requested sample rate."""
    try:
        marker = json.loads((Path(root) / MARKER).read_text())
    except (OSError, ValueError):
        return False
    if marker.get("key") != key or not set(sample_rates) <= set(marker.get("sample_rates", ())):
        return False
    return all((Path(root) / rate_dir_name(sr) / m / "data.jsonl").is_file()
               for sr in sample_rates for m in (*MANIFEST_SPLITS, "generate"))


def rate_dir_name(sample_rate: int) -> str:
    """Folder of one sample rate, e.g. ``music_16khz`` (matches the dset configs)."""
    if sample_rate % 1000:
        return f"music_{sample_rate}hz"
    return f"music_{sample_rate // 1000}khz"


def sha256_file(path: Path) -> str:
    """sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fp:
        for block in iter(lambda: fp.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sources(files: Sequence[SourceFile], trees: Mapping[str, Path],
                   allow_changed: bool = False) -> list[str]:
    """Check every source file against its recorded sha256; return the files that differ.

    A difference means Debian shipped another version of a package: the corpus would silently change, so
    this raises unless ``allow_changed`` (then it warns). A missing file always raises.
    """
    changed = []
    for f in files:
        path = Path(trees[f.package]) / f.path
        if not path.is_file():
            raise CorpusError(f"{f.package}: source file '{f.path}' is missing from the package (recorded "
                              f"from version {f.version}); update mmd_audiocraft/apps/demo/corpus_sources.json")
        digest = sha256_file(path)
        if digest != f.sha256:
            changed.append(f"{f.package}: '{f.path}' has sha256 {digest}, recorded {f.sha256} "
                           f"(recorded from version {f.version})")
    if changed and not allow_changed:
        raise CorpusError("source files differ from mmd_audiocraft/apps/demo/corpus_sources.json (a newer Debian "
                          "package?):\n  " + "\n  ".join(changed) + "\nRe-run with --allow-changed-sources "
                          "to build from them anyway (the corpus will then differ from the recorded one).")
    for line in changed:
        warnings.warn(f"building from a changed source file: {line}", stacklevel=2)
    return changed


# ---------------------------------------------------------------------------------------------- packages
def check_disk_space(path: Path, need_bytes: int) -> None:
    """Fail early, naming the directory, when the disk under ``path`` has less than ``need_bytes`` free."""
    probe = Path(path).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < need_bytes:
        raise CorpusError(f"not enough free disk space under {path}: the corpus needs about "
                          f"{need_bytes / 1e9:.1f} GB, {free / 1e9:.1f} GB are free. Free some space, or "
                          f"point --out / {ENV_CORPUS} at a larger disk.")


def estimate_bytes(plan: Plan, packages: Mapping[str, dict], files: Sequence[SourceFile],
                   sample_rates: Sequence[int]) -> int:
    """Disk needed at the peak of a build: .debs + their extracted trees + 16-bit clips, with 50 % margin."""
    debs = sum(int(packages[p].get("deb_bytes", 0)) for p in plan.packages)
    seconds = sum(_planned_seconds(plan, d) for d in _track_durations(files).values())
    clips = seconds * sum(sample_rates) * 2
    return int(1.5 * (2 * debs + clips)) + 50_000_000


def _apt_download(name: str, dest: Path) -> Path:
    """``apt-get download NAME`` into ``dest``; one ``apt-get update`` retry when the lists lack it."""
    if shutil.which("apt-get") is None:
        raise CorpusError(f"apt-get not found: the corpus needs the Debian package '{name}'. On Debian or "
                          f"Ubuntu run: apt-get update && (cd {dest} && apt-get download {name})")
    partial = Path(tempfile.mkdtemp(prefix=".download-", dir=dest))
    try:
        for attempt in range(2):
            proc = subprocess.run(["apt-get", "download", name], cwd=partial, capture_output=True, text=True)
            debs = sorted(partial.glob(f"{name}_*.deb"))
            if proc.returncode == 0 and debs:
                target = dest / debs[0].name
                os.replace(debs[0], target)
                return target
            stale_lists = "Unable to locate" in proc.stderr or "Can't select" in proc.stderr
            if attempt == 0 and stale_lists and hasattr(os, "geteuid") and os.geteuid() == 0:
                _log(f"apt does not know {name}; running apt-get update once")
                subprocess.run(["apt-get", "update", "-qq"], capture_output=True, text=True)
                continue
            break
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise CorpusError(f"apt-get download {name} failed (exit {proc.returncode}):\n{tail}\n"
                          f"Try by hand: apt-get update && (cd {dest} && apt-get download {name})")
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def fetch_packages(names: Sequence[str], debs_dir: Path) -> dict[str, Path]:
    """Get each package's .deb into ``debs_dir`` (reusing one already there): {name: path}."""
    debs_dir = Path(debs_dir)
    debs_dir.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in names:
        cached = sorted(debs_dir.glob(f"{name}_*.deb"), key=lambda p: p.stat().st_mtime)
        if cached:
            out[name] = cached[-1]
            _log(f"package {name}: cached {cached[-1].name}")
        else:
            _log(f"package {name}: apt-get download")
            out[name] = _apt_download(name, debs_dir)
    return out


def extract_package(deb: Path, dest: Path) -> Path:
    """Unpack a .deb's files into ``dest`` (never installs anything system-wide)."""
    if shutil.which("dpkg-deb") is None:
        raise CorpusError(f"dpkg-deb not found: cannot unpack {deb}. Install dpkg (apt-get install dpkg).")
    Path(dest).mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], capture_output=True, text=True)
    if proc.returncode:
        raise CorpusError(f"dpkg-deb -x {deb} failed: {proc.stderr.strip()}. Delete the file and rebuild.")
    return Path(dest)


def package_version(deb: Path) -> str:
    """The Version field of a .deb."""
    return subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], capture_output=True, text=True,
                          check=True).stdout.strip()


# ------------------------------------------------------------------------------------------------- audio
def read_audio(path: Path):
    """Decode any file libsndfile reads (Ogg Vorbis/Opus, MP3, WAV): float32 array [time, channels], rate.

    Falls back to PyAV for formats a libsndfile build lacks.
    """
    import numpy as np
    import soundfile as sf

    try:
        wav, sr = sf.read(str(path), dtype="float32", always_2d=True)
        return wav, int(sr)
    except RuntimeError as err:  # soundfile's LibsndfileError is a RuntimeError
        first_error = err
    try:
        import av
    except ImportError:
        raise CorpusError(f"cannot decode {path}: {first_error} (and PyAV is not installed)") from first_error
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="fltp")
        chunks = [out.to_ndarray() for frame in container.decode(stream) for out in resampler.resample(frame)]
        sr = stream.codec_context.sample_rate
    if not chunks:
        raise CorpusError(f"cannot decode {path}: no audio frames")
    return np.concatenate(chunks, axis=1).T.astype(np.float32), int(sr)


def decode_track(paths: Sequence[Path], sample_rates: Sequence[int], offset_s: float = 0.0,
                 max_s: float | None = None, peak: float = PEAK) -> dict[int, object]:
    """Mix the stems of one song, downmix to mono, keep [offset, offset + max_s), peak-normalise, resample.

    Returns {sample_rate: float32 1-D numpy array}. Normalisation is per track (not per clip) so loud and
    quiet passages keep their relative level.
    """
    import numpy as np

    if not paths:
        raise ValueError("paths: expected at least one stem file, got none")
    if not sample_rates or any(int(sr) <= 0 for sr in sample_rates):
        raise ValueError(f"sample_rates: expected positive integers, got {list(sample_rates)}")
    if offset_s < 0 or (max_s is not None and max_s <= 0):
        raise ValueError(f"offset_s/max_s: expected offset_s >= 0 and max_s > 0, got {offset_s}, {max_s}")
    stems = [read_audio(p) for p in paths]
    src_sr = stems[0][1]
    if any(sr != src_sr for _, sr in stems):
        rates = [(str(p), sr) for p, (_, sr) in zip(paths, stems)]
        raise CorpusError(f"stems of one song have different sample rates: {rates}")
    length = max(len(w) for w, _ in stems)
    mono = np.zeros(length, dtype=np.float64)
    for wav, _ in stems:  # sum of stems, each downmixed to mono; the shorter ones end in silence
        mono[: len(wav)] += wav.mean(axis=1, dtype=np.float64)
    start = int(round(offset_s * src_sr))
    stop = length if max_s is None else min(length, start + int(round(max_s * src_sr)))
    mono = mono[start:stop]
    top = float(np.abs(mono).max()) if mono.size else 0.0
    if top < 1e-6:
        raise CorpusError(f"{paths[0]}: the selected audio is silent or empty")
    mono = (mono * (peak / top)).astype(np.float32)
    out = {}
    for sr in sample_rates:
        sr = int(sr)
        if sr == src_sr:
            out[sr] = mono.copy()
        else:
            import torch
            import torchaudio.functional as AF

            out[sr] = AF.resample(torch.from_numpy(mono), src_sr, sr).numpy().astype(np.float32)
    return out


def cut_clips(wav, sample_rate: int, clip_s: float = 10.0, min_last_s: float = 2.0) -> list:
    """Cut a 1-D signal into consecutive ``clip_s`` clips; keep a shorter last one if >= ``min_last_s``."""
    if getattr(wav, "ndim", None) != 1:
        raise ValueError(f"wav: expected a 1-D array, got shape {getattr(wav, 'shape', None)}")
    if sample_rate <= 0 or clip_s <= 0 or not 0 <= min_last_s <= clip_s:
        raise ValueError(f"sample_rate/clip_s/min_last_s: expected positive rate, clip_s > 0 and "
                         f"0 <= min_last_s <= clip_s, got {sample_rate}, {clip_s}, {min_last_s}")
    size = int(round(clip_s * sample_rate))
    min_last = int(round(min_last_s * sample_rate))
    clips = [wav[i: i + size] for i in range(0, len(wav), size)]
    if clips and len(clips[-1]) < max(min_last, 1):
        clips.pop()
    return clips


def rms_db(clip) -> float:
    """RMS level of a float clip in dBFS."""
    import numpy as np

    return float(20 * np.log10(np.sqrt(np.mean(np.square(clip, dtype=np.float64))) + 1e-12))


def write_wav(path: Path, clip, sample_rate: int) -> None:
    """Write a float clip as 16-bit PCM WAV, clipping to [-1, 1] ourselves (libsndfile would wrap)."""
    import numpy as np
    import soundfile as sf

    pcm = np.round(np.clip(clip, -1.0, 1.0) * 32767.0).astype(np.int16)
    sf.write(str(path), pcm, int(sample_rate), subtype="PCM_16")


# ------------------------------------------------------------------------------------------------- split
def split_by_track(durations: Mapping[str, float], fractions: Mapping[str, float], seed: int = 0,
                   min_seconds: Mapping[str, float] | None = None, groups: Mapping[str, str] | None = None,
                   cover: Sequence[str] = ("train", "test"), trials: int = 2000) -> dict[str, list[str]]:
    """Assign whole tracks to splits so each split's share of the duration is close to ``fractions``.

    Deterministic for a seed: ``trials`` seeded track orders are each filled greedily (next track to the
    split furthest below its target) and the closest assignment that meets the constraints wins. Constraints:
    no split empty, ``min_seconds[split]`` reached, and each split in ``cover`` holds a track of every group
    that has at least ``len(cover)`` tracks (so test music resembles training music).
    """
    names = sorted(durations)
    if not fractions or any(f <= 0 for f in fractions.values()) or abs(sum(fractions.values()) - 1) > 1e-6:
        raise ValueError(f"fractions: expected positive shares summing to 1, got {dict(fractions)}")
    if len(names) < len(fractions):
        raise ValueError(f"durations: expected at least {len(fractions)} tracks (one per split), "
                         f"got {len(names)}")
    if any(not durations[n] > 0 for n in names):
        raise ValueError(f"durations: expected positive seconds, got {dict(durations)}")
    min_seconds = dict(min_seconds or {})
    if set(min_seconds) - set(fractions):
        raise ValueError(f"min_seconds: names splits not in fractions: "
                         f"{sorted(set(min_seconds) - set(fractions))}")
    if groups is not None and set(names) - set(groups):
        raise ValueError(f"groups: missing tracks {sorted(set(names) - set(groups))}")
    splits = list(fractions)
    total = sum(durations[n] for n in names)
    targets = {s: fractions[s] * total for s in splits}
    big_groups = set()
    if groups is not None:
        sizes: dict[str, int] = {}
        for n in names:
            sizes[groups[n]] = sizes.get(groups[n], 0) + 1
        big_groups = {g for g, k in sizes.items() if k >= len(cover)}
    rng = random.Random(seed)
    best, best_err = None, float("inf")
    for _ in range(trials):
        order = rng.sample(names, len(names))
        got = {s: 0.0 for s in splits}
        members: dict[str, list[str]] = {s: [] for s in splits}
        for n in order:
            s = max(splits, key=lambda s: (targets[s] - got[s], -splits.index(s)))
            got[s] += durations[n]
            members[s].append(n)
        if any(not members[s] for s in splits) or any(got[s] < v for s, v in min_seconds.items()):
            continue
        if big_groups and any(big_groups - {groups[n] for n in members[s]} for s in cover if s in members):
            continue
        err = sum(abs(got[s] / total - fractions[s]) for s in splits)
        if err < best_err - 1e-12:
            best, best_err = members, err
    if best is None:
        raise ValueError(f"split_by_track: no assignment of {len(names)} tracks meets "
                         f"min_seconds={min_seconds} and the group cover in {trials} trials; add tracks or "
                         "relax the constraints")
    return {s: sorted(best[s]) for s in splits}


def _track_durations(files: Sequence[SourceFile]) -> dict[str, float]:
    """Recorded duration of each track: its longest stem (shorter stems are padded with silence)."""
    out: dict[str, float] = {}
    for f in files:
        out[f.track] = max(out.get(f.track, 0.0), float(f.duration_s))
    return out


def _planned_seconds(plan: Plan, duration_s: float) -> float:
    """Duration of a track after the plan's excerpt."""
    left = max(0.0, duration_s - plan.excerpt_offset_s)
    return left if plan.excerpt_s is None else min(left, plan.excerpt_s)


# --------------------------------------------------------------------------------------------- manifests
_MANIFEST_DRIVER = """
import sys
from audiocraft.data.audio_dataset import DEFAULT_EXTS, find_audio_files, save_audio_meta
args = sys.argv[1:]
for root, out in zip(args[::2], args[1::2]):
    meta = find_audio_files(root, DEFAULT_EXTS, resolve=True, minimal=True, workers=2)
    save_audio_meta(out, meta)
    print(f"{out}: {len(meta)} files", flush=True)
"""


def write_manifests(rate_dirs: Sequence[Path], n_generate: int = 8, clip_s: float = 10.0,
                    python: str = sys.executable) -> None:
    """Write ``{train,valid,evaluate,generate}/data.jsonl`` in each rate folder with audiocraft's own scanner.

    Runs, in one subprocess (importing audiocraft costs seconds), the two calls that
    ``python -m audiocraft.data.audio_dataset ROOT OUT --resolve`` makes for each split; ``generate`` is a few
    full-length test clips from different tracks.
    """
    args = []
    for rate_dir in rate_dirs:
        for manifest, split in MANIFEST_SPLITS.items():
            args += [str(Path(rate_dir) / "audio" / split), str(Path(rate_dir) / manifest / "data.jsonl")]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.run([python, "-c", _MANIFEST_DRIVER, *args], capture_output=True, text=True, env=env)
    if proc.returncode:
        tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
        raise CorpusError(f"writing audiocraft manifests with {python} failed (is audiocraft installed in "
                          f"that environment?):\n{tail}")
    for rate_dir in rate_dirs:
        for manifest, split in MANIFEST_SPLITS.items():
            wavs = len(list((Path(rate_dir) / "audio" / split).glob("*.wav")))
            lines = (Path(rate_dir) / manifest / "data.jsonl").read_text().splitlines()
            if len(lines) != wavs:
                raise CorpusError(f"{rate_dir}/{manifest}/data.jsonl lists {len(lines)} files, "
                                  f"expected {wavs}")
        evaluate = (Path(rate_dir) / "evaluate" / "data.jsonl").read_text().splitlines()
        generate = choose_generate(evaluate, n_generate, clip_s)
        (Path(rate_dir) / "generate").mkdir(exist_ok=True)
        (Path(rate_dir) / "generate" / "data.jsonl").write_text("".join(line + "\n" for line in generate))


def choose_generate(lines: Sequence[str], n: int, clip_s: float) -> list[str]:
    """Pick ``n`` full-length manifest lines, the middle clips of the tracks first, alternating tracks."""
    by_track: dict[str, list[str]] = {}
    for line in lines:
        meta = json.loads(line)
        if meta["duration"] >= clip_s - 1e-3:
            by_track.setdefault(Path(meta["path"]).stem.rsplit("_", 1)[0], []).append(line)
    queues = []
    for track in sorted(by_track):
        clips = sorted(by_track[track])
        mid = (len(clips) - 1) / 2
        queues.append(sorted(clips, key=lambda c, clips=clips: (abs(clips.index(c) - mid), clips.index(c))))
    chosen = []
    while len(chosen) < n and any(queues):
        for q in queues:
            if q and len(chosen) < n:
                chosen.append(q.pop(0))
    return sorted(chosen)


def rebase_manifests(rate_dir: Path, old_prefix: str, new_prefix: str) -> None:
    """Rewrite the absolute paths in a rate folder's manifests from the temporary build folder to the root."""
    for manifest in Path(rate_dir).glob("*/data.jsonl"):
        out = []
        for line in manifest.read_text().splitlines():
            meta = json.loads(line)
            if not meta["path"].startswith(old_prefix):
                raise CorpusError(f"{manifest}: path {meta['path']} is not under {old_prefix}")
            meta["path"] = new_prefix + meta["path"][len(old_prefix):]
            out.append(json.dumps(meta))
        manifest.write_text("".join(line + "\n" for line in out))


# ------------------------------------------------------------------------------------------- attribution
def write_attribution(root: Path, plan: Plan, packages: Mapping[str, dict], files: Sequence[SourceFile],
                      split_of: Mapping[str, str], sample_rates: Sequence[int], versions: Mapping[str, str],
                      trees: Mapping[str, Path]) -> None:
    """Write ATTRIBUTION.md (every source file, its package and licence, what was changed) and LICENSES/."""
    excerpt = ("" if plan.excerpt_s is None else f" Only a {plan.excerpt_s:g} s excerpt starting "
               f"{plan.excerpt_offset_s:g} s into each song was kept.")
    lines = [
        "# Attribution", "",
        f"This corpus (plan '{plan.name}') was made by mmd_audiocraft/apps/demo/corpus.py from recorded music shipped "
        "in Debian packages. Changes made to the works: the stems of each song were mixed, downmixed to "
        f"mono, resampled to {', '.join(str(sr) for sr in sample_rates)} Hz, peak-normalised, cut into "
        f"{plan.clip_s:g} s clips and stored as 16-bit WAV; clips quieter than {SILENCE_DB:g} dBFS were "
        f"left out.{excerpt} Each clip keeps the licence of its source file. The licence texts and copyright "
        "files of the packages are in LICENSES/.", "",
        "## Packages", "",
    ]
    for name in plan.packages:
        p = packages[name]
        lines.append(f"- `{name}` {versions.get(name, p['version'])}: {p['license']}; {p['copyright']}")
    lines += ["", "## Source files", "",
              "| track | title | artist | split | package | version | path in package | sha256 | licence | "
              "duration (s) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for f in files:
        lines.append(f"| {f.track} | {f.title} | {f.artist} | {split_of[f.track]} | {f.package} | "
                     f"{versions.get(f.package, f.version)} | `{f.path}` | {f.sha256} | {f.license} | "
                     f"{f.duration_s:.1f} |")
    (Path(root) / "ATTRIBUTION.md").write_text("\n".join(lines) + "\n")
    for name in plan.packages:
        for rel in packages[name].get("license_files", []):
            src = Path(trees[name]) / rel
            dst = Path(root) / "LICENSES" / name / rel.replace("/", "__")
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)


# ------------------------------------------------------------------------------------------------- build
@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock file so two builds of one corpus root never interleave."""
    with open(path, "a") as fp:
        fcntl.flock(fp, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fp, fcntl.LOCK_UN)


def _write_json_atomic(path: Path, obj) -> None:
    """Write JSON to a temporary file and rename it into place."""
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def _fmt_min(seconds: float) -> str:
    return f"{seconds / 60:5.1f} min"


def build(out: Path | None = None, sample_rates: Sequence[int] = DEFAULT_SAMPLE_RATES, quick: bool = False,
          allow_changed_sources: bool = False, keep_debs: bool = False, force: bool = False,
          sources: Path = SOURCES_JSON, fetch: Fetcher = fetch_packages, plan: Plan | None = None,
          python: str = sys.executable) -> Path:
    """Build (or find ready) the corpus; return its root (``out``, or ``out/quick`` with ``quick``).

    Everything is made in a temporary folder inside the root and moved into place at the end; the completion
    marker is written last, so an interrupted build never looks complete and is redone next time.
    """
    rates = sorted({int(sr) for sr in sample_rates})
    if not rates or rates[0] <= 0:
        raise ValueError(f"sample_rates: expected positive integers, got {list(sample_rates)}")
    base = Path(out) if out is not None else default_corpus_dir()
    base = base.expanduser().absolute()
    plan = plan or (QUICK_PLAN if quick else FULL_PLAN)
    root = base / "quick" if quick else base
    packages, files = load_sources(sources)
    files = [f for f in files if f.package in plan.packages]
    key = corpus_key(plan, files)
    if not force and is_ready(root, key, rates):
        _log(f"corpus ready: {root}")
        return root
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / ".build.lock"):
        if not force and is_ready(root, key, rates):  # built by another process while we waited
            _log(f"corpus ready: {root}")
            return root
        _build_locked(root, base / ".debs", plan, rates, packages, files, key, allow_changed_sources,
                      keep_debs, fetch, python)
    return root


def _build_locked(root: Path, debs_dir: Path, plan: Plan, rates: list[int], packages: Mapping[str, dict],
                  files: list[SourceFile], key: str, allow_changed: bool, keep_debs: bool,
                  fetch: Fetcher, python: str) -> None:
    """The build proper, under the root's lock (see :func:`build`)."""
    started = time.time()
    need = estimate_bytes(plan, packages, files, rates)
    check_disk_space(root, need)
    (root / MARKER).unlink(missing_ok=True)
    for stale in root.glob(".tmp-build-*"):
        shutil.rmtree(stale, ignore_errors=True)
    _log(f"building the '{plan.name}' corpus in {root} at {rates} Hz (needs about {need / 1e9:.1f} GB)")
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-build-", dir=root)).resolve()
    try:
        debs = fetch(plan.packages, debs_dir)
        trees, versions = {}, {}
        for name in plan.packages:
            trees[name] = extract_package(debs[name], tmp / "packages" / name)
            versions[name] = package_version(debs[name])
            if versions[name] != packages[name]["version"]:
                _log(f"note: {name} is version {versions[name]}, the sources were recorded from "
                     f"{packages[name]['version']}; checking every file's sha256")
        changed = verify_sources(files, trees, allow_changed)
        _log(f"verified {len(files)} source files" + (f" ({len(changed)} changed)" if changed else ""))

        stems: dict[str, list[SourceFile]] = {}
        for f in files:
            stems.setdefault(f.track, []).append(f)
        durations = {t: _planned_seconds(plan, d) for t, d in _track_durations(files).items()}
        fractions = dict(plan.fractions)
        assignment = split_by_track(durations, fractions, seed=plan.seed,
                                    min_seconds={"test": plan.min_test_s},
                                    groups={t: stems[t][0].package for t in stems})
        split_of = {t: s for s, tracks in assignment.items() for t in tracks}

        stats = {s: {"tracks": list(assignment[s]), "seconds": 0.0, "clips": 0} for s in SPLITS}
        dropped = 0
        for i, (track, parts) in enumerate(stems.items(), 1):
            t0 = time.time()
            audio = decode_track([trees[f.package] / f.path for f in parts], rates, plan.excerpt_offset_s,
                                 plan.excerpt_s)
            split = split_of[track]
            keep = None
            for sr in rates:
                clips = cut_clips(audio[sr], sr, plan.clip_s, plan.min_last_s)
                if keep is None:  # decide silence once, at the lowest rate, so every rate has the same clips
                    keep = [j for j, c in enumerate(clips) if rms_db(c) >= SILENCE_DB]
                    dropped += len(clips) - len(keep)
                    stats[split]["clips"] += len(keep)
                    stats[split]["seconds"] += sum(len(clips[j]) / sr for j in keep)
                folder = tmp / rate_dir_name(sr) / "audio" / split
                folder.mkdir(parents=True, exist_ok=True)
                for j in keep:
                    if j < len(clips):
                        write_wav(folder / f"{track}_{j:03d}.wav", clips[j], sr)
            _log(f"[{i}/{len(stems)}] {track}: {len(audio[rates[0]]) / rates[0]:.0f} s -> {split} "
                 f"({len(keep)} clips, {time.time() - t0:.1f} s)")
        for sr in rates:
            for split in SPLITS:
                (tmp / rate_dir_name(sr) / "audio" / split).mkdir(parents=True, exist_ok=True)

        write_attribution(tmp, plan, packages, files, split_of, rates, versions, trees)
        shutil.rmtree(tmp / "packages")
        _log("writing audiocraft manifests")
        rate_dirs = [tmp / rate_dir_name(sr) for sr in rates]
        write_manifests(rate_dirs, plan.n_generate, plan.clip_s, python=python)
        for rate_dir in rate_dirs:
            rebase_manifests(rate_dir, str(tmp), str(root.resolve()))
        summary = {"plan": asdict(plan), "sample_rates": rates, "dropped_silent_clips": dropped,
                   "changed_sources": changed, "package_versions": versions, "splits": stats}
        _write_json_atomic(tmp / "splits.json", summary)

        for old in [*root.glob("music_*"), root / "LICENSES", root / "ATTRIBUTION.md", root / "splits.json"]:
            if old.is_dir():
                shutil.rmtree(old)
            elif old.exists():
                old.unlink()
        for item in tmp.iterdir():
            os.replace(item, root / item.name)
        _write_json_atomic(root / MARKER, {"key": key, "sample_rates": rates, "plan": plan.name,
                                           "built_unix": int(time.time()), "changed_sources": changed})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not keep_debs:
        for name in plan.packages:
            for deb in Path(debs_dir).glob(f"{name}_*.deb"):
                deb.unlink()
        with contextlib.suppress(OSError):
            Path(debs_dir).rmdir()
    for split in SPLITS:
        s = stats[split]
        _log(f"{split:>5}: {_fmt_min(s['seconds'])}, {len(s['tracks']):2d} tracks, {s['clips']:4d} clips")
    if dropped:
        _log(f"left out {dropped} near-silent clips")
    _log(f"done in {time.time() - started:.0f} s: {root}")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: build the corpus (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m mmd_audiocraft.apps.demo.corpus",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None,
                        help=f"corpus folder (default: ${ENV_CORPUS}, else ${ENV_CACHE}/corpus, "
                             "else ~/.cache/mmd-audiocraft/corpus); --quick builds into OUT/quick")
    parser.add_argument("--sample-rates", type=int, nargs="+", default=list(DEFAULT_SAMPLE_RATES))
    parser.add_argument("--quick", action="store_true", help="small corpus for CI (about 5 / 1 / 3.5 min)")
    parser.add_argument("--allow-changed-sources", action="store_true",
                        help="build even if a source file's sha256 differs from corpus_sources.json")
    parser.add_argument("--keep-debs", action="store_true", help="keep the downloaded .debs in OUT/.debs")
    parser.add_argument("--force", action="store_true", help="rebuild even if a complete corpus is there")
    args = parser.parse_args(argv)
    try:
        root = build(args.out, args.sample_rates, quick=args.quick,
                     allow_changed_sources=args.allow_changed_sources, keep_debs=args.keep_debs,
                     force=args.force)
    except (CorpusError, ValueError) as err:
        print(f"[corpus] error: {err}", file=sys.stderr)
        return 1
    if args.quick:
        _log(f"to train on it: export {ENV_CORPUS}={root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
