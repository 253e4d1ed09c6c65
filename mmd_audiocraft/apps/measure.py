"""`mmd-audiocraft measure`: how dependent are a trained codec's codebooks on a dataset?

Every file of an audiocraft manifest is read in order, in fixed segments (no random sampling), converted to
the codec's sample rate and channels, and encoded. Codes are grouped into the tuples an LM predicts together
(delay or parallel pattern, within each segment) and counted with `CodeCounts` (memory bounded by distinct
tuples), which gives `independence_report`. Each codebook's quantized vectors (decoded per codebook) are kept
as a uniform random sample of rows for an MMD^2 estimate of the same dependence in vector space.

The result is a JSON-ready dict: `independence_report`'s keys (its `schema_version` included) plus

    schema            MEASURE_SCHEMA, the version of the keys below
    model, model_source, model_kind, model_info   MODEL as given, resolved file or name, how it was loaded,
                      {class, sample_rate, channels, frame_rate, num_codebooks, bins, quantizer?}
    data, n_files, segment_seconds, n_segments, skipped_segments, audio_seconds, n_codec_frames
                      manifest read; segments encoded (shorter than K frames: skipped); codec frames seen
    pattern, delays   grouping of codes into tuples (delays: null for parallel)
    max_frames        the --max-frames cap (null: none); n_frames <= max_frames
    mmd               {rows, kernel, bandwidths, bandwidth_mode, seed, disjoint, paper, note}: MMD^2 of a
                      uniform sample of `rows` vector tuples; null values when unavailable (reason in note)
    factorization_gap (with gap=GapOptions) `metrics.factorization_gap`'s dict, predictors fitted and scored on
                      the segments split by index (`split_by_index`: 3 of 5 fit, 1 valid, 1 test), or the
                      codes given as `gap_fit`/`gap_valid` (then every measured segment is the test split)
    code_agreement    (with reference=LoadedModel) how far the codes moved from the reference codec's (e.g. the
                      source of a fine-tune): {reference, reference_source, reference_kind, reference_info,
                      per_codebook, joint, n_codec_frames, reconstruction: {model, reference}}: per codebook the
                      fraction of the n_codec_frames positions (segment x frame) where both codecs give the same
                      code for the same audio, joint the fraction where all K do (`metrics.code_agreement`), and
                      each codec's reconstruction of that audio
    code_stability    (with stability=True) {per_codebook, joint, n_codec_frames, reconstruction}: the same
                      fractions between the codes of the audio and those of its decoded audio encoded again
                      (encode, decode, encode), and the codec's reconstruction
                      reconstruction: {mel_l1, sisnr_db, seconds} (`integration.reconstruction`: audiocraft's
                      log-mel L1 and SI-SNR on fixed settings, duration-weighted over the segments)
"""
from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..core.kernels import Kernel
from ..core.metrics import CodeCounts, code_agreement, codes_to_rows, independence_report
from ..core.metrics.factorization_gap import GapOptions, factorization_gap, split_by_index
from ..core.patterns import group_rows
from ..core.patterns import min_frames as pattern_min_frames
from ..core.sampling import VectorSample
from ..integration.loaders import LoadedModel, load_compression_model
from .manifest import AudioFile, ManifestError, plan_segments, read_manifest, read_segment

__all__ = ["MEASURE_SCHEMA", "PATTERNS", "MeasureInputError", "measure_model", "measure", "encode_files",
           "gap_report", "check_reference", "CodeDrift"]

MEASURE_SCHEMA = "mmd-audiocraft/measure/1"
PATTERNS = ("delay", "parallel")
MMD_KERNEL = Kernel()  # the paper's, fixed, so that numbers of different codecs compare


class MeasureInputError(ManifestError):
    """Bad data or options for a measurement (a user error, reported in one line)."""


# ---------------------------------------------------------------------------------------------- codes
def check_encoded_codes(codes, batch: int, num_codebooks: int, bins: int) -> torch.Tensor:
    """Codes from model.encode must be integers [batch, K, T] in [0, bins)."""
    if isinstance(codes, (tuple, list)):
        codes = codes[0]
    if not isinstance(codes, torch.Tensor):
        raise MeasureInputError(f"model.encode returned a {type(codes).__name__}, expected codes [B, K, T]")
    if codes.dim() != 3 or codes.shape[0] != batch or codes.shape[1] != num_codebooks:
        raise MeasureInputError(f"model.encode returned codes of shape {tuple(codes.shape)}, expected "
                                f"[{batch}, {num_codebooks}, T]")
    if codes.is_floating_point() or codes.is_complex() or codes.dtype == torch.bool:
        raise MeasureInputError(f"model.encode returned codes of dtype {codes.dtype}, expected integers")
    if codes.numel():
        lo, hi = int(codes.min()), int(codes.max())
        if lo < 0 or hi >= bins:
            raise MeasureInputError(f"model.encode returned codes in [{lo}, {hi}], outside [0, {bins}) for the "
                                    f"model's cardinality {bins}")
    return codes


