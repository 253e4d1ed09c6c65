"""`make demo`: the paper's claim on real music, on a laptop CPU, in minutes.

Builds the real-music corpus if missing, trains three tiny EnCodecs through the real audiocraft solver
(`dora -P mmd_audiocraft run`, same seed and steps): no loss, the paper's weight, and the recommended setting
(`solver=compression/encodec_mmd_tiny_recommended`); chains tiny MusicGen LMs (delay and unroll patterns) onto the
baseline's and the recommended codec's codes; then measures each codec on the held-out split: MMD, pairwise total
correlation (raw, shuffle-null, corrected), I(z_k; rest), codebook usage, the delay pattern's factorization gap,
the MMD/reconstruction gradient ratio seen in training, and reconstruction (log-mel L1, SI-SNR); and each LM's
valid cross-entropy and the sampling cost of its pattern. Prints a side-by-side table (one run: it says so),
writes demo_results.json and its figure (demo_results.png: log-mel L1 against corrected TC, per codec).

    python -m mmd_audiocraft.apps.demo [--quick] [--fresh] [--seed 42] [--no-lm] [--out demo_results.json]
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

from ...core.metrics.factorization_gap import GapOptions, format_gap_bits
from ...integration import xps
from ...integration.process import prepare_process

# how much held-out audio each measurement reads: full = the whole split (12.6 min); quick = a CI smoke run
MEASURE = {"full": {"gap_fit_seconds": 600.0, "max_frames": None, "mmd_rows": 4096, "reconstruction_seconds": 300},
           "quick": {"gap_fit_seconds": 30.0, "max_frames": 3_000, "mmd_rows": 512, "reconstruction_seconds": 10}}
RECOMMENDED_SOLVER = "compression/encodec_mmd_tiny_recommended"
RECOMMENDED_OVERRIDES = ["losses.inde=1000", "inde.grad_ratio=1"]  # what RECOMMENDED_SOLVER adds
LM_FULL = {"epochs": 2, "updates": 100}
LM_QUICK = {"epochs": 1, "updates": 4}
# three predictor seeds: on this much held-out audio one estimate moves by up to ~0.1 bits per step from one
# predictor seed to the next (as much as the differences between codecs), so the mean and its spread are shown
GAP_FULL = GapOptions(seeds=(0, 1, 2), hidden=128, max_steps=30_000, patience=3)
GAP_QUICK = GapOptions(seeds=(0,), hidden=32, max_epochs=2, max_steps=2_000)
# the sweep's budget (scripts/sweep_recommended.py): 400 updates of 16 x 1 s, codebooks in use, reconstruction
# converging (calibration). One codec takes ~11 CPU-minutes: three do not fit the demo's 20 minutes on 2 cores.
SWEEP = {"epochs": 8, "updates": 50}
# the demo's: the same 400 updates on batches of 8 (half the compute per update), so that three codecs, four LMs
# and the measurements fit 20 minutes; its numbers are one seed at this budget, the sweep's are the evidence
FULL = {"epochs": 8, "updates": 50, "batch_size": 8}
QUICK = {"epochs": 1, "updates": 8}   # CI: every stage runs, numbers are not meaningful
SEED = 42


def _log(msg: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def cache_dir() -> Path:
    return Path(os.environ.get("MMD_AUDIOCRAFT_CACHE", Path.home() / ".cache" / "mmd-audiocraft"))


def common_args(budget: dict, seed: int = SEED) -> list[str]:
    """Overrides every demo codec shares. renormalize=false: audiocraft's LMs refuse codecs that rescale their
    input, and every demo codec feeds a tiny LM (the corpus is peak-normalised per track). A budget without
    "batch_size" keeps the config's 16 (and adds no override: the sweep's XP signatures stay as they were)."""
    epochs, batch = budget["epochs"], budget.get("batch_size")
    return ["solver=compression/encodec_mmd_tiny", "dset=audio/mmd_music_16khz", f"seed={seed}",
            "encodec.renormalize=false", f"optim.epochs={epochs}", f"optim.updates_per_epoch={budget['updates']}",
            *([f"dataset.batch_size={batch}"] if batch else []),
            f"dataset.train.num_samples={(batch or 16) * budget['updates']}", f"evaluate.every={epochs}",
            f"generate.every={epochs}", "dataset.evaluate.num_samples=16"]


def train_all(runs: dict[str, list[str]], env: dict, desc: str = "training") -> dict[str, str]:
    """Train every XP (name -> its full `dora run` overrides) in parallel subprocesses, one thread each, with
    a progress bar over their epochs; returns name -> XP signature. XPs that finished every epoch are kept."""
    from tqdm import tqdm

    from ...train import main  # after the environment variables: it reads the Dora dir at import

    sigs = {name: main.get_xp(args).sig for name, args in runs.items()}
    procs, logs, done = {}, {}, {}
    epochs = {n: int(next(a for a in args if a.startswith("optim.epochs=")).split("=")[1]) for n, args in runs.items()}
    for name, args in runs.items():
        xp_dir = xps.xp_folder(sigs[name], main.dora.dir)
        xp_dir.mkdir(parents=True, exist_ok=True)
        done[name] = len(xps.read_history(xp_dir))
        if done[name] >= epochs[name] and xps.checkpoint_of(xp_dir).exists():
            _log(f"{name}: XP {sigs[name]} already trained")
            continue
        logs[name] = xp_dir / "demo_train.log"
        cmd = [sys.executable, "-m", "dora", "-P", "mmd_audiocraft", "run", *args]
        procs[name] = subprocess.Popen(cmd, env=env, stdout=logs[name].open("w"), stderr=subprocess.STDOUT)
        _log(f"{name}: XP {sigs[name]}, log {logs[name]}")
    with tqdm(total=sum(epochs.values()), initial=sum(done.values()), unit="epoch", desc=desc,
              dynamic_ncols=True) as bar:
        while any(p.poll() is None for p in procs.values()):
            time.sleep(2)
            for name in procs:
                now = len(xps.read_history(xps.xp_folder(sigs[name], main.dora.dir)))
                if now > done[name]:
                    bar.update(now - done[name])
                    done[name] = now
                    bar.set_postfix_str(f"{name}: epoch {now}/{epochs[name]}")
    failed = [n for n, p in procs.items() if p.returncode != 0]
    if failed:
        tails = "\n".join(f"--- {n}:\n" + logs[n].read_text()[-3000:] for n in failed)
        raise SystemExit(f"demo: training failed for {failed}\n{tails}")
    return sigs


def training_summary(xp_dir: Path) -> dict:
    """What the last training epoch logged: the loss value, its gradient ratio and codebook usage."""
    last = xps.read_history(xp_dir)[-1]
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


def evaluate_codec(sig: str, manifests: Path, quick: bool, gap: GapOptions | None = None,
                   split: str = "evaluate") -> dict:
    """Independence, factorization gap and reconstruction of one trained codec on a held-out split of the
    corpus (`manifests`/{train,valid,evaluate}); the gap's predictors fit on train codes, stop on valid ones."""
    from ...integration.loaders import load_compression_model
    from ...train import main as dora_main
    from ..json_output import write_json
    from ..manifest import read_manifest
    from ..measure import encode_files, measure_model

    budget = MEASURE["quick" if quick else "full"]
    options = json.dumps([str(manifests), budget, None if gap is None else dataclasses.asdict(gap)], sort_keys=True)
    key = hashlib.sha1(options.encode()).hexdigest()[:8]
    cache = xps.xp_folder(sig, dora_main.dora.dir) / f"demo_measure_{split}_{key}.json"
    if cache.exists():  # measured before with the same data and options (by the demo or the sweep)
        return json.loads(cache.read_text())
    loaded = load_compression_model(f"//sig/{sig}")
    manifest, files = read_manifest(manifests / split)
    fit = valid = None
    if gap is not None:
        fit = encode_files(loaded, read_manifest(manifests / "train")[1], desc="encoding train (gap fit)",
                           max_seconds=budget["gap_fit_seconds"])
        valid = encode_files(loaded, read_manifest(manifests / "valid")[1], desc="encoding valid (gap stop)",
                             max_seconds=budget["gap_fit_seconds"] / 4)
    report = measure_model(loaded, files, pattern="delay", max_frames=budget["max_frames"], gap=gap,
                           gap_fit=fit, gap_valid=valid, mmd_rows=budget["mmd_rows"], progress=True)
    report["data"] = str(manifest.resolve())
    result = {"report": report, "mmd": report.get("mmd"), "gap": report.get("factorization_gap"),
              "reconstruction": reconstruction(loaded.model, files, max_seconds=budget["reconstruction_seconds"])}
    write_json(result, cache)
    return result


