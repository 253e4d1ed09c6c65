"""`mmd-audiocraft measure`: streaming, counting and errors with a fake codec (fast), then end to end on a codec
trained through our Dora main, checked against codes encoded here by an independent path (slow)."""
from __future__ import annotations

import gzip
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mmd_audiocraft.apps import cli, measure
from mmd_audiocraft.apps.manifest import AudioFile, plan_segments, read_manifest
from mmd_audiocraft.core.metrics import independence_report
from mmd_audiocraft.core.sampling import VectorSample
from mmd_audiocraft.integration.loaders import LoadedModel

from .conftest import MUSIC_FIXTURE, TINY, dora_env, run_dora, xp_dirs

# ------------------------------------------------------------------------------------------ fake codec
HOP, SR, K, BINS = 10, 100, 3, 5  # 10 codec frames per second


class FakeQuantizer:
    """Per-codebook "VQ layers" whose decode is a one-hot embedding of the code: [B, BINS, T]."""

    class Layer:
        def decode(self, codes):
            return torch.nn.functional.one_hot(codes, BINS).transpose(1, 2).float()

    class VQ:
        def __init__(self):
            self.layers = [FakeQuantizer.Layer() for _ in range(K)]

    def __init__(self):
        self.vq = self.VQ()


class FakeCodec:
    """Encodes each frame of HOP samples to the K codes written in its first K samples (so tests choose codes);
    decodes codes to such frames. With `shift=k`, codebook k's code of every third frame of a segment (t % 3 == 0)
    is encoded one higher (mod BINS): a codec whose codes moved there, and which moves them again when it
    encodes its own output."""
    sample_rate, channels, frame_rate, num_codebooks, cardinality = SR, 1, SR / HOP, K, BINS

    def __init__(self, corrupt=None, shift=None):
        self.quantizer = FakeQuantizer()
        self.corrupt = corrupt
        self.shift = shift
        self.batch_sizes = []

    def encode(self, x):
        self.batch_sizes.append(x.shape[0])
        T = x.shape[-1] // HOP
        codes = x[:, 0, : T * HOP].reshape(x.shape[0], T, HOP)[:, :, :K].round().long().transpose(1, 2)
        if self.shift is not None:
            codes[:, self.shift, ::3] = (codes[:, self.shift, ::3] + 1) % BINS
        if self.corrupt == "range":
            codes = codes + BINS
        elif self.corrupt == "shape":
            codes = codes[:, 0]
        elif self.corrupt == "float":
            codes = codes.float()
        return codes, None

    def decode(self, codes, scale=None):
        assert scale is None
        frames = torch.zeros(codes.shape[0], codes.shape[-1], HOP)
        frames[:, :, :K] = codes.transpose(1, 2).float()
        return frames.reshape(codes.shape[0], 1, -1)


def fake_audio(codes: np.ndarray) -> np.ndarray:
    """Samples whose frame t starts with codes[:, t]."""
    frames = np.zeros((codes.shape[1], HOP))
    frames[:, :K] = codes.T
    return frames.reshape(-1)


def loaded(model) -> LoadedModel:
    return LoadedModel(model, "fake", "fake", "checkpoint", {"class": "FakeCodec", "frame_rate": 10.0})


@pytest.fixture
def fake_data(tmp_path, monkeypatch):
    """Three files of 2.5 s, 1.0 s and 0.25 s with random codes; read_segment slices them (no audiocraft)."""
    rng = np.random.default_rng(0)
    seconds = [2.5, 1.0, 0.25]
    codes = {}
    files = []
    for i, sec in enumerate(seconds):
        path = tmp_path / f"f{i}.wav"
        path.write_bytes(b"")
        codes[path] = rng.integers(0, BINS, size=(K, int(sec * SR / HOP)))
        codes[path][1] = (codes[path][0] + (rng.random(codes[path].shape[1]) < 0.2)) % BINS  # dependence
        files.append(AudioFile(path, sec, SR))
    audio = {p: fake_audio(c) for p, c in codes.items()}

    def read_segment(seg, sample_rate, channels):
        assert (sample_rate, channels) == (SR, 1)
        return torch.from_numpy(audio[seg.file.path][seg.start: seg.start + seg.length]).float()[None]

    monkeypatch.setattr(measure, "read_segment", read_segment)
    return files, codes


def expected_rows(files, codes, segment_seconds, pattern):
    """Tuples by hand: per file, per segment of segment_seconds, delay d_k = k (or none), item-major."""
    seg_frames = int(round(segment_seconds * SR)) // HOP
    out = []
    for f in files:
        c = codes[f.path]
        for s0 in range(0, c.shape[1], seg_frames):
            seg = c[:, s0: s0 + seg_frames]
            if pattern == "parallel":
                out += [tuple(seg[:, t]) for t in range(seg.shape[1])]
            else:  # step s holds z_k[s - k] for s in [K-1, T)
                out += [tuple(seg[k, s - k] for k in range(K)) for s in range(K - 1, seg.shape[1])]
    return np.array(out, dtype=np.int64).reshape(-1, K)