def _scale_of(encoded):
    """The scale `model.encode` returns beside the codes (renormalising codecs), else None."""
    return encoded[1] if isinstance(encoded, (tuple, list)) and len(encoded) > 1 else None


def codebook_vectors(model, codes: torch.Tensor) -> torch.Tensor | None:
    """Each codebook's quantized vector for `codes` [B, K, T]: [B, K, T, N], or None without VQ layers."""
    from ..integration.capture import codebook_layers

    quantizer = getattr(model, "quantizer", None)
    if quantizer is None:
        return None
    try:
        layers = codebook_layers(quantizer)
    except ValueError:
        return None
    if len(layers) < codes.shape[1] or not all(hasattr(layer, "decode") for layer in layers):
        return None
    vectors = [layers[k].decode(codes[:, k]) for k in range(codes.shape[1])]  # each [B, N, T]
    return torch.stack(vectors, dim=1).transpose(2, 3).float()


def mmd_estimates(sample: VectorSample, seed: int, note: str | None = None) -> dict:
    """MMD^2 between joint vector tuples and their factorized copy, both estimators, fixed kernel."""
    from ..core.loss import independence_loss_from_rows

    out = {"rows": 0 if sample.rows is None else int(sample.rows.shape[0]), "kernel": MMD_KERNEL.name,
           "bandwidths": list(MMD_KERNEL.bandwidths_used),
           "bandwidth_mode": MMD_KERNEL.bandwidth_mode, "seed": int(seed),
           "disjoint": None, "paper": None, "note": note}
    if sample.rows is None:
        out["note"] = note or "no vectors were sampled"
        return out
    with torch.no_grad():
        for estimator in ("disjoint", "paper"):
            generator = torch.Generator().manual_seed(int(seed))
            try:
                value = independence_loss_from_rows(sample.rows, estimator=estimator, kernel=MMD_KERNEL,
                                                    generator=generator)
            except ValueError as exc:  # too few rows for this estimator
                out["note"] = str(exc)
                continue
            out[estimator] = float(value)
    return out


# ---------------------------------------------------------------------------------------------- code drift
def _codec_shape(model) -> tuple:
    return (int(model.sample_rate), int(model.channels), float(model.frame_rate), int(model.num_codebooks),
            int(model.cardinality))


def check_reference(loaded: LoadedModel, reference: LoadedModel) -> None:
    """The reference codec must tokenize audio like the measured one, position by position: same sample rate,
    channels, frame rate, number of codebooks and cardinality; else MeasureInputError (one line)."""
    def described(model) -> str:
        sr, channels, frame_rate, k, bins = _codec_shape(model)
        return f"{sr} Hz, {channels} channel(s), {k} x {bins} codes at {frame_rate:g} Hz"

    if _codec_shape(loaded.model) != _codec_shape(reference.model):
        raise MeasureInputError(
            f"--reference {reference.spec}: {described(reference.model)}, but --model {loaded.spec} is "
            f"{described(loaded.model)}: code agreement compares both codecs' codes of the same audio position by "
            "position, so they need the same sample rate, channels, frame rate, number of codebooks and "
            "cardinality (give the codec this one was fine-tuned from)")


