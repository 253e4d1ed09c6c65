"""Tests of the real-music corpus builder (no network, no apt): split, clips, checks, fixture, dset configs.

The end-to-end test builds a corpus from two .deb packages made here with dpkg-deb, through the real code
path except `apt-get download`.
"""

from __future__ import annotations

import collections
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from omegaconf import OmegaConf

from mmd_audiocraft.apps.demo import corpus
from mmd_audiocraft.apps.demo.corpus import CorpusError, Plan, SourceFile

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "assets" / "music"
DSETS = {16000: REPO / "config/dset/audio/mmd_music_16khz.yaml",
         32000: REPO / "config/dset/audio/mmd_music_32khz.yaml"}


# ------------------------------------------------------------------------------------------------ split
def _synthetic_tracks(n: int, seed: int) -> tuple[dict[str, float], dict[str, str]]:
    rng = np.random.default_rng(seed)
    durations = {f"t{i:02d}": float(rng.uniform(120, 420)) for i in range(n)}
    groups = {name: ("rock", "metal", "game")[i % 3] for i, name in enumerate(durations)}
    return durations, groups


def test_split_by_track_is_disjoint_covering_and_hits_the_proportions():
    durations, groups = _synthetic_tracks(40, seed=1)
    fractions = {"train": 0.65, "valid": 0.10, "test": 0.25}
    out = corpus.split_by_track(durations, fractions, seed=3, min_seconds={"test": 600}, groups=groups)
    assert list(out) == ["train", "valid", "test"]
    names = [n for tracks in out.values() for n in tracks]
    assert sorted(names) == sorted(durations) and len(names) == len(set(names))  # each track in one split
    total = sum(durations.values())
    for split, frac in fractions.items():
        share = sum(durations[n] for n in out[split]) / total
        assert abs(share - frac) < 0.02, (split, share)
    assert sum(durations[n] for n in out["test"]) >= 600
    for split in ("train", "test"):
        assert {groups[n] for n in out[split]} == {"rock", "metal", "game"}
    again = corpus.split_by_track(durations, fractions, seed=3, min_seconds={"test": 600}, groups=groups)
    assert again == out  # deterministic for a seed


def test_split_by_track_small_list_meets_min_test_minutes_or_says_why():
    durations = {"a": 200.0, "b": 180.0, "c": 390.0, "d": 310.0, "e": 220.0, "f": 290.0, "g": 150.0,
                 "h": 370.0, "i": 195.0, "j": 365.0, "k": 175.0, "l": 205.0}
    fractions = {"train": 0.65, "valid": 0.10, "test": 0.25}
    out = corpus.split_by_track(durations, fractions, seed=0, min_seconds={"test": 600})
    test_s = sum(durations[n] for n in out["test"])
    assert test_s >= 600 and all(out.values())
    assert not set(out["train"]) & set(out["test"]) and not set(out["valid"]) & set(out["test"])
    with pytest.raises(ValueError, match="min_seconds"):
        corpus.split_by_track(durations, fractions, seed=0, min_seconds={"test": 2000}, trials=50)
    with pytest.raises(ValueError, match="fractions"):
        corpus.split_by_track(durations, {"train": 0.7, "test": 0.2})
    with pytest.raises(ValueError, match="durations"):
        corpus.split_by_track({"a": 1.0, "b": 2.0}, fractions)


# ------------------------------------------------------------------------------------------------ clips
@pytest.mark.parametrize(("n_samples", "expected"), [
    (2350, [1000, 1000, 350]),  # 3.5 s leftover kept
    (2150, [1000, 1000]),       # 1.5 s leftover dropped
    (2200, [1000, 1000, 200]),  # exactly 2 s kept
    (2000, [1000, 1000]),
    (150, []),
])
def test_cut_clips_lengths_and_leftover(n_samples, expected):
    wav = np.arange(n_samples, dtype=np.float32)
    clips = corpus.cut_clips(wav, sample_rate=100, clip_s=10.0, min_last_s=2.0)
    assert [len(c) for c in clips] == expected
    if clips:
        joined = np.concatenate(clips)
        np.testing.assert_array_equal(joined, wav[: len(joined)])  # consecutive, nothing reordered


def test_cut_clips_rejects_bad_input():
    with pytest.raises(ValueError, match="wav"):
        corpus.cut_clips(np.zeros((2, 100)), 100)
    with pytest.raises(ValueError, match="min_last_s"):
        corpus.cut_clips(np.zeros(100), 100, clip_s=1.0, min_last_s=2.0)