@pytest.mark.parametrize("pattern", ["delay", "parallel"])
def test_streamed_counts_equal_hand_built_tuples(fake_data, pattern):
    files, codes = fake_data
    model = FakeCodec()
    result = measure.measure_model(loaded(model), files, pattern=pattern, segment_seconds=0.8, batch_size=2,
                                   null_shuffles=1, mmd_rows=64, progress=False)
    rows = expected_rows(files, codes, 0.8, pattern)
    assert result["n_frames"] == len(rows)
    # 2.5 s -> 0.8, 0.8, 0.8, 0.1; 1.0 -> 0.8, 0.2; 0.25 -> 0.25: tails of 1 or 2 frames give no delay tuple
    assert result["skipped_segments"] == (3 if pattern == "delay" else 0)
    assert result["n_segments"] + result["skipped_segments"] == 7
    assert result["n_codec_frames"] == sum(8 if s == 0.8 else int(s * 10) for s in
                                           ([0.8] * 3 + [0.1, 0.8, 0.2, 0.25] if pattern == "parallel"
                                            else [0.8] * 4))
    assert max(model.batch_sizes) <= 2
    expected = independence_report(rows, bins=BINS, null_shuffles=1)
    for key in ("usage", "pairwise", "each_vs_rest", "total_correlation", "protocol"):
        assert result[key] == expected[key], key  # same counts, same arithmetic: exactly equal
    assert result["usage"][0]["used_codes"] == len(np.unique(rows[:, 0]))
    assert result["delays"] == ([0, 1, 2] if pattern == "delay" else None)
    assert result["schema"] == measure.MEASURE_SCHEMA and result["pattern"] == pattern


def test_max_frames_stops_at_exactly_that_many_tuples(fake_data):
    files, codes = fake_data
    model = FakeCodec()
    result = measure.measure_model(loaded(model), files, pattern="parallel", segment_seconds=0.5, batch_size=1,
                                   max_frames=17, null_shuffles=0, mmd_rows=0, progress=False)
    rows = expected_rows(files, codes, 0.5, "parallel")[:17]
    assert result["n_frames"] == 17 and result["max_frames"] == 17
    assert len(model.batch_sizes) == 4  # 5 frames per segment: stops after the 4th segment
    assert result["usage"] == independence_report(rows, bins=BINS, null_shuffles=0)["usage"]
    assert result["mmd"]["disjoint"] is None and "skipped" in result["mmd"]["note"]


def test_batch_size_does_not_change_the_counts(fake_data):
    files, _ = fake_data
    one, many = (measure.measure_model(loaded(FakeCodec()), files, segment_seconds=0.5, batch_size=b,
                                       null_shuffles=1, mmd_rows=0, progress=False) for b in (1, 16))
    assert one["pairwise"] == many["pairwise"] and one["n_frames"] == many["n_frames"]


def test_mmd_sees_dependent_vectors(tmp_path, monkeypatch):
    """One-hot vectors: codebook 1 a copy of codebook 0 gives a clearly positive MMD^2, independent ~ 0."""
    rng = np.random.default_rng(1)
    values = {}
    for name, dependent in (("dep", True), ("ind", False)):
        c = rng.integers(0, BINS, size=(K, 3000))
        if dependent:
            c[1] = c[0]
        path = tmp_path / f"{name}.wav"
        path.write_bytes(b"")
        audio = fake_audio(c)
        monkeypatch.setattr(measure, "read_segment", lambda seg, sr, ch, a=audio: torch.from_numpy(
            a[seg.start: seg.start + seg.length]).float()[None])
        res = measure.measure_model(loaded(FakeCodec()), [AudioFile(path, 300.0, SR)],
                                    pattern="parallel", segment_seconds=50, null_shuffles=0, mmd_rows=600,
                                    progress=False)
        assert res["mmd"]["rows"] == 600 and res["mmd"]["kernel"] == "gaussian"
        values[name] = res["mmd"]
    assert values["dep"]["disjoint"] > 0.03 and values["dep"]["paper"] > 0.03
    assert abs(values["ind"]["disjoint"]) < 0.015 and abs(values["ind"]["paper"]) < 0.015


def test_vector_sample_is_uniform_over_the_stream():
    """Each of 50 streamed rows is kept with probability 10/50 whatever its batch (a biased reservoir that
    re-subsamples kept + new rows favours the last batch: 0.5 instead of 0.2)."""
    n, cap, trials = 50, 10, 2000
    hits = np.zeros(n)
    for seed in range(trials):
        sample = VectorSample(cap, seed)
        for start in range(0, n, 10):
            sample.add(torch.arange(start, start + 10, dtype=torch.float32)[:, None, None])
        kept = sample.rows[:, 0, 0].long().numpy()
        assert len(set(kept.tolist())) == cap
        hits[kept] += 1
    expected, sd = trials * cap / n, np.sqrt(trials * (cap / n) * (1 - cap / n))
    assert np.abs(hits - expected).max() < 5 * sd