def _row(label: str, values: list, fmt: str = "{:.3f}") -> str:
    cells = [("-" if v is None else v if isinstance(v, str) else fmt.format(v)) for v in values]
    return f"{label:<40}" + "".join(f"{c:>18}" for c in cells)


def _information(record: dict | None, key: str = "corrected_bits", scale: float = 1.0):
    """A corrected information value as shown: "saturated" when the joint histogram is (most tuples seen once),
    "<= null" when the estimate is not above the shuffle-null (never a negative information value)."""
    if not record or record.get(key) is None:
        return None
    if (record.get("joint_distinct_fraction") or 0) > 0.5:
        return "saturated"
    return "<= null" if record[key] <= 0 else record[key] * scale


ONE_RUN = ("One run (seed {seed}). A tiny codec's training is chaotic: these numbers move from run to run and\n"
           "from machine to machine (a codebook can collapse in one run and not in the next). What holds across\n"
           "seeds is in docs/EVIDENCE.md (the sweep behind the recommended setting, two seeds per setting).")


def print_table(results: dict[str, dict], seed: int = SEED) -> None:
    names = list(results)
    print("\n" + ONE_RUN.format(seed=seed))
    print("\n" + _row("", names, "{}"))
    get = lambda path: [_dig(results[n], path) for n in names]  # noqa: E731
    print(_row("held-out MMD^2 (paper / disjoint)", [
        f"{_dig(results[n], ('mmd', 'paper')):.4f} / {_dig(results[n], ('mmd', 'disjoint')):.4f}"
        if _dig(results[n], ("mmd", "disjoint")) is not None else None for n in names], "{}"))
    print(_row("pair TC raw, % joint H (paper)", get(("report", "protocol", "raw_pct_joint"))))
    print(_row("pair TC shuffle-null, % joint H", get(("report", "protocol", "null_pct_joint"))))
    print(_row("pair TC corrected, % joint H", [_information(_dig(results[n], ("report", "protocol")),
                                                             "corrected_pct_joint") for n in names]))
    k = len(_dig(results[names[0]], ("report", "usage")) or [])
    for q in range(k):
        print(_row(f"I(z_{q}; rest) corrected, bits",
                   [_information(_dig(results[n], ("report", "each_vs_rest", q))) for n in names]))
    for q in range(k):
        print(_row(f"codebook {q} entropy, bits", get(("report", "usage", q, "entropy_bits"))))
    print(_row("factorization gap, bits/step (delay)", [
        None if not g else "not converged" if not g["converged"] else
        f"{format_gap_bits(g['total_bits'])} +- {g['spread_bits']:.3f}" if len(g["seeds"]) > 1 else
        format_gap_bits(g["total_bits"]) for g in get(("gap",))], "{}"))
    print(_row("  per codebook q1..q3", [" ".join(format_gap_bits(b, ".2f") for b in g["per_codebook_bits"][1:])
                                         if g and g["converged"] else None for g in get(("gap",))], "{}"))
    print(_row("train: |grad MMD| / |grad rec| at enc.", get(("training", "inde_grad_ratio")), "{:.3g}"))
    print(_row("log-mel L1 (lower is better)", get(("reconstruction", "log_mel_l1"))))
    print(_row("SI-SNR, dB (meaningless at this size)", get(("reconstruction", "si_snr_db")), "{:.1f}"))
    from .lm_chain import LM_PATTERNS

    for pattern in LM_PATTERNS:
        print(_row(f"tiny LM valid CE, bits/code ({pattern})", get(("lm", pattern, "ce_bits"))))
    for pattern in LM_PATTERNS:
        print(_row(f"sampling 10 s: steps / seconds ({pattern})", [
            f"{c['steps']} / {c['seconds']:.1f}" if c else None for c in get(("lm", pattern, "sampling"))], "{}"))
    print("\nsaturated: the joint histogram has mostly single tuples, the estimate says nothing; <= null: not above\n"
          "the shuffle-null (no dependence detected). The factorization gap is what a delay-pattern LM loses by\n"
          "predicting a step's codes in parallel (held-out; +- std over predictor seeds when several; <=0: none\n"
          "detected). LM CE is per code: codecs whose codebooks carry more bits give higher CE; compare patterns\n"
          "within a codec.\n")