# ---------------------------------------------------------------------------------------------- decoding
def test_decode_track_mixes_stems_downmixes_normalises_and_resamples(tmp_path):
    sr = 44100
    t = np.arange(int(1.5 * sr)) / sr
    a = np.stack([0.30 * np.sin(2 * np.pi * 440 * t), 0.10 * np.sin(2 * np.pi * 440 * t)], 1)
    b = np.stack([0.05 * np.sin(2 * np.pi * 1000 * t)] * 2, 1)
    sf.write(tmp_path / "song.wav", a, sr, subtype="FLOAT")
    sf.write(tmp_path / "guitar.wav", b, sr, subtype="FLOAT")
    mix = a.mean(1) + b.mean(1)
    out = corpus.decode_track([tmp_path / "song.wav", tmp_path / "guitar.wav"], [sr, 16000])
    np.testing.assert_allclose(out[sr], mix * 0.9 / np.abs(mix).max(), atol=1e-6)
    low = out[16000]
    assert low.dtype == np.float32 and abs(len(low) - len(t) * 16000 / sr) <= 1
    spectrum = np.abs(np.fft.rfft(low))
    assert abs(np.argmax(spectrum) * 16000 / len(low) - 440) < 2
    assert abs(np.abs(low).max() - 0.9) < 0.03
    stems = [tmp_path / "song.wav", tmp_path / "guitar.wav"]
    part = corpus.decode_track(stems, [sr], offset_s=0.5, max_s=0.5)
    ref = mix[sr // 2: sr]
    np.testing.assert_allclose(part[sr], ref * 0.9 / np.abs(ref).max(), atol=1e-6)


def test_read_audio_falls_back_to_pyav(tmp_path, monkeypatch):
    pytest.importorskip("av")
    wav = np.random.default_rng(0).uniform(-0.5, 0.5, size=(4000, 2)).astype(np.float32)
    sf.write(tmp_path / "x.wav", wav, 22050, subtype="FLOAT")

    def no_libsndfile(*args, **kwargs):
        raise RuntimeError("format not supported by this libsndfile")

    monkeypatch.setattr(sf, "read", no_libsndfile)
    decoded, rate = corpus.read_audio(tmp_path / "x.wav")
    assert rate == 22050 and decoded.shape == wav.shape
    np.testing.assert_allclose(decoded, wav, atol=1e-6)


# ------------------------------------------------------------------------------------------ source checks
def _source(path: str, sha: str) -> SourceFile:
    return SourceFile(track="t", title="T", artist="A", package="pkg", version="1.0", path=path, sha256=sha,
                      license="MIT", duration_s=1.0)


def test_verify_sources_names_the_changed_file(tmp_path):
    rel = "usr/share/music/song one.ogg"
    (tmp_path / rel).parent.mkdir(parents=True)
    (tmp_path / rel).write_bytes(b"some audio bytes" * 100_000)
    good = hashlib.sha256((tmp_path / rel).read_bytes()).hexdigest()
    assert corpus.verify_sources([_source(rel, good)], {"pkg": tmp_path}) == []
    bad = _source(rel, "0" * 64)
    with pytest.raises(CorpusError) as err:
        corpus.verify_sources([bad], {"pkg": tmp_path})
    assert rel in str(err.value) and "--allow-changed-sources" in str(err.value) and good in str(err.value)
    with pytest.warns(UserWarning, match="song one.ogg"):
        assert len(corpus.verify_sources([bad], {"pkg": tmp_path}, allow_changed=True)) == 1
    with pytest.raises(CorpusError, match="missing.ogg"):
        corpus.verify_sources([_source("missing.ogg", good)], {"pkg": tmp_path}, allow_changed=True)


def test_disk_space_check_names_the_directory(tmp_path, monkeypatch):
    target = tmp_path / "not" / "yet" / "corpus"
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**12, 10**12 - 3 * 10**8, 3 * 10**8))
    with pytest.raises(CorpusError) as err:
        corpus.check_disk_space(target, 1_500_000_000)
    assert str(target) in str(err.value) and "1.5 GB" in str(err.value) and "0.3 GB" in str(err.value)
    corpus.check_disk_space(target, 200_000_000)  # enough: no error


def test_apt_failure_names_the_package_and_the_command(tmp_path, monkeypatch):
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "apt-get").write_text('#!/bin/sh\necho "E: Unable to locate package $2" >&2\nexit 100\n')
    (fake_bin / "apt-get").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(CorpusError) as err:
        corpus.fetch_packages(["no-such-music"], tmp_path / "debs")
    assert "apt-get download no-such-music" in str(err.value) and "Unable to locate" in str(err.value)
    assert not list((tmp_path / "debs").glob(".download-*"))