class CodeDrift:
    """Code agreement with a reference codec and code stability under re-encoding, over the measured batches.

    `add(x, codes, scale)` takes a batch of audio [B, C, L] and the measured codec's codes [B, K, T] and scale
    (from its `encode`); codes are kept (int32, K x 4 bytes per frame and kind) until `report()`, which gives
    `metrics.code_agreement` of all positions at once, with each codec's reconstruction (see the module docstring's
    code_agreement and code_stability).
    """

    def __init__(self, loaded: LoadedModel, reference: LoadedModel | None = None, stability: bool = False):
        from ..integration.reconstruction import Reconstruction

        self.model, self.reference, self.stability = loaded.model, reference, stability
        self.K, self.bins = int(self.model.num_codebooks), int(self.model.cardinality)
        self.reconstruction = Reconstruction(int(self.model.sample_rate))
        self.reference_reconstruction = Reconstruction(int(self.model.sample_rate))
        self.agreement: tuple[list, list] = ([], [])
        self.stable: tuple[list, list] = ([], [])

    @staticmethod
    def _decoded(model, codes: torch.Tensor, scale, length: int) -> torch.Tensor:
        audio = model.decode(codes, scale)
        if audio.shape[-1] < length:
            raise MeasureInputError(f"{type(model).__name__}.decode returned {audio.shape[-1]} samples for "
                                    f"{codes.shape[-1]} frames of {length} samples: cannot compare it with the audio")
        return audio[..., :length]

    def _keep(self, kept: tuple[list, list], codes: torch.Tensor, other: torch.Tensor) -> None:
        for out, c in zip(kept, (codes, other)):
            out.append(c.cpu().numpy().astype(np.int32).transpose(1, 0, 2).reshape(self.K, -1))  # [K, B * T]

    def add(self, x: torch.Tensor, codes: torch.Tensor, scale) -> None:
        batch, length = x.shape[0], x.shape[-1]
        with torch.no_grad():
            decoded = self._decoded(self.model, codes, scale, length)
            self.reconstruction.add(decoded, x)
            if self.stability:
                again = check_encoded_codes(self.model.encode(decoded), batch, self.K, self.bins)
                self._keep(self.stable, codes, again)
            if self.reference is not None:
                encoded = self.reference.model.encode(x)
                other = check_encoded_codes(encoded, batch, self.K, self.bins)
                self.reference_reconstruction.add(
                    self._decoded(self.reference.model, other, _scale_of(encoded), length), x)
                self._keep(self.agreement, codes, other)

    @staticmethod
    def _agreement(kept: tuple[list, list]) -> dict:
        codes, other = (np.concatenate(k, axis=1)[None] for k in kept)  # [1, K, all positions]
        return {**code_agreement(codes, other), "n_codec_frames": int(codes.shape[-1])}

    def report(self) -> dict:
        out = {}
        if self.reference is not None:
            ref = self.reference
            out["code_agreement"] = {
                "reference": ref.spec, "reference_source": ref.source, "reference_kind": ref.kind,
                "reference_info": dict(ref.info), **self._agreement(self.agreement),
                "reconstruction": {"model": self.reconstruction.result(),
                                   "reference": self.reference_reconstruction.result()}}
        if self.stability:
            out["code_stability"] = {**self._agreement(self.stable), "reconstruction": self.reconstruction.result()}
        return out


# ---------------------------------------------------------------------------------------------- measure
def _check_options(pattern, max_frames, batch_size, segment_seconds, mmd_rows, null_shuffles):
    if pattern not in PATTERNS:
        raise MeasureInputError(f"--pattern {pattern}: expected one of {', '.join(PATTERNS)}")
    if max_frames is not None and int(max_frames) < 1:
        raise MeasureInputError(f"--max-frames {max_frames}: expected a positive number of code tuples")
    if int(batch_size) < 1:
        raise MeasureInputError(f"--batch-size {batch_size}: expected >= 1")
    if not (segment_seconds > 0 and math.isfinite(segment_seconds)):
        raise MeasureInputError(f"--segment {segment_seconds}: expected a positive number of seconds")
    if int(mmd_rows) < 0:
        raise MeasureInputError(f"--mmd-rows {mmd_rows}: expected >= 0 (0 skips the MMD estimate)")
    if int(null_shuffles) < 0:
        raise MeasureInputError(f"--null-shuffles {null_shuffles}: expected >= 0")


def _check_device(device: str) -> str:
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise MeasureInputError(f"--device {device}: not a torch device ({exc})") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MeasureInputError(f"--device {device}: CUDA is not available on this machine")
    return str(dev)