def test_bad_codes_are_one_line_errors(fake_data, monkeypatch, capsys, tmp_path):
    files, _ = fake_data
    for corrupt, words in (("range", "outside [0, 5)"), ("shape", "shape"), ("float", "integers")):
        with pytest.raises(measure.MeasureInputError, match=words.replace("[", r"\[").replace(")", r"\)")):
            measure.measure_model(loaded(FakeCodec(corrupt)), files, progress=False)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"path": str(f.path), "duration": f.duration,
                                            "sample_rate": SR}) + "\n" for f in files))
    monkeypatch.setattr(measure, "load_compression_model", lambda spec, **kwargs: loaded(FakeCodec("range")))
    assert cli.main(["measure", "--model", "fake", "--data", str(manifest), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "outside [0, 5)" in err[0]


def moved_fraction(files, codes, segment_seconds) -> float:
    """Hand count: the fraction of codec frames whose index t within their segment has t % 3 == 0."""
    seg_frames = int(round(segment_seconds * SR)) // HOP
    lengths = [min(seg_frames, codes[f.path].shape[1] - s0) for f in files
               for s0 in range(0, codes[f.path].shape[1], seg_frames)]
    return sum(math.ceil(n / 3) for n in lengths) / sum(lengths)


def test_agreement_and_stability_of_moved_codes(fake_data):
    """A codec moving codebook 1's code on every third frame: agreement with the unmoved codec and stability
    under re-encoding are both 1 - that fraction on codebook 1 (and jointly), 1.0 elsewhere; itself agrees 1.0."""
    files, codes = fake_data
    moved = moved_fraction(files, codes, 0.8)
    assert 0.3 < moved < 0.45  # tails of 1, 2 frames: more than a third
    result = measure.measure_model(loaded(FakeCodec(shift=1)), files, pattern="parallel", segment_seconds=0.8,
                                   batch_size=2, null_shuffles=0, mmd_rows=0, progress=False,
                                   reference=loaded(FakeCodec()), stability=True)
    n = sum(c.shape[1] for c in codes.values())
    for key in ("code_agreement", "code_stability"):
        assert result[key]["n_codec_frames"] == n == result["n_codec_frames"]
        assert result[key]["per_codebook"] == pytest.approx([1.0, 1 - moved, 1.0], abs=1e-12)
        assert result[key]["joint"] == pytest.approx(1 - moved, abs=1e-12)
    assert (result["code_agreement"]["reference"], result["code_agreement"]["reference_kind"]) == ("fake", "checkpoint")
    # frames of 10 samples: no segment is as long as the mel window, so nothing is scored
    assert result["code_stability"]["reconstruction"] == {"mel_l1": None, "sisnr_db": None, "seconds": 0.0}
    same = measure.measure_model(loaded(FakeCodec()), files, segment_seconds=0.8, null_shuffles=0, mmd_rows=0,
                                 progress=False, reference=loaded(FakeCodec()), stability=True)
    for key in ("code_agreement", "code_stability"):
        assert same[key]["per_codebook"] == [1.0, 1.0, 1.0] and same[key]["joint"] == 1.0
    assert "code_agreement" not in measure.measure_model(loaded(FakeCodec()), files, null_shuffles=0, mmd_rows=0,
                                                         progress=False)


def test_reference_that_tokenizes_differently_is_one_line(fake_data, monkeypatch, capsys, tmp_path):
    files, _ = fake_data

    class Coarser(FakeCodec):
        cardinality = BINS + 1

    with pytest.raises(measure.MeasureInputError, match=r"3 x 6 codes at 10 Hz, but --model fake is 100 Hz, "
                                                        r"1 channel\(s\), 3 x 5 codes at 10 Hz"):
        measure.measure_model(loaded(FakeCodec()), files, reference=loaded(Coarser()), progress=False)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"path": str(f.path), "duration": f.duration,
                                            "sample_rate": SR}) + "\n" for f in files))
    models = {"fake": FakeCodec(), "coarser": Coarser()}
    monkeypatch.setattr(measure, "load_compression_model", lambda spec, **kwargs: LoadedModel(
        models[spec], spec, spec, "checkpoint", {}))
    message = one_line_error(capsys, ["measure", "--model", "fake", "--reference", "coarser", "--data",
                                      str(manifest), "--no-progress"])
    assert "--reference coarser: 100 Hz, 1 channel(s), 3 x 6 codes at 10 Hz, but --model fake is" in message
    assert "same sample rate, channels, frame rate, number of codebooks and cardinality" in message