# ------------------------------------------------------------------------------------------------ fixture
def test_fixture_is_small_licensed_real_music_at_16khz_mono():
    wavs = sorted(FIXTURE.glob("*.wav"))
    assert len(wavs) >= 4
    assert sum(p.stat().st_size for p in FIXTURE.rglob("*") if p.is_file()) <= 1_000_000
    licence = " ".join((FIXTURE / "LICENSE").read_text().split())
    assert "Carlos Viola Iborra" in licence and "Permission is hereby granted" in licence
    sources = (FIXTURE / "SOURCES.md").read_text()
    assert "fretsonfire-songs-sectoid" in sources
    songs = set()
    for path in wavs:
        info = sf.info(str(path))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16"), path.name
        wav, _ = sf.read(str(path), dtype="float64")
        assert len(wav) >= 2 * 16000
        assert 20 * np.log10(np.sqrt(np.mean(wav**2))) > -30, f"{path.name} is too quiet to train on"
        assert path.name in sources
        songs.add(path.name.rsplit("_", 1)[0])
    assert len(songs) >= 2


# ------------------------------------------------------------------------------------------- dset configs
def _resolved_datasource(rate: int) -> dict:
    cfg = OmegaConf.load(DSETS[rate])
    return OmegaConf.to_container(cfg, resolve=True)["datasource"]