def measure_model(loaded: LoadedModel, files: Sequence[AudioFile], *, pattern: str = "delay",
                  max_frames: int | None = None, batch_size: int = 8, segment_seconds: float = 10.0,
                  device: str = "cpu", mmd_rows: int = 4096, null_shuffles: int = 3, seed: int = 0,
                  progress: bool | None = None, gap: GapOptions | None = None, gap_fit=None,
                  gap_valid=None, reference: LoadedModel | None = None, stability: bool = False) -> dict:
    """Stream `files` through the loaded codec and return the measurement dict (see module docstring).

    With `gap`, the measured segments' codes are kept (int16, about 4 MB per hour of 50 Hz x 4 codes) for the
    factorization gap; `gap_fit`/`gap_valid` are codes ([B, K, T] arrays or lists, e.g. from `encode_files`)
    of other splits to fit the predictors on. With `reference` (checked by `check_reference`; raises
    MeasureInputError) the same segments are encoded and decoded by it too (code_agreement); with `stability`
    the measured codec decodes them and encodes its output again (code_stability). Both cost a decode per
    segment and codec, and one more encode (about 3x the plain measurement for the same codec).
    """
    from tqdm import tqdm

    _check_options(pattern, max_frames, batch_size, segment_seconds, mmd_rows, null_shuffles)
    if reference is not None:
        check_reference(loaded, reference)
    drift = CodeDrift(loaded, reference, stability) if reference is not None or stability else None
    model = loaded.model
    K, bins = int(model.num_codebooks), int(model.cardinality)
    if K < 2:
        raise MeasureInputError(f"the model encodes with {K} codebook: dependence needs at least 2")
    sr, channels, frame_rate = int(model.sample_rate), int(model.channels), float(model.frame_rate)
    delays = list(range(K)) if pattern == "delay" else None
    min_frames = pattern_min_frames(pattern, K)
    min_samples = math.ceil(min_frames * sr / frame_rate)  # a segment must give at least one tuple

    segments = plan_segments(files, segment_seconds)
    counts = CodeCounts(K, bins)
    sample = VectorSample(mmd_rows, seed)
    mmd_note = None
    stats = {"n_segments": 0, "skipped_segments": 0, "audio_samples": 0, "n_codec_frames": 0}
    kept_codes: list[np.ndarray] = []
    bar = tqdm(total=len(segments), unit="seg", desc="encoding", file=sys.stderr,
               disable=None if progress is None else not progress, dynamic_ncols=True)

    def encode(batch: list[torch.Tensor]) -> bool:
        """Count one batch of equal-length segments; False once max_frames tuples are counted."""
        nonlocal mmd_note
        x = torch.stack(batch).to(device)
        with torch.no_grad():
            encoded = model.encode(x)
            codes = check_encoded_codes(encoded, len(batch), K, bins)
            vectors = codebook_vectors(model, codes) if mmd_rows > 0 else None
        if drift is not None:
            drift.add(x, codes, _scale_of(encoded))
        codes_np = codes.cpu().numpy()
        rows = codes_to_rows(codes_np, pattern)
        if max_frames is not None:
            rows = rows[: int(max_frames) - counts.n_frames]
        counts.update(rows)
        if gap is not None:
            kept_codes.extend(codes_np.astype(np.int16)[:, None])
        if vectors is not None:
            sample.add(group_rows(vectors.cpu(), pattern)[: rows.shape[0]])
        elif mmd_rows > 0:
            mmd_note = f"{type(getattr(model, 'quantizer', model)).__name__} has no per-codebook VQ layers " \
                       "with decode(): no vectors for an MMD estimate"
        stats["n_segments"] += len(batch)
        stats["audio_samples"] += x.shape[0] * x.shape[-1]
        stats["n_codec_frames"] += codes.shape[0] * codes.shape[-1]
        bar.update(len(batch))
        bar.set_postfix(tuples=counts.n_frames, refresh=False)
        return max_frames is None or counts.n_frames < int(max_frames)

    try:
        pending: list[torch.Tensor] = []
        going = True
        for seg in segments:
            wav = read_segment(seg, sr, channels)
            if wav.shape[-1] < min_samples:  # too short for one tuple (a file's tail, or an empty read)
                stats["skipped_segments"] += 1
                bar.update(1)
                continue
            if pending and (len(pending) == batch_size or wav.shape[-1] != pending[0].shape[-1]):
                going = encode(pending)
                pending = []
                if not going:
                    break
            pending.append(wav)
        if going and pending:
            encode(pending)
    finally:
        bar.close()

    if counts.n_frames == 0:
        raise MeasureInputError(f"no code tuples were counted from {len(files)} file(s): every segment is "
                                f"shorter than {min_frames} codec frame(s) ({min_samples / sr:.3f} s)")
    report = independence_report(counts, null_shuffles=null_shuffles, seed=seed)
    result = {"schema": MEASURE_SCHEMA, **report}
    result.update(
        model=loaded.spec, model_source=loaded.source, model_kind=loaded.kind, model_info=dict(loaded.info),
        n_files=len(files), segment_seconds=float(segment_seconds), n_segments=stats["n_segments"],
        skipped_segments=stats["skipped_segments"], audio_seconds=stats["audio_samples"] / sr,
        n_codec_frames=stats["n_codec_frames"], pattern=pattern, delays=delays,
        max_frames=None if max_frames is None else int(max_frames),
        mmd=mmd_estimates(sample, seed, mmd_note if mmd_rows > 0 else "skipped (--mmd-rows 0)"),
    )
    if gap is not None:
        result["factorization_gap"] = gap_report(kept_codes, bins, pattern, gap, gap_fit, gap_valid, progress)
    if drift is not None:
        result.update(drift.report())
    return result