def figure_points(results: dict[str, dict]) -> list:
    """The demo figure's points: per codec, named as in the table, the held-out corrected pairwise TC and the
    table's reconstruction measure (held-out log-mel L1). Codecs without both are left out."""
    from ..compare_plot import FrontierPoint

    points = []
    for name, result in results.items():
        tc = _dig(result, ("report", "protocol", "corrected_pct_joint"))
        mel = _dig(result, ("reconstruction", "log_mel_l1"))
        if tc is not None and mel is not None:
            points.append(FrontierPoint(name, name, tc, mel, at_null=tc <= 0))
    return points


def plot_figure(results: dict[str, dict], path: Path) -> Path:
    """demo_results.png: :func:`figure_points` on the reconstruction / independence plane."""
    from ..compare_plot import plot_frontier

    return plot_frontier(figure_points(results), "pairwise TC, corrected [% of joint H] (held-out)",
                         "log-mel L1 (held-out; lower is better)", path)


def _dig(obj, path):
    for key in path:
        if obj is None:
            return None
        try:
            obj = obj[key]
        except (KeyError, IndexError, TypeError):
            return None
    return obj


def codec_runs(budget: dict, seed: int) -> dict[str, list[str]]:
    """The demo's three codecs: no loss, the paper's weight, and the recommended setting. The recommended one is
    given as the overrides its shipped config (RECOMMENDED_SOLVER) sets, so that it is the sweep's XP (same
    signature, trained once); tests/test_grids.py checks that the two compose the same config."""
    base = common_args(budget, seed)
    return {"baseline": base + ["losses.inde=0"], "paper": base + ["losses.inde=1000"],
            "recommended": base + RECOMMENDED_OVERRIDES}