def test_compare_shows_the_cached_code_reports_and_checks_them(tmp_path, capsys):
    """What `measure --reference --stability` caches in an XP folder, as compare reads and shows it."""
    from mmd_audiocraft.apps.compare import CODE_DRIFT_FILES

    from .test_compare import TINY_ARGV, hand_made_xp
    from .test_compare import one_line_error as compare_error

    xp = hand_made_xp(tmp_path / "dora", "ft01", [*TINY_ARGV, "losses.inde=10"], [{"evaluate": {"tc_all_bits": 0.2}}])
    recon = {"mel_l1": 0.8125, "sisnr_db": 4.5, "seconds": 12.0}
    agreement = {"reference": "//sig/src0", "per_codebook": [0.875, 0.75, 0.5], "joint": 0.375, "n_codec_frames": 8,
                 "reconstruction": {"model": recon, "reference": {**recon, "mel_l1": 0.75, "sisnr_db": 5.25}}}
    stability = {"per_codebook": [1.0, 0.625, 0.25], "joint": 0.125, "n_codec_frames": 8, "reconstruction": recon}
    (xp / CODE_DRIFT_FILES["code_agreement"]).write_text(json.dumps(agreement))
    assert cli.main(["compare", str(xp), "--json", str(tmp_path / "only_agreement.json")]) == 0
    row = json.loads((tmp_path / "only_agreement.json").read_text())["xps"][0]
    assert row["code_agreement"] == agreement and row["code_stability"] is None
    assert re.search(r"0\.375\s+0\.875 0\.750 0\.500\s+-\s+-\s+0\.8125 / 0\.7500", capsys.readouterr().out)
    (xp / CODE_DRIFT_FILES["code_stability"]).write_text(json.dumps(stability))
    assert cli.main(["compare", str(xp)]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if "//sig/src0" in ln)
    assert re.search(r"ft01\s+0\.375\s+0\.875 0\.750 0\.500\s+0\.125\s+1\.000 0\.625 0\.250\s+0\.8125 / 0\.7500\s+"
                     r"4\.50 / 5\.25\s+//sig/src0$", line), line
    (xp / CODE_DRIFT_FILES["code_stability"]).write_text(json.dumps({**stability, "joint": 1.5}))
    message = compare_error(capsys, ["compare", str(xp)])
    assert "code_stability.json: expected 'per_codebook' (a list) and 'joint' fractions in [0, 1]" in message


def test_plan_segments_and_manifest_reading(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"")
    with gzip.open(tmp_path / "data.jsonl.gz", "wt") as f:  # relative path: resolved beside the manifest
        f.write(json.dumps({"path": "a.wav", "duration": 2.05, "sample_rate": 8000}) + "\n")
    manifest, files = read_manifest(tmp_path)
    assert manifest.name == "data.jsonl.gz" and files[0].path == tmp_path / "a.wav"
    segs = plan_segments(files, 0.5)
    assert [(s.start, s.length) for s in segs] == [(0, 4000), (4000, 4000), (8000, 4000), (12000, 4000),
                                                   (16000, 400)]