def gap_report(codes: list, bins: int, pattern: str, options: GapOptions, fit=None, valid=None,
               progress: bool | None = None) -> dict:
    """`factorization_gap` of the measured codes (one [1, K, T] array per segment), with a progress bar."""
    from tqdm import tqdm

    if fit is None:
        try:
            fit, valid, codes = split_by_index(codes)
        except ValueError as exc:  # too few segments: a user error, one line from the CLI
            raise MeasureInputError(f"--gap: {exc}; measure more data or a shorter --segment") from exc
    k = codes[0].shape[1]
    with tqdm(total=len(options.seeds) * (k - 1) * 2, unit="predictor", desc="factorization gap", file=sys.stderr,
              disable=None if progress is None else not progress, dynamic_ncols=True) as bar:
        def told(msg: str) -> None:
            bar.set_postfix_str(msg, refresh=False)
            bar.update(1)

        return factorization_gap(fit, codes, bins, valid=valid, pattern=pattern, options=options, progress=told)


def encode_files(loaded: LoadedModel, files: Sequence[AudioFile], *, segment_seconds: float = 10.0,
                 max_seconds: float | None = None, device: str = "cpu",
                 desc: str = "encoding", progress: bool | None = None) -> list[np.ndarray]:
    """Codes of `files` in fixed segments: a list of int16 arrays [1, K, T] (one per segment, file order), up to
    `max_seconds` of audio. For the factorization gap's fit and validation splits."""
    from tqdm import tqdm

    model = loaded.model
    sr, channels = int(model.sample_rate), int(model.channels)
    K, bins = int(model.num_codebooks), int(model.cardinality)
    segments = plan_segments(files, segment_seconds)
    out: list[np.ndarray] = []
    seconds = 0.0
    with tqdm(total=len(segments), unit="seg", desc=desc, file=sys.stderr, dynamic_ncols=True,
              disable=None if progress is None else not progress) as bar:
        for seg in segments:
            wav = read_segment(seg, sr, channels)
            bar.update(1)
            if wav.shape[-1] < sr:  # tails under a second
                continue
            with torch.no_grad():
                codes = check_encoded_codes(model.encode(wav[None].to(device)), 1, K, bins)
            out.append(codes.cpu().numpy().astype(np.int16))
            seconds += wav.shape[-1] / sr
            if max_seconds is not None and seconds >= max_seconds:
                break
    return out


def measure(model: str, data: str | Path, *, pattern: str = "delay", max_frames: int | None = None,
            batch_size: int = 8, segment_seconds: float = 10.0, device: str = "cpu", mmd_rows: int = 4096,
            null_shuffles: int = 3, seed: int = 0, progress: bool | None = None,
            trust_checkpoint: bool | None = None, gap: GapOptions | None = None, reference: str | None = None,
            stability: bool = False) -> dict:
    """Load MODEL (and the REFERENCE codec, any form MODEL takes), read the manifest DATA and measure; bad input
    raises MeasureInputError/ModelLoadError.

    Options and data are checked before the models are loaded, so mistakes fail in a second.
    """
    _check_options(pattern, max_frames, batch_size, segment_seconds, mmd_rows, null_shuffles)
    device = _check_device(device)
    manifest, files = read_manifest(data)
    loaded = load_compression_model(model, device=device, trust_checkpoint=trust_checkpoint)
    other = None
    if reference is not None:
        other = load_compression_model(reference, device=device, trust_checkpoint=trust_checkpoint, key="--reference")
        check_reference(loaded, other)
    result = measure_model(loaded, files, pattern=pattern, max_frames=max_frames, batch_size=batch_size,
                           segment_seconds=segment_seconds, device=device, mmd_rows=mmd_rows,
                           null_shuffles=null_shuffles, seed=seed, progress=progress, gap=gap, reference=other,
                           stability=stability)
    result["data"] = str(manifest.resolve())
    return result
