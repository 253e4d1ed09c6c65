"""How long `mmd-audiocraft measure` takes per hour of 32 kHz audio, with and without `--gap`; prints JSON.

The library call behind the command (`apps/measure.py`: `load_compression_model`, then `measure_model` with the
command's defaults: delay pattern, 10 s segments, batches of 8, 4096 MMD rows, 3 null shuffles; `--gap` adds the
factorization gap with `--gap-seeds` predictor seeds, fitted on the measured segments split 3/1/1) is timed on the
first --minutes of the demo corpus's 32 kHz held-out split (`~/.cache/mmd-audiocraft/corpus/music_32khz/evaluate`,
built by `make demo` or `python -m mmd_audiocraft.apps.demo.corpus`), for two codec architectures:
- paper: solver=compression/encodec_mmd_musicgen_32khz (audiocraft's encodec_large_nq4_s640, 32 kHz, 4 x 2048
  codes at 50 Hz);
- tiny:  solver=compression/encodec_mmd_tiny (the demo's codec, 16 kHz, 4 x 128 codes at 50 Hz: the 32 kHz audio
  is resampled, as `measure` does for any codec).
Weights are untrained except the codebooks, which are initialised on --init-seconds of the train split by
audiocraft's k-means init of the first training step (one iteration instead of 50: the init, not the timing, costs
minutes), so that codes vary over the codebooks like a trained codec's: the timing depends on the architecture and
the amount of audio, not on what the codec learned. Each codec is saved as an exported package
and loaded through `//pretrained/PATH`, as the command loads it. Reported per codec and mode: wall seconds of
`measure_model`, seconds per hour of audio (extrapolated linearly from the measured minutes), and the load's
seconds (once per run, not per hour).

    python benchmarks/bench_measure.py [--minutes 3] [--codecs paper tiny] [--gap-seeds 3] [--threads N]
        [--json benchmarks/results/measure_runtime.json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CODECS = {
    "paper": "solver=compression/encodec_mmd_musicgen_32khz",
    "tiny": "solver=compression/encodec_mmd_tiny",
}


def corpus_root() -> Path:
    from mmd_audiocraft.apps.demo import corpus

    return corpus.default_corpus_dir()


def first_minutes(manifest: Path, minutes: float):
    """The manifest's files, in order, up to `minutes` of audio (the last file cut by `measure`'s segments)."""
    from mmd_audiocraft.apps.manifest import read_manifest

    _, files = read_manifest(manifest)
    out, seconds = [], 0.0
    for f in files:
        if seconds >= minutes * 60:
            break
        out.append(f)
        seconds += f.duration
    return out


def export_codec(name: str, folder: Path, init_files, init_seconds: float) -> str:
    """The codec of CODECS[name] with k-means-initialised codebooks, saved as an exported package."""
    import torch
    from audiocraft.models import builders
    from omegaconf import OmegaConf

    from mmd_audiocraft.apps.manifest import plan_segments, read_segment
    from mmd_audiocraft.train import main

    cfg = main.get_xp([CODECS[name], "dset=audio/mmd_music_32khz"]).cfg
    cfg.device = "cpu"
    cfg.rvq.kmeans_iters = 1
    torch.manual_seed(0)
    model = builders.get_compression_model(cfg)
    sr, seconds, batch = int(model.sample_rate), 0.0, []
    for seg in plan_segments(init_files, 1.0):
        wav = read_segment(seg, sr, int(model.channels))
        if wav.shape[-1] == sr:
            batch.append(wav)
            seconds += 1.0
        if seconds >= init_seconds:
            break
    model.train()
    with torch.no_grad():
        model(torch.stack(batch))  # the codebooks' k-means init, on the first forward in training mode
    model.eval()
    path = folder / name / "compression_state_dict.bin"
    path.parent.mkdir(parents=True)
    torch.save({"exported": True, "xp.cfg": OmegaConf.to_yaml(cfg), "best_state": model.state_dict()}, path)
    return f"//pretrained/{path}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=3.0, help="minutes of held-out audio measured (default 3)")
    ap.add_argument("--codecs", nargs="+", default=list(CODECS), choices=list(CODECS))
    ap.add_argument("--gap-seeds", type=int, default=3, help="predictor seeds of --gap (default 3, the command's)")
    ap.add_argument("--init-seconds", type=float, default=40.0, help="train audio for the k-means init")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = ap.parse_args()

    import torch

    from mmd_audiocraft.apps.json_output import provenance, write_json
    from mmd_audiocraft.apps.manifest import read_manifest
    from mmd_audiocraft.apps.measure import measure_model
    from mmd_audiocraft.core.metrics.factorization_gap import GapOptions
    from mmd_audiocraft.integration.loaders import load_compression_model
    from mmd_audiocraft.integration.process import prepare_process

    prepare_process()
    if args.threads:
        torch.set_num_threads(args.threads)
    root = corpus_root() / "music_32khz"
    files = first_minutes(root / "evaluate", args.minutes)
    init_files = read_manifest(root / "train")[1]
    load_before = os.getloadavg()
    result = {**provenance(), "benchmark": "bench_measure", "torch_threads": torch.get_num_threads(),
              "torch": torch.__version__, "data": str(root / "evaluate"), "n_files": len(files),
              "load_average_before": [round(x, 2) for x in load_before], "gap_seeds": args.gap_seeds,
              "codecs": {}}
    with tempfile.TemporaryDirectory(prefix="mmd_bench_measure_") as tmp:
        for name in args.codecs:
            spec = export_codec(name, Path(tmp), init_files, args.init_seconds)
            t0 = time.perf_counter()
            loaded = load_compression_model(spec)
            load_s = time.perf_counter() - t0
            out = {"solver": CODECS[name].split("=", 1)[1], "model_info": dict(loaded.info),
                   "parameters": sum(p.numel() for p in loaded.model.parameters()), "load_s": round(load_s, 2)}
            for mode, gap in (("measure", None), ("measure_gap", GapOptions(seeds=tuple(range(args.gap_seeds))))):
                t0 = time.perf_counter()
                report = measure_model(loaded, files, gap=gap, progress=False)
                seconds = time.perf_counter() - t0
                hours = report["audio_seconds"] / 3600
                out[mode] = {"seconds": round(seconds, 1), "audio_seconds": round(report["audio_seconds"], 1),
                             "seconds_per_hour": round(seconds / hours), "n_frames": report["n_frames"]}
                print(f"{name} {mode}: {seconds:.1f} s for {report['audio_seconds'] / 60:.1f} min of audio "
                      f"-> {seconds / hours / 60:.1f} min per hour", file=sys.stderr, flush=True)
            out["gap_over_plain"] = round(out["measure_gap"]["seconds"] / out["measure"]["seconds"], 2)
            result["codecs"][name] = out
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result, indent=1))
    if args.json:
        write_json(result, args.json)


if __name__ == "__main__":
    main()