def train_lms(sigs: dict[str, str], codecs: tuple, budget: dict, seed: int, env: dict) -> dict[str, dict]:
    """A tiny LM per pattern on each of `codecs`' codes: valid CE, and the sampling cost of each pattern."""
    from ...train import main as dora_main
    from .lm_chain import LM_PATTERNS, lm_args, sampling_cost, valid_cross_entropy

    runs = {f"{codec} LM {pattern}": lm_args(sigs[codec], pattern, budget, seed)
            for codec in codecs for pattern in LM_PATTERNS}
    lm_sigs = train_all(runs, env, desc="training LMs")
    out: dict[str, dict] = {}
    for name, sig in lm_sigs.items():
        codec, pattern = name.split(" LM ")
        out.setdefault(codec, {})[pattern] = {"xp": sig, **valid_cross_entropy(xps.xp_folder(sig, dora_main.dora.dir))}
        _log(f"LM {name}: valid CE {out[codec][pattern]['ce_bits']:.3f} bits/code")
    for pattern in LM_PATTERNS:  # the cost of a step does not depend on the codec: timed once per pattern
        cost = sampling_cost(xps.xp_folder(lm_sigs[f"recommended LM {pattern}"], dora_main.dora.dir))
        for codec in out:
            out[codec][pattern]["sampling"] = cost
        _log(f"sampling 10 s with the {pattern} pattern: {cost['steps']} steps, {cost['seconds']:.1f} s (timed on "
             f"{cost['timed_audio_seconds']:g} s: {cost['timed_seconds']:.1f} s)")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmd_audiocraft.apps.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny budget and corpus, for CI (<= 3 min)")
    parser.add_argument("--fresh", action="store_true", help="retrain even if the demo's XPs exist")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--no-lm", action="store_true", help="skip the codec -> tiny LM chain")
    parser.add_argument("--out", type=Path, default=Path("demo_results.json"))
    args = parser.parse_args(argv)
    start = time.time()
    prepare_process()
    warnings.filterwarnings("ignore")  # Hydra's and torch's deprecation notices: the demo's output is its table
    from . import corpus

    _log("corpus: " + ("quick" if args.quick else "full") + " (built once, then cached)")
    corpus_root = corpus.build(sample_rates=(16000,), quick=args.quick)
    demo_dir = cache_dir() / ("demo-quick" if args.quick else "demo")
    if args.fresh and demo_dir.exists():
        shutil.rmtree(demo_dir)
    env = dict(os.environ, MMD_AUDIOCRAFT_CORPUS=str(corpus_root), AUDIOCRAFT_DORA_DIR=str(demo_dir / "dora"),
               HF_HUB_OFFLINE=os.environ.get("HF_HUB_OFFLINE", "1"), PYTHONWARNINGS="ignore")
    os.environ.update({k: env[k] for k in ("MMD_AUDIOCRAFT_CORPUS", "AUDIOCRAFT_DORA_DIR", "HF_HUB_OFFLINE")})
    budget = QUICK if args.quick else FULL
    sigs = train_all(codec_runs(budget, args.seed), env, desc="training codecs")
    _log(f"codecs trained in {time.time() - start:.0f} s")
    lm_codecs = ("recommended",) if args.quick else ("baseline", "recommended")  # quick: every phase, cheaply
    lms = {} if args.no_lm else train_lms(sigs, lm_codecs, LM_QUICK if args.quick else LM_FULL, args.seed, env)

    from ...train import main as dora_main
    from ..json_output import provenance, write_json

    results = {}
    gap = GAP_QUICK if args.quick else GAP_FULL
    for name, sig in sigs.items():
        _log(f"measuring codec {name} on the held-out split")
        xp_dir = xps.xp_folder(sig, dora_main.dora.dir)
        results[name] = evaluate_codec(sig, corpus_root / "music_16khz", args.quick, gap=gap)
        results[name]["training"] = training_summary(xp_dir)
        results[name]["xp"] = sig
        results[name]["lm"] = lms.get(name)
        write_json(results[name]["gap"], xps.gap_cache(xp_dir))  # what `compare` reads
    print_table(results, args.seed)
    command = "python -m mmd_audiocraft.apps.demo " + shlex.join(argv if argv is not None else sys.argv[1:])
    payload = {**provenance(command.strip()), "budget": budget, "seed": args.seed, "corpus": str(corpus_root),
               "quick": args.quick, "seconds": round(time.time() - start, 1), "codecs": results}
    write_json(payload, args.out)
    plot = plot_figure(results, args.out.with_suffix(".png"))
    _log(f"wrote {args.out} and {plot} in {time.time() - start:.0f} s")
    return 0