# ------------------------------------------------------------------------------------------ errors
@pytest.fixture
def fixture_manifest(tmp_path) -> Path:
    """A manifest of the committed real-music wavs (3 s, 16 kHz mono), written by hand."""
    folder = tmp_path / "evaluate"
    folder.mkdir()
    lines = [json.dumps({"path": str(p), "duration": 3.0, "sample_rate": 16000}) for p in
             sorted(MUSIC_FIXTURE.glob("*.wav"))]
    (folder / "data.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def one_line_error(capsys, argv) -> str:
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mmd-audiocraft measure: error:"), captured.err
    assert captured.out == ""
    return lines[0]


def test_bad_data_and_bad_models_exit_2_with_one_line(tmp_path, fixture_manifest, capsys):
    data = ["--data", str(fixture_manifest)]
    assert "no such manifest" in one_line_error(capsys, ["measure", "--model", "x", "--data",
                                                          str(tmp_path / "missing")])
    (tmp_path / "empty").mkdir()
    assert "data.jsonl" in one_line_error(capsys, ["measure", "--model", "x", "--data", str(tmp_path / "empty")])
    (tmp_path / "empty" / "data.jsonl").write_text("\n")
    assert "lists no audio" in one_line_error(capsys, ["measure", "--model", "x", "--data",
                                                       str(tmp_path / "empty")])
    (tmp_path / "gone").mkdir()
    (tmp_path / "gone" / "data.jsonl").write_text(json.dumps({"path": "/nope.wav", "duration": 1,
                                                               "sample_rate": 16000}) + "\n")
    assert "/nope.wav not found" in one_line_error(capsys, ["measure", "--model", "x", "--data",
                                                            str(tmp_path / "gone")])

    random_file = tmp_path / "random.th"
    random_file.write_bytes(np.random.default_rng(0).bytes(3000))
    assert "cannot read" in one_line_error(capsys, ["measure", "--model", str(random_file), *data])
    no_cfg = tmp_path / "no_cfg.th"
    torch.save({"best_state": {"model": {"w": torch.zeros(2)}}}, no_cfg)
    assert "no 'xp.cfg'" in one_line_error(capsys, ["measure", "--model", str(no_cfg), *data])
    lm = tmp_path / "state_dict.bin"  # what audiocraft.utils.export.export_lm writes for a MusicGen LM
    torch.save({"best_state": {"w": torch.zeros(2)}, "xp.cfg": "solver: musicgen\nlm_model: transformer_lm\n",
                "exported": True, "version": "1.3.0"}, lm)
    assert "'musicgen' checkpoint, not a compression model" in one_line_error(
        capsys, ["measure", "--model", str(lm), *data])
    assert "no checkpoint.th" in one_line_error(capsys, ["measure", "--model", str(tmp_path / "empty"), *data])
    assert "no such file" in one_line_error(capsys, ["measure", "--model", str(tmp_path / "nope.th"), *data])


def run_cli(args, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mmd_audiocraft.apps.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env or dict(os.environ, HF_HUB_OFFLINE="1"))


def test_help_lists_measure(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0 and "measure" in capsys.readouterr().out


def test_process_exit_code_and_single_stderr_line(tmp_path):
    proc = run_cli(["measure", "--model", "x", "--data", str(tmp_path / "missing")])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stdout == ""


# ------------------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def independent_codes(trained_codec, tiny_corpus) -> tuple[list[np.ndarray], int]:
    """Codes [K, T] of each 1 s segment of the evaluate manifest's files, in order, from audiocraft's own loader
    and soundfile reads (not the CLI's path), and the codebook size."""
    import soundfile as sf
    from audiocraft.solvers.compression import CompressionSolver

    from mmd_audiocraft.integration.process import prepare_process
    from mmd_audiocraft.integration.seams import install_solver_selection, trusting_torch_load

    prepare_process()
    install_solver_selection()
    with trusting_torch_load():  # torch >= 2.6 cannot load training checkpoints weights-only
        model = CompressionSolver.model_from_checkpoint(trained_codec[1] / "checkpoint.th")
    manifest = tiny_corpus / "music_16khz" / "evaluate" / "data.jsonl"
    out = []
    for line in manifest.read_text().splitlines():
        wav, sr = sf.read(json.loads(line)["path"], dtype="float32")
        assert sr == model.sample_rate and wav.ndim == 1
        for start in range(0, len(wav), sr):
            with torch.no_grad():
                out.append(model.encode(torch.from_numpy(wav[start: start + sr])[None, None])[0][0].numpy())
    return out, model.cardinality


def encode_by_hand(xp: Path, manifest: Path) -> dict:
    """Each 1 s segment of the manifest's files, in order, read with soundfile, through the codec loaded by
    audiocraft's own loader (not the CLI's path): {"audio": [1, T] arrays, "codes": [K, frames], "decoded": the
    decoded audio cut to the segment, "again": the codes of that decoded audio}."""
    import soundfile as sf
    from audiocraft.solvers.compression import CompressionSolver

    from mmd_audiocraft.integration.process import prepare_process
    from mmd_audiocraft.integration.seams import install_solver_selection, trusting_torch_load

    prepare_process()
    install_solver_selection()
    with trusting_torch_load():  # torch >= 2.6 cannot load training checkpoints weights-only
        model = CompressionSolver.model_from_checkpoint(xp / "checkpoint.th")
    out = {"audio": [], "codes": [], "decoded": [], "again": []}
    for line in manifest.read_text().splitlines():
        wav, sr = sf.read(json.loads(line)["path"], dtype="float32")
        for start in range(0, len(wav), sr):
            x = torch.from_numpy(wav[start: start + sr])[None, None]
            with torch.no_grad():
                codes, scale = model.encode(x)
                decoded = model.decode(codes, scale)[..., : x.shape[-1]]
                again = model.encode(decoded)[0]
            for key, value in (("audio", x[0]), ("codes", codes[0]), ("decoded", decoded[0]), ("again", again[0])):
                out[key].append(value.numpy())
    return out


def si_snr_db(estimate: np.ndarray, reference: np.ndarray, sample_rate: int) -> float:
    """SI-SNR in dB of a signal shorter than 5 s, as audiocraft's SISNR defines it (Le Roux et al. 2019, in one
    window of 5 s zero-padded at the end, the float32 epsilon times the window added to both energies)."""
    window = 5 * sample_rate
    reference, estimate = (np.pad(a.astype(np.float64), (0, window - len(a))) for a in (reference, estimate))
    reference, estimate = reference - reference.mean(), estimate - estimate.mean()
    eps = np.finfo(np.float32).eps * window
    target = (estimate @ reference) / (eps + reference @ reference) * reference
    noise = estimate - target
    return float(10 * (np.log10(eps + target @ target) - np.log10(eps + noise @ noise)))


def _cells(recon: dict) -> str:
    """A reconstruction row of measure's table: mel L1, SI-SNR, seconds."""
    return f"{recon['mel_l1']:8.4f}{recon['sisnr_db']:12.2f}{recon['seconds']:9.1f}"


def rows_of(codes: list[np.ndarray], pattern: str) -> np.ndarray:
    """Tuples by hand: frames (parallel) or step s = (z_k[s - k])_k for s in [K-1, T) (delay), item-major."""
    rows = []
    for c in codes:
        n_q, T = c.shape
        if pattern == "parallel":
            rows += [c[:, t] for t in range(T)]
        else:
            rows += [np.array([c[k, s - k] for k in range(n_q)]) for s in range(n_q - 1, T)]
    return np.stack(rows).astype(np.int64)


def assert_consistent(result: dict, rows: np.ndarray, bins: int) -> None:
    expected = independence_report(rows, bins=bins)
    assert result["n_frames"] == len(rows) == expected["n_frames"]
    assert result["bins"] == bins and result["num_codebooks"] == rows.shape[1]
    assert [u["used_codes"] for u in result["usage"]] == [len(np.unique(rows[:, k])) for k in range(rows.shape[1])]
    for key in ("usage", "pairwise", "each_vs_rest"):
        for got, want in zip(result[key], expected[key]):
            assert got == pytest.approx(want, abs=1e-9), key
    got, want = dict(result["total_correlation"]), dict(expected["total_correlation"])
    assert got.pop("codebooks") == want.pop("codebooks") == list(range(rows.shape[1]))
    assert got == pytest.approx(want, abs=1e-9)


@pytest.mark.slow
def test_measure_sig_end_to_end(trained_codec, tiny_corpus, independent_codes, tmp_path):
    dora_dir, xp = trained_codec
    out_json, out_png = tmp_path / "out" / "report.json", tmp_path / "out" / "each_vs_rest.png"
    data = tiny_corpus / "music_16khz" / "evaluate"
    proc = run_cli(["measure", "--model", f"//sig/{xp.name}", "--data", str(data), "--segment", "1",
                    "--json", str(out_json), "--plot", str(out_png)], env=dora_env(dora_dir))
    assert proc.returncode == 0, proc.stderr[-3000:]
    for heading in ("Codebook usage", "Pairwise mutual information", "Each codebook vs the rest",
                    "Total correlation", "Paper protocol", "MMD^2", "%J = 100 * TC / H(joint)"):
        assert heading in proc.stdout
    assert "Traceback" not in proc.stderr

    result = json.loads(out_json.read_text())
    assert result["schema"] == measure.MEASURE_SCHEMA and result["schema_version"] == 1
    assert result["model"] == f"//sig/{xp.name}" and Path(result["model_source"]) == xp / "checkpoint.th"
    assert result["pattern"] == "delay" and result["delays"] == [0, 1, 2, 3]
    assert result["n_files"] == 4 and result["n_segments"] == 12 and result["audio_seconds"] == 12.0
    assert set(result["mmd"]) >= {"rows", "disjoint", "paper", "kernel", "bandwidths"}
    assert result["mmd"]["rows"] == result["n_frames"] and result["mmd"]["disjoint"] is not None
    assert result["protocol"]["pairs"] and set(result["normalisations"]) == {"pct_joint", "pct_marginal_sum"}
    codes, bins = independent_codes
    assert_consistent(result, rows_of(codes, "delay"), bins)
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out_png.stat().st_size > 5000


@pytest.mark.slow
def test_measure_checkpoint_path_and_xp_folder(trained_codec, tiny_corpus, independent_codes, tmp_path, capsys):
    _, xp = trained_codec
    manifest = tiny_corpus / "music_16khz" / "evaluate" / "data.jsonl"
    codes, bins = independent_codes
    rows = rows_of(codes, "parallel")
    for model in (xp / "checkpoint.th", xp):
        out = tmp_path / f"{Path(model).name}.json"
        assert cli.main(["measure", "--model", str(model), "--data", str(manifest), "--segment", "1",
                         "--pattern", "parallel", "--max-frames", "120", "--batch-size", "3", "--json",
                         str(out), "--no-progress", "--trust-checkpoint"]) == 0
        assert "Paper protocol" in capsys.readouterr().out
        result = json.loads(out.read_text())
        assert result["max_frames"] == 120 and result["delays"] is None
        assert_consistent(result, rows[:120], bins)  # 50 frames per 1 s segment: 2.4 segments, item-major


@pytest.mark.slow
def test_measure_gap_splits_the_segments_and_caches_the_gap_in_the_xp(trained_codec, tiny_corpus, independent_codes,
                                                                      tmp_path, capsys):
    from mmd_audiocraft.apps.compare import GAP_FILE
    from mmd_audiocraft.core.metrics.factorization_gap import GapOptions, factorization_gap, split_by_index

    _, xp = trained_codec
    out = tmp_path / "gap.json"
    assert cli.main(["measure", "--model", str(xp), "--data", str(tiny_corpus / "music_16khz" / "evaluate"),
                     "--segment", "1", "--gap", "--gap-seeds", "1", "--json", str(out), "--no-progress",
                     "--trust-checkpoint"]) == 0
    assert "Factorization gap of the delay pattern" in capsys.readouterr().out
    gap = json.loads(out.read_text())["factorization_gap"]
    codes, bins = independent_codes
    fit, valid, test = split_by_index([c[None] for c in codes])  # 12 segments: test = segments 4 and 9
    assert gap["test_steps"] == 2 * (50 - 3 - 4)  # delay crops K - 1 frames, 4 steps of context
    want = factorization_gap(fit, test, bins, valid=valid, options=GapOptions(seeds=(0,)))
    assert gap["total_bits"] == pytest.approx(want["total_bits"], abs=1e-6)
    assert json.loads((xp / GAP_FILE).read_text()) == gap
    (xp / GAP_FILE).unlink()


@pytest.mark.slow
def test_untrusted_checkpoint_path_on_weights_only_torch(trained_codec, fixture_manifest, capsys):
    """torch >= 2.6 loads weights-only by default and cannot rebuild a training checkpoint (EMA defaultdict,
    numpy metrics): a path without --trust-checkpoint is refused in one line that names the flag."""
    _, xp = trained_codec
    argv = ["measure", "--model", str(xp), "--data", str(fixture_manifest), "--max-frames", "10", "--mmd-rows",
            "0", "--no-progress"]
    if tuple(int(p) for p in torch.__version__.split(".")[:2]) >= (2, 6):
        assert "--trust-checkpoint" in one_line_error(capsys, argv)
    else:  # torch.load unpickles everything anyway
        assert cli.main(argv) == 0


@pytest.mark.slow
def test_lm_checkpoint_is_refused(trained_codec, tmp_path, fixture_manifest, capsys):
    """A checkpoint whose XP is not a compression solver (here the codec's, relabelled musicgen)."""
    _, xp = trained_codec
    state = torch.load(xp / "checkpoint.th", map_location="cpu", weights_only=False)
    state["xp.cfg"].solver = "musicgen"
    torch.save({"xp.cfg": state["xp.cfg"], "best_state": state["best_state"]}, tmp_path / "checkpoint.th")
    message = one_line_error(capsys, ["measure", "--model", str(tmp_path), "--data", str(fixture_manifest),
                                      "--trust-checkpoint"])
    assert "'musicgen' checkpoint, not a compression model" in message


@pytest.mark.slow
def test_pretrained_debug_codec_resamples_the_data(fixture_manifest, tmp_path, capsys):
    """audiocraft's built-in 32 kHz debug codec on the 16 kHz fixture: audio converted, 25 Hz frames."""
    out = tmp_path / "debug.json"
    assert cli.main(["measure", "--model", "//pretrained/debug_compression_model", "--data", str(fixture_manifest),
                     "--segment", "1.3", "--json", str(out), "--mmd-rows", "64", "--no-progress"]) == 0
    capsys.readouterr()
    result = json.loads(out.read_text())
    assert result["model_kind"] == "pretrained" and result["model_info"]["sample_rate"] == 32000
    assert result["num_codebooks"] == 4 and result["bins"] == 400 and result["model_info"]["frame_rate"] == 25
    assert result["n_segments"] == 12 and result["audio_seconds"] == pytest.approx(12.0)  # 1.3 + 1.3 + 0.4 s
    assert result["n_frames"] == result["n_codec_frames"] - 3 * result["n_segments"]  # delay drops K-1 per segment
    assert result["mmd"]["rows"] == 64


def test_hub_name_without_hub_is_one_line_naming_the_local_forms(fixture_manifest, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty_hub"))
    message = one_line_error(capsys, ["measure", "--model", "//pretrained/facebook/encodec_32khz", "--data",
                                      str(fixture_manifest)])
    assert "--model //pretrained/facebook/encodec_32khz: facebook/encodec_32khz is not a local path, so it names " \
           "a Hugging Face model, which needs the hub" in message
    assert "//pretrained//ABSOLUTE/PATH/compression_state_dict.bin (an exported package), " \
           "//pretrained//ABSOLUTE/FOLDER with config.json + model.safetensors (a transformers EnCodec folder, e.g. " \
           "facebook/encodec_32khz downloaded by hand), //sig/SIG or a checkpoint path" in message
    missing = tmp_path / "nowhere.bin"
    assert f"no such file or folder {missing}" in one_line_error(
        capsys, ["measure", "--model", f"//pretrained/{missing}", "--data", str(fixture_manifest)])


@pytest.mark.slow
def test_exported_package_measures_like_its_checkpoint(trained_codec, fixture_manifest, tmp_path, capsys):
    """An exported package, named by //pretrained/ (file or folder) or by its path: the same codec as the
    training checkpoint it came from, hence the same report."""
    from audiocraft.utils.export import export_encodec

    from mmd_audiocraft.integration.seams import trusting_torch_load

    _, xp = trained_codec
    with trusting_torch_load():
        exported = export_encodec(xp / "checkpoint.th", tmp_path / "export" / "compression_state_dict.bin")
    reports = {}
    for name, spec in (("checkpoint", str(xp)), ("file", f"//pretrained/{exported}"),
                       ("folder", f"//pretrained/{exported.parent}"), ("path", str(exported))):
        out = tmp_path / f"{name}.json"
        assert cli.main(["measure", "--model", spec, "--data", str(fixture_manifest), "--max-frames", "200",
                         "--mmd-rows", "0", "--json", str(out), "--no-progress", "--trust-checkpoint"]) == 0
        capsys.readouterr()
        reports[name] = json.loads(out.read_text())
    assert reports["checkpoint"]["model_kind"] == "checkpoint"
    assert {reports[n]["model_kind"] for n in ("file", "folder", "path")} == {"exported"}
    for name in ("file", "folder", "path"):
        for key in ("n_frames", "usage", "pairwise", "total_correlation"):
            assert reports[name][key] == reports["checkpoint"][key], (name, key)


def test_gap_on_too_few_segments_is_an_input_error_naming_the_option():
    from mmd_audiocraft.core.metrics.factorization_gap import GapOptions

    codes = [np.zeros((1, 4, 50), dtype=np.int16)] * 2
    with pytest.raises(measure.MeasureInputError, match=r"--gap: need at least 3 items .* got 2"):
        measure.gap_report(codes, 128, "delay", GapOptions(seeds=(0,)))


@pytest.fixture(scope="module")
def finetuned(trained_codec, tiny_corpus, tmp_path_factory) -> Path:
    """XP folder of `trained_codec` fine-tuned with the loss for 2 updates (`continue_from`, a Dora dir of its own)."""
    source = trained_codec[1] / "checkpoint.th"
    dora_dir = tmp_path_factory.mktemp("finetuned") / "dora"
    run_dora(["run", *TINY, "losses.inde=1000", "optim.updates_per_epoch=2", f"continue_from={source}"], dora_dir,
             tiny_corpus)
    (xp,) = xp_dirs(dora_dir)
    return xp


@pytest.mark.slow
def test_measure_reference_and_stability_against_codes_encoded_here(trained_codec, finetuned, tiny_corpus, tmp_path,
                                                                    capsys):
    """A fine-tuned codec against its source (`--reference`) and re-encoding its own output (`--stability`): the
    fractions are those of the codes that audiocraft's own loader gives on the same 1 s segments, counted with
    numpy; compare shows what measure cached in the XP folder."""
    from mmd_audiocraft.apps.compare import CODE_DRIFT_FILES

    source = trained_codec[1]
    data = tiny_corpus / "music_16khz" / "evaluate"
    by_hand = {name: encode_by_hand(folder, data / "data.jsonl") for name, folder in (("ft", finetuned),
                                                                                       ("source", source))}

    def run(model: Path, *extra: str) -> tuple[dict, str]:
        out = tmp_path / f"report{len(list(tmp_path.glob('report*')))}.json"
        assert cli.main(["measure", "--model", str(model), "--data", str(data), "--segment", "1", "--mmd-rows", "0",
                         "--null-shuffles", "1", "--json", str(out), "--no-progress", "--trust-checkpoint",
                         *extra]) == 0
        return json.loads(out.read_text()), capsys.readouterr().out

    try:
        itself, _ = run(source, "--reference", str(source))
        assert itself["code_agreement"]["per_codebook"] == [1.0] * 4 and itself["code_agreement"]["joint"] == 1.0
        recon = itself["code_agreement"]["reconstruction"]
        assert recon["model"] == recon["reference"] and recon["model"]["seconds"] == 12.0

        moved, table = run(finetuned, "--reference", str(source), "--stability")
        codes, theirs = (np.concatenate(by_hand[name]["codes"], axis=1) for name in ("ft", "source"))  # [K, 600]
        agreement = moved["code_agreement"]
        assert agreement["n_codec_frames"] == codes.shape[1] == 600
        assert agreement["per_codebook"] == pytest.approx((codes == theirs).mean(axis=1).tolist(), abs=1e-12)
        assert agreement["joint"] == pytest.approx((codes == theirs).all(axis=0).mean(), abs=1e-12)
        # the fine-tune moved codes (how many varies with the platform's arithmetic: the tiny codec is barely
        # trained, its residual codebooks flip easily; the fast fake-codec test pins the joint fraction)
        assert any(0 < v < 1 for v in agreement["per_codebook"]) and agreement["joint"] < 1
        assert agreement["reference"] == str(source) and agreement["reference_source"] == str(source / "checkpoint.th")
        assert agreement["reference_info"]["num_codebooks"] == 4

        again = np.concatenate(by_hand["ft"]["again"], axis=1)
        stability = moved["code_stability"]
        assert stability["per_codebook"] == pytest.approx((codes == again).mean(axis=1).tolist(), abs=1e-12)
        assert stability["joint"] == pytest.approx((codes == again).all(axis=0).mean(), abs=1e-12)
        assert stability["joint"] < 1 and stability["reconstruction"] == agreement["reconstruction"]["model"]
        # SI-SNR of the decoded segments, by hand: every segment weighs the same (all are 1 s)
        snr = np.mean([si_snr_db(d[0], a[0], 16_000) for d, a in zip(by_hand["ft"]["decoded"],
                                                                       by_hand["ft"]["audio"])])
        assert stability["reconstruction"]["sisnr_db"] == pytest.approx(snr, abs=1e-3)
        assert stability["reconstruction"]["mel_l1"] > 0

        for text in ("How far the codes moved", f"reference: {source}\n", "= the reference's",
                     "= its own output re-encoded", "Reconstruction of the measured audio",
                     "".join(f"{v:8.3f}" for v in agreement["per_codebook"]) + f"{agreement['joint']:8.3f}",
                     "".join(f"{v:8.3f}" for v in stability["per_codebook"]) + f"{stability['joint']:8.3f}",
                     f"--reference   {_cells(agreement['reconstruction']['reference'])}",
                     f"--model       {_cells(stability['reconstruction'])}"):
            assert text in table, text
        # the reference's reconstruction is that codec's own
        own, _ = run(source, "--stability")
        assert own["code_stability"]["reconstruction"] == pytest.approx(agreement["reconstruction"]["reference"])

        assert json.loads((finetuned / CODE_DRIFT_FILES["code_agreement"]).read_text()) == agreement
        assert json.loads((finetuned / CODE_DRIFT_FILES["code_stability"]).read_text()) == stability
        assert cli.main(["compare", str(finetuned), "--json", str(tmp_path / "compare.json")]) == 0
        shown = capsys.readouterr().out
        assert "Codes (cached measure reports)" in shown
        row = json.loads((tmp_path / "compare.json").read_text())["xps"][0]
        assert row["code_agreement"] == agreement and row["code_stability"] == stability
        line = next(ln for ln in shown.splitlines() if ln.strip().startswith("0") and str(source) in ln)
        for value in (agreement["joint"], *agreement["per_codebook"], stability["joint"], *stability["per_codebook"]):
            assert f"{value:.3f}" in line
        mel = agreement["reconstruction"]
        assert f"{mel['model']['mel_l1']:.4f} / {mel['reference']['mel_l1']:.4f}" in line
    finally:
        for name in CODE_DRIFT_FILES.values():  # the source XP is shared by the session's tests
            (source / name).unlink(missing_ok=True)
