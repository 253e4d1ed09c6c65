"""`make demo`: the paper's claim on real music, on a laptop CPU, in minutes.

Builds the real-music corpus if missing, trains tiny EnCodecs through the real audiocraft solver
(`dora -P mmd_audiocraft run`) with and without the independence loss (same seed, same steps), then measures
each on the held-out split: MMD, pairwise total correlation (raw, shuffle-null, corrected; bits and %),
I(z_k; rest) per codebook, codebook usage, the MMD/reconstruction gradient ratio seen in training, and
reconstruction (SI-SNR, log-mel L1). Prints a side-by-side table, writes demo_results.json and a PNG.

    python -m mmd_audiocraft.demo [--quick] [--fresh] [--weights 0 1000] [--grad-ratio 0.1]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ..plugin import install_quantizers, prepare_process

FULL = {"epochs": 8, "updates": 50}   # 400 updates: codebooks in use, reconstruction converging (calibration)
QUICK = {"epochs": 2, "updates": 8}   # CI: every stage runs, numbers are not meaningful
SEED = 42


def _log(msg: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _cache_dir() -> Path:
    return Path(os.environ.get("MMD_AUDIOCRAFT_CACHE", Path.home() / ".cache" / "mmd-audiocraft"))


def codec_runs(weights: list[float], grad_ratio: float | None) -> dict[str, list[str]]:
    """Name -> the overrides that differ between the demo's codecs."""
    runs = {f"inde={w:g}": [f"losses.inde={w:g}"] for w in weights}
    if grad_ratio is not None:
        runs[f"grad_ratio={grad_ratio:g}"] = ["losses.inde=1000", f"inde.grad_ratio={grad_ratio:g}"]
    return runs


def common_args(budget: dict) -> list[str]:
    epochs = budget["epochs"]
    return ["solver=compression/encodec_mmd_tiny", "dset=audio/mmd_music_16khz", f"seed={SEED}",
            f"optim.epochs={epochs}", f"optim.updates_per_epoch={budget['updates']}",
            f"dataset.train.num_samples={16 * budget['updates']}", f"evaluate.every={epochs}",
            f"generate.every={epochs}", "dataset.evaluate.num_samples=16"]


def train_all(runs: dict[str, list[str]], base: list[str], env: dict) -> dict[str, str]:
    """Train every codec in parallel subprocesses (one thread each); returns name -> XP signature."""
    from ..train import main  # after the environment variables: it reads the Dora dir at import

    sigs = {name: main.get_xp(base + extra).sig for name, extra in runs.items()}
    procs, logs = {}, {}
    for name, extra in runs.items():
        xp_dir = main.dora.dir / "xps" / sigs[name]
        xp_dir.mkdir(parents=True, exist_ok=True)
        logs[name] = xp_dir / "demo_train.log"
        cmd = [sys.executable, "-m", "dora", "-P", "mmd_audiocraft", "run", *base, *extra]
        procs[name] = subprocess.Popen(cmd, env=env, stdout=logs[name].open("w"), stderr=subprocess.STDOUT)
        _log(f"training codec {name} (XP {sigs[name]}), log: {logs[name]}")
    epochs = int(next(a for a in base if a.startswith("optim.epochs=")).split("=")[1])
    while any(p.poll() is None for p in procs.values()):
        time.sleep(15)
        status = ", ".join(f"{n}: epoch {_epochs_done(main.dora.dir / 'xps' / sigs[n])}/{epochs}" for n in runs)
        _log(f"training... {status}")
    failed = [n for n, p in procs.items() if p.returncode != 0]
    if failed:
        tails = "\n".join(f"--- {n}:\n" + logs[n].read_text()[-3000:] for n in failed)
        raise SystemExit(f"demo: training failed for {failed}\n{tails}")
    return sigs


def _epochs_done(xp_dir: Path) -> int:
    try:
        return len(json.loads((xp_dir / "history.json").read_text()))
    except (OSError, ValueError):
        return 0