@pytest.mark.parametrize("rate", [16000, 32000])
def test_dset_configs_resolve_to_absolute_paths_like_the_builder(rate, tmp_path, monkeypatch):
    folder = f"music_{rate // 1000}khz"
    cases = [({"MMD_AUDIOCRAFT_CORPUS": str(tmp_path / "c")}, tmp_path / "c"),
             ({"MMD_AUDIOCRAFT_CACHE": str(tmp_path / "cache")}, tmp_path / "cache" / "corpus"),
             ({"HOME": str(tmp_path / "home")}, tmp_path / "home" / ".cache" / "mmd-audiocraft" / "corpus")]
    for env, expected_root in cases:
        for name in ("MMD_AUDIOCRAFT_CORPUS", "MMD_AUDIOCRAFT_CACHE"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        source = _resolved_datasource(rate)
        assert source["max_sample_rate"] == rate and source["max_channels"] == 1
        # audiocraft reads every string under datasource as a split, so only the four splits may be strings
        assert sorted(k for k, v in source.items() if isinstance(v, str)) == \
            ["evaluate", "generate", "train", "valid"]
        for split in ("train", "valid", "evaluate", "generate"):
            assert os.path.isabs(source[split])
            assert Path(source[split]) == expected_root / folder / split
        assert corpus.default_corpus_dir() == expected_root
    monkeypatch.setenv("MMD_AUDIOCRAFT_CORPUS", "relative/corpus")
    with pytest.raises(CorpusError, match="absolute"):
        corpus.default_corpus_dir()


# ------------------------------------------------------------------------------------------- end to end
def _make_deb(workdir: Path, name: str, files: dict[str, np.ndarray], sr: int) -> Path:
    root = workdir / f"{name}-root"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: 1.0-1\nArchitecture: all\nMaintainer: Test <t@example.org>\n"
        "Description: test music\n")
    (root / "usr/share/doc" / name).mkdir(parents=True)
    (root / "usr/share/doc" / name / "copyright").write_text(f"{name}: made for a test, MIT\n")
    for rel, wav in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / rel, wav, sr, subtype="PCM_16")
    deb = workdir / f"{name}_1.0-1_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Znone", "-b", str(root), str(deb)], check=True,
                   capture_output=True)
    return deb


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb to make test packages")
@pytest.mark.skipif(importlib.util.find_spec("audiocraft") is None, reason="manifests need audiocraft")
def test_build_end_to_end_from_local_packages(tmp_path, capsys):
    sr, rng = 16000, np.random.default_rng(0)
    records, debs = [], {}
    for pkg, n_tracks in (("fake-rock", 4), ("fake-game", 3)):
        files = {}
        for k in range(n_tracks):
            seconds = 3.5 + k
            t = np.arange(int(seconds * sr)) / sr
            song = 0.2 * np.sin(2 * np.pi * (200 + 50 * k) * t) + 0.02 * rng.standard_normal(len(t))
            if pkg == "fake-rock" and k == 0:
                song[int(1.5 * sr):] = 0.0  # a silent tail: its clips from 2 s on must be left out
            for stem, gain in (("song", 1.0), ("guitar", 0.5)):
                rel = f"usr/share/music/{pkg}/track {k}/{stem}.wav"
                files[rel] = np.stack([gain * song, gain * song], 1)
        deb = _make_deb(tmp_path, pkg, files, sr)
        debs[pkg] = deb
        tree = tmp_path / f"{pkg}-root"
        for rel in files:
            track = f"{pkg}-{rel.split('/')[-2].replace(' ', '_')}"
            records.append({"track": track, "title": "t", "artist": "a", "package": pkg, "version": "1.0-1",
                            "path": rel, "license": "MIT",
                            "sha256": hashlib.sha256((tree / rel).read_bytes()).hexdigest(),
                            "duration_s": sf.info(str(tree / rel)).duration})
    packages = {p: {"license": "MIT", "copyright": "(c) test", "version": "1.0-1", "deb_bytes": 10**6,
                    "license_files": [f"usr/share/doc/{p}/copyright"]} for p in debs}
    sources = tmp_path / "sources.json"
    sources.write_text(json.dumps({"schema": 1, "packages": packages, "files": records}))
    plan = Plan("test", tuple(debs), (("train", 0.6), ("valid", 0.15), ("test", 0.25)), min_test_s=5.0,
                clip_s=1.0, min_last_s=0.5, n_generate=3)

    def fetch(names, debs_dir):
        debs_dir.mkdir(parents=True, exist_ok=True)
        return {n: Path(shutil.copy(debs[n], debs_dir)) for n in names}

    out = tmp_path / "out"
    root = corpus.build(out, [8000], sources=sources, fetch=fetch, plan=plan)
    assert root == out and (root / corpus.MARKER).is_file()
    assert not list(root.glob(".tmp-build-*")) and not list((out / ".debs").glob("*.deb"))
    summary = json.loads((root / "splits.json").read_text())
    assert summary["dropped_silent_clips"] == 2  # the 1 s clips of the silent tail (2-3 s and 3-3.5 s)
    rate_dir = root / "music_8khz"
    tracks_of = {}
    for manifest in ("train", "valid", "evaluate", "generate"):
        metas = [json.loads(line) for line in (rate_dir / manifest / "data.jsonl").read_text().splitlines()]
        assert metas, manifest
        for m in metas:
            path = Path(m["path"])
            assert path.is_absolute() and path.is_file() and ".tmp-build" not in m["path"]
            assert path.is_relative_to(root.resolve()) and m["sample_rate"] == 8000
            assert sf.info(str(path)).samplerate == 8000 and sf.info(str(path)).channels == 1
        tracks_of[manifest] = {Path(m["path"]).stem.rsplit("_", 1)[0] for m in metas}
        if manifest == "generate":
            assert len(metas) == 3 and all(m["duration"] == pytest.approx(1.0) for m in metas)
    assert not tracks_of["train"] & tracks_of["evaluate"] and not tracks_of["train"] & tracks_of["valid"]
    assert not tracks_of["valid"] & tracks_of["evaluate"] and tracks_of["generate"] <= tracks_of["evaluate"]
    assert len(tracks_of["generate"]) == min(3, len(tracks_of["evaluate"]))
    assert len(tracks_of["train"] | tracks_of["valid"] | tracks_of["evaluate"]) == 7
    attribution = (root / "ATTRIBUTION.md").read_text()
    assert all(r["path"] in attribution for r in records)
    assert (root / "LICENSES" / "fake-rock").is_dir()

    capsys.readouterr()

    def must_not_fetch(*args, **kwargs):
        raise AssertionError("a complete corpus must not be rebuilt")

    assert corpus.build(out, [8000], sources=sources, fetch=must_not_fetch, plan=plan) == root
    assert "corpus ready" in capsys.readouterr().out

    records[0]["sha256"] = "f" * 64  # a "newer package": the rebuild must stop and leave nothing complete
    sources.write_text(json.dumps({"schema": 1, "packages": packages, "files": records}))
    with pytest.raises(CorpusError, match="track 0/song.wav"):
        corpus.build(out, [8000], sources=sources, fetch=fetch, plan=plan)
    assert not (root / corpus.MARKER).exists() and not list(root.glob(".tmp-build-*"))


def test_cli_reports_ready_corpus(tmp_path):
    """The cached path of `python -m mmd_audiocraft.apps.demo.corpus` finds a complete corpus and rebuilds nothing."""
    packages, files = corpus.load_sources()
    plan = corpus.FULL_PLAN
    key = corpus.corpus_key(plan, [f for f in files if f.package in plan.packages])
    for sr in (16000, 32000):
        for manifest in ("train", "valid", "evaluate", "generate"):
            (tmp_path / corpus.rate_dir_name(sr) / manifest).mkdir(parents=True)
            (tmp_path / corpus.rate_dir_name(sr) / manifest / "data.jsonl").write_text("")
    (tmp_path / corpus.MARKER).write_text(json.dumps({"key": key, "sample_rates": [16000, 32000]}))
    marker = (tmp_path / corpus.MARKER).stat().st_mtime_ns
    proc = subprocess.run([sys.executable, "-m", "mmd_audiocraft.apps.demo.corpus", "--out", str(tmp_path)],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0 and "corpus ready" in proc.stdout
    assert (tmp_path / corpus.MARKER).stat().st_mtime_ns == marker