def training_summary(xp_dir: Path) -> dict:
    """What the last training epoch logged: the loss value, its gradient ratio and codebook usage."""
    last = json.loads((xp_dir / "history.json").read_text())[-1]
    keys = ("inde", "inde_weight", "inde_grad_ratio", "msspec", "l1")
    return {k: last["train"][k] for k in keys if k in last["train"]}


def reconstruction(model, files, max_seconds: float, segment_seconds: float = 5.0) -> dict:
    """SI-SNR (dB) and log-mel L1 of the codec's output on the first `max_seconds` of the held-out files.

    SI-SNR is reported because audiocraft reports it, but it is near meaningless for tiny codecs (every model
    reads around -40 dB); the log-mel distance is the reconstruction number to compare.
    """
    import torch
    import torchaudio

    from ..manifest import plan_segments, read_segment

    mel = torchaudio.transforms.MelSpectrogram(model.sample_rate, n_fft=1024, hop_length=256, n_mels=64)
    si_snr, mel_l1, seconds = [], [], 0.0
    for seg in plan_segments(files, segment_seconds):
        x = read_segment(seg, model.sample_rate, model.channels)
        if x.shape[-1] < model.sample_rate:
            continue
        with torch.no_grad():
            y = model(x[None]).x[0, :, : x.shape[-1]]
        target = x * (y * x).sum() / (x * x).sum().clamp_min(1e-8)  # the best scaling of x
        err = y - target
        si_snr.append(10 * torch.log10(target.pow(2).sum().clamp_min(1e-8) / err.pow(2).sum().clamp_min(1e-8)))
        mel_l1.append((torch.log10(mel(y).clamp_min(1e-5)) - torch.log10(mel(x).clamp_min(1e-5))).abs().mean())
        seconds += x.shape[-1] / model.sample_rate
        if seconds >= max_seconds:
            break
    return {"si_snr_db": float(torch.stack(si_snr).mean()), "log_mel_l1": float(torch.stack(mel_l1).mean()),
            "seconds": round(seconds, 1)}


def evaluate_codec(sig: str, test_manifest: Path, quick: bool) -> dict:
    """Independence and reconstruction of one trained codec on the held-out split (the codec loaded once)."""
    from ..manifest import read_manifest
    from ..measure import measure_model
    from ..models import load_compression_model

    install_quantizers()
    loaded = load_compression_model(f"//sig/{sig}")
    manifest, files = read_manifest(test_manifest)
    report = measure_model(loaded, files, pattern="delay", max_frames=20_000 if quick else None, progress=False)
    report["data"] = str(manifest.resolve())
    return {"report": report, "mmd": report.get("mmd"),
            "reconstruction": reconstruction(loaded.model, files, max_seconds=60 if quick else 300)}


def _row(label: str, values: list, fmt: str = "{:.3f}") -> str:
    cells = [("-" if v is None else fmt.format(v)) for v in values]
    return f"{label:<38}" + "".join(f"{c:>18}" for c in cells)


def print_table(results: dict[str, dict]) -> None:
    names = list(results)
    print("\n" + _row("", names, "{}"))
    get = lambda path: [_dig(results[n], path) for n in names]  # noqa: E731
    lines = [
        ("held-out MMD^2 (paper estimator)", ("mmd", "paper")),
        ("held-out MMD^2 (disjoint, unbiased)", ("mmd", "disjoint")),
        ("pair TC raw, % joint H (paper)", ("report", "protocol", "raw_pct_joint")),
        ("pair TC shuffle-null, % joint H", ("report", "protocol", "null_pct_joint")),
        ("pair TC corrected, % joint H", ("report", "protocol", "corrected_pct_joint")),
        ("pair TC corrected, bits", ("report", "protocol", "corrected_bits")),
        ("pair TC corrected, % sum marg. H", ("report", "protocol", "corrected_pct_marginal_sum")),
    ]
    for label, path in lines:
        print(_row(label, get(path), "{:.4f}" if "MMD" in label else "{:.3f}"))
    k = len(_dig(results[names[0]], ("report", "usage")) or [])
    saturated = False
    for q in range(k):
        recs = [_dig(results[n], ("report", "each_vs_rest", q)) or {} for n in names]
        saturated |= any((r.get("joint_distinct_fraction") or 0) > 0.5 for r in recs)
        print(_row(f"I(z_{q}; rest) corrected, bits", [r.get("corrected_bits") for r in recs]))
    for q in range(k):
        print(_row(f"codebook {q} entropy, bits", [_dig(results[n], ("report", "usage", q, "entropy_bits"))
                                                    for n in names]))
    print(_row("train: |grad MMD| / |grad rec| at enc.", get(("training", "inde_grad_ratio")), "{:.3g}"))
    print(_row("SI-SNR, dB (higher is better)", get(("reconstruction", "si_snr_db")), "{:.2f}"))
    print(_row("log-mel L1 (lower is better)", get(("reconstruction", "log_mel_l1")), "{:.3f}"))
    if saturated:
        print("note: I(z_k; rest) needs the joint histogram of the other codebooks, which is saturated on this much\n"
              "held-out audio (most tuples seen once: joint_distinct_fraction > 0.5 in the JSON); read the pairwise\n"
              "numbers instead.")
    print()


def _dig(obj, path):
    for key in path:
        if obj is None:
            return None
        try:
            obj = obj[key]
        except (KeyError, IndexError, TypeError):
            return None
    return obj


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmd_audiocraft.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny budget and corpus, for CI (<= 3 min)")
    parser.add_argument("--fresh", action="store_true", help="retrain even if the demo's XPs exist")
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 1000.0])
    parser.add_argument("--grad-ratio", type=float, default=None,
                        help="also train a codec in the weight-free mode with this gradient ratio")
    parser.add_argument("--out", type=Path, default=Path("demo_results.json"))
    args = parser.parse_args(argv)
    start = time.time()
    prepare_process()
    from . import corpus

    _log("corpus: " + ("quick" if args.quick else "full") + " (built once, then cached)")
    corpus_root = corpus.build(sample_rates=(16000,), quick=args.quick)
    demo_dir = _cache_dir() / ("demo-quick" if args.quick else "demo")
    if args.fresh and demo_dir.exists():
        shutil.rmtree(demo_dir)
    env = dict(os.environ, MMD_AUDIOCRAFT_CORPUS=str(corpus_root), AUDIOCRAFT_DORA_DIR=str(demo_dir / "dora"),
               HF_HUB_OFFLINE=os.environ.get("HF_HUB_OFFLINE", "1"))
    os.environ.update({k: env[k] for k in ("MMD_AUDIOCRAFT_CORPUS", "AUDIOCRAFT_DORA_DIR", "HF_HUB_OFFLINE")})
    budget = QUICK if args.quick else FULL
    runs = codec_runs(args.weights, args.grad_ratio)
    sigs = train_all(runs, common_args(budget), env)
    _log(f"training done in {time.time() - start:.0f} s; measuring on the held-out split")

    from ..train import main as dora_main

    test_manifest = corpus_root / "music_16khz" / "evaluate"
    results = {}
    for name, sig in sigs.items():
        results[name] = evaluate_codec(sig, test_manifest, args.quick)
        results[name]["training"] = training_summary(dora_main.dora.dir / "xps" / sig)
        results[name]["xp"] = sig
    print_table(results)
    payload = {"budget": budget, "seed": SEED, "corpus": str(corpus_root), "quick": args.quick,
               "seconds": round(time.time() - start, 1), "codecs": results}
    args.out.write_text(json.dumps(payload, indent=2))
    from ..metrics import plot_each_vs_rest

    plot = plot_each_vs_rest([r["report"] for r in results.values()], args.out.with_suffix(".png"),
                             labels=list(results))
    _log(f"wrote {args.out} and {plot} in {time.time() - start:.0f} s")
    return 0

