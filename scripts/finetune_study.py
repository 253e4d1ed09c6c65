"""The evidence behind the fine-tune recipe (examples/finetune_existing_codec.md, issue 29): a codec trained
without the loss, then fine-tuned with it, measured every few updates against itself.

Sources: the demo's tiny codec (`solver=compression/encodec_mmd_tiny`, the sweep's overrides: `run.common_args`)
trained without the loss for SOURCE (a checkpoint every SOURCE["updates"] updates), one per seed; its plateau is
read from its valid mel loss (PLATEAU). Fine-tunes: each source continued (`continue_from=//sig/SOURCE_SIG`) for
FINETUNE with each of SETTINGS (a no-loss continuation as control), a checkpoint every FINETUNE["updates"]
updates. Every checkpoint (the sources' included) is measured on the held-out music (the corpus's evaluate split,
all of it, in 10 s segments, one pass: `encode_decode`): corrected pairwise TC and per-codebook entropy (the
sweep's `independence_report`), log-mel L1 (`run.reconstruction`'s formula), SI-SNR (audiocraft's `SISNR`),
and code agreement per codebook and joint against the source codec (`core.metrics.code_agreement`). Results go
to --out (JSON, with the command and date) and its figure (--out with .png); the recipe is the first (setting,
updates) meeting CRITERIA on every seed, else the frontier and the best trade-off are reported (`summarize`).
What ships (config/solver/compression/encodec_mmd_finetune_32khz.yaml, grids/_paper.py: FINETUNE_MMD) is
`summary.shipped`, and the docs quote `headline`, `markdown` and `markdown_sources` (tests/test_finetune.py).

XPs live in the demo's Dora dir and are reused by signature, measurements are cached beside each checkpoint:
an interrupted study resumes where it stopped when rerun with the same arguments. Run it on one core:

    OMP_NUM_THREADS=1 nohup nice python scripts/finetune_study.py --seeds 42 43 > finetune_study.log 2>&1 &
    python scripts/finetune_study.py --report     # summary and figure again from --out, trains nothing

About 80 minutes of one core (sources 2 x 1000 updates, 12 fine-tunes x 250 updates at ~0.7 s per update,
70 measures of the 12.6 min of held-out music at ~10 s each); on a shared machine, nice'd, up to twice that.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

SOURCE = {"epochs": 10, "updates": 100}     # 1000 updates of 16 x 1 s, a checkpoint every 100
MEASURE_SOURCE_EVERY = 2                    # held-out measures of the sources every 200 updates (the plateau
                                            # rule reads the valid loss of every epoch)
FINETUNE = {"epochs": 5, "updates": 50}     # 250 updates, a checkpoint every 50
# the page's two settings first, then the grid's, then two in between; "control": the same continuation, no loss
SETTINGS = {
    "control": ["losses.inde=0"],
    "inde=10": ["losses.inde=10"],
    "grad_ratio=0.1": ["losses.inde=1000", "inde.grad_ratio=0.1"],
    "inde=1000": ["losses.inde=1000"],
    "inde=100": ["losses.inde=100"],
    "grad_ratio=1": ["losses.inde=1000", "inde.grad_ratio=1"],
}
EVERY_EPOCH = ["checkpoint.save_every=1"]   # audiocraft keeps checkpoint_<epoch>.th beside checkpoint.th
# plateau: the first checkpoint from which the valid mel loss (history.json) improves by less than `rel` over the
# next `window` checkpoints (best of them against it)
PLATEAU = {"metric": "mel", "rel": 0.02, "window": 3}
CRITERIA = {"tc_ratio_max": 0.5, "log_mel_ratio_max": 1.03, "entropy_ratio_min": 0.9}
MEASURE_KEY = "v1"  # bump when what measure_checkpoint computes changes (its cache files carry it)


def _log(msg: str) -> None:
    print(f"[finetune_study {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------------------------------------- measuring
def encode_decode(model, files, segment_seconds: float = 10.0) -> dict:
    """One pass of the held-out `files` through the codec, in fixed segments (file order; tails under 1 s
    skipped): each segment's codes ([1, K, T] int16), the dependence and usage of the codes (`independence_report`
    on the delay pattern's tuples, as `measure_model` counts them), log-mel L1 (`run.reconstruction`'s
    definition) and SI-SNR (dB): audiocraft's SISNR as its compression solver evaluates it (config `sisnr`: 5 s
    windows, 50 % overlap). One pass instead of three (measure, reconstruction, codes): the study's cost."""
    import numpy as np
    import torch
    import torchaudio
    from audiocraft.losses import SISNR

    from mmd_audiocraft.apps.manifest import plan_segments, read_segment
    from mmd_audiocraft.core.metrics import CodeCounts, codes_to_rows, independence_report

    sisnr = SISNR(sample_rate=model.sample_rate, segment=5.0)
    mel = torchaudio.transforms.MelSpectrogram(model.sample_rate, n_fft=1024, hop_length=256, n_mels=64)
    counts = CodeCounts(int(model.num_codebooks), int(model.cardinality))
    codes, si_snr, mel_l1, seconds = [], [], [], 0.0
    for seg in plan_segments(files, segment_seconds):
        x = read_segment(seg, model.sample_rate, model.channels)
        if x.shape[-1] < model.sample_rate:
            continue
        with torch.no_grad():
            c, scale = model.encode(x[None])
            y = model.decode(c, scale)[0, :, : x.shape[-1]]
        codes.append(c.numpy().astype(np.int16))
        counts.update(codes_to_rows(codes[-1], "delay"))
        si_snr.append(-float(sisnr(y[None], x[None])))  # SISNR returns minus the SI-SNR (a loss)
        log_mel = [torch.log10(mel(a).clamp_min(1e-5)) for a in (y, x)]
        mel_l1.append(float((log_mel[0] - log_mel[1]).abs().mean()))
        seconds += x.shape[-1] / model.sample_rate
    report = independence_report(counts, null_shuffles=3, seed=0)
    return {"codes": codes, "tc_corrected_pct": report["protocol"]["corrected_pct_joint"],
            "tc_raw_pct": report["protocol"]["raw_pct_joint"],
            "entropy_bits": [u["entropy_bits"] for u in report["usage"]],
            "log_mel_l1": float(np.mean(mel_l1)), "si_snr_db": float(np.mean(si_snr)),
            "audio_seconds": round(seconds, 1)}


def measure_checkpoint(path: Path, files, reference_codes) -> dict:
    """One checkpoint on the held-out files (`encode_decode`), with its code agreement with `reference_codes`
    (the source codec's codes of the same segments; None: this checkpoint is the reference). Cached beside the
    checkpoint, so a rerun measures only what is new."""
    import numpy as np

    from mmd_audiocraft.core.metrics import code_agreement

    cache = path.with_name(f"{path.stem}.finetune_study_{MEASURE_KEY}.json")
    ref_tag = None if reference_codes is None else int(sum(int(c.sum()) for c in reference_codes))
    if cache.exists():
        cached = json.loads(cache.read_text())
        if cached.get("reference_tag") == ref_tag:
            return cached
    start = time.time()
    out = encode_decode(_load(path).model, files)
    codes = out.pop("codes")
    out["reference_tag"] = ref_tag
    if reference_codes is not None:
        cat = lambda cs: np.concatenate(cs, axis=-1)  # noqa: E731  [1, K, sum T]: the same segments
        out["agreement"] = code_agreement(cat(codes), cat(reference_codes))
    out["seconds"] = round(time.time() - start, 1)
    cache.write_text(json.dumps(out, indent=2))
    return out


def source_codes(xp_dir: Path, files, memo: dict = {}) -> list:  # noqa: B006  (a cache across calls)
    """The codes of a source codec (its last checkpoint) on `files`."""
    path = checkpoints(xp_dir)[-1][1]
    if path not in memo:
        memo[path] = encode_decode(_load(path).model, files)["codes"]
    return memo[path]


def checkpoints(xp_dir: Path) -> list[tuple[int, Path]]:
    """(epoch, checkpoint_<epoch>.th) of an XP, in order."""
    found = [(p.stem.split("_", 1)[1], p) for p in xp_dir.glob("checkpoint_*.th")]
    return sorted((int(epoch), p) for epoch, p in found if epoch.isdigit())


def plateau(valid: list[float], updates_per_epoch: int, rel: float, window: int) -> dict:
    """PLATEAU's rule on a valid-loss trajectory (one value per epoch): the first epoch e such that the best of
    the next `window` epochs is less than `rel` below epoch e's value."""
    for e in range(len(valid) - window):
        if min(valid[e + 1: e + 1 + window]) > valid[e] * (1 - rel):
            return {"reached": True, "epoch": e + 1, "updates": (e + 1) * updates_per_epoch}
    return {"reached": False, "epoch": None, "updates": None}


# ---------------------------------------------------------------------------------------------- training
def train_one(name: str, overrides: list[str], env: dict) -> tuple[str, float]:
    """One XP, trained unless already finished (run.train_all with one run: one process at a time)."""
    from mmd_audiocraft.apps.demo.run import train_all

    start = time.time()
    sig = train_all({name: overrides}, env, desc=name)[name]
    return sig, round(time.time() - start, 1)


def run_study(args) -> dict:
    import torch

    from mmd_audiocraft.apps.demo import corpus
    from mmd_audiocraft.apps.demo.run import cache_dir, common_args
    from mmd_audiocraft.apps.manifest import read_manifest
    from mmd_audiocraft.integration import xps
    from mmd_audiocraft.integration.process import prepare_process

    torch.set_num_threads(1)
    prepare_process()
    root = corpus.build(sample_rates=(16000,), quick=False)
    env = dict(os.environ, MMD_AUDIOCRAFT_CORPUS=str(root), AUDIOCRAFT_DORA_DIR=str(cache_dir() / "demo" / "dora"),
               HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    os.environ.update({k: env[k] for k in ("MMD_AUDIOCRAFT_CORPUS", "AUDIOCRAFT_DORA_DIR", "HF_HUB_OFFLINE")})
    from mmd_audiocraft.train import main as dora_main

    _, files = read_manifest(root / "music_16khz" / "evaluate")
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    results.setdefault("started", results.get("date", _now()))  # a resumed study keeps its first start
    results.update(command=" ".join(["python", *sys.argv]), date=_now(), torch_threads=torch.get_num_threads(),
                   data="the demo corpus's music_16khz/evaluate (12.6 min, held-out tracks)", source_budget=SOURCE,
                   finetune_budget=FINETUNE, batch_size=16, settings=SETTINGS, plateau_rule=PLATEAU, criteria=CRITERIA)
    results.setdefault("sources", {})
    results.setdefault("finetunes", {})

    def save():
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))

    for seed in args.seeds:  # sources first: every fine-tune needs one
        name = f"source seed={seed}"
        sig, seconds = train_one(name, common_args(SOURCE, seed) + ["losses.inde=0", *EVERY_EPOCH], env)
        xp = xps.xp_folder(sig, dora_main.dora.dir)
        history = xps.read_history(xp)
        valid = [h["valid"][PLATEAU["metric"]] for h in history]
        final = checkpoints(xp)[-1][1]
        ref_codes = source_codes(xp, files)
        traj = []
        for epoch, path in checkpoints(xp):
            if epoch % MEASURE_SOURCE_EVERY and path != final:
                continue
            _log(f"measuring {name} epoch {epoch}")
            m = measure_checkpoint(path, files, None if path == final else ref_codes)
            traj.append({"updates": epoch * SOURCE["updates"], "valid_mel": valid[epoch - 1], **m})
        old = results["sources"].get(f"seed={seed}", {})
        results["sources"][f"seed={seed}"] = {
            "xp": sig, "train_seconds": old.get("train_seconds", seconds) if seconds < 60 else seconds,
            "plateau": plateau(valid, SOURCE["updates"], PLATEAU["rel"], PLATEAU["window"]),
            "valid_mel": valid, "trajectory": traj}
        save()
    for setting in args.settings:
        for seed in args.seeds:
            name = f"{setting} seed={seed}"
            source = results["sources"][f"seed={seed}"]
            overrides = common_args(FINETUNE, seed) + SETTINGS[setting] + EVERY_EPOCH + [
                f"continue_from=//sig/{source['xp']}"]
            sig, seconds = train_one(name, overrides, env)
            xp = xps.xp_folder(sig, dora_main.dora.dir)
            src_final = source["trajectory"][-1]
            ref_codes = source_codes(xps.xp_folder(source["xp"], dora_main.dora.dir), files)
            history = xps.read_history(xp)
            traj = [{**{k: v for k, v in src_final.items() if k != "valid_mel"}, "updates": 0, "agreement": None}]
            for epoch, path in checkpoints(xp):
                _log(f"measuring {name} epoch {epoch}")
                train = history[epoch - 1]["train"]
                traj.append({"updates": epoch * FINETUNE["updates"], **measure_checkpoint(path, files, ref_codes),
                             "train_inde_grad_ratio": train.get("inde_grad_ratio"),
                             "train_inde": train.get("inde")})
            old = results["finetunes"].get(name, {})
            results["finetunes"][name] = {
                "setting": setting, "seed": seed, "xp": sig, "source_xp": source["xp"],
                "overrides": SETTINGS[setting], "trajectory": traj,
                "train_seconds": old.get("train_seconds", seconds) if seconds < 60 else seconds}
            save()
    return results


def _load(path: Path):
    from mmd_audiocraft.integration.loaders import load_compression_model

    return load_compression_model(str(path), trust_checkpoint=True)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------------------- summary
def ratios(point: dict, source: dict) -> dict:
    """A checkpoint against its source codec: TC, log-mel L1 and the smallest per-codebook entropy ratio."""
    return {"tc_ratio": point["tc_corrected_pct"] / source["tc_corrected_pct"],
            "log_mel_ratio": point["log_mel_l1"] / source["log_mel_l1"],
            "entropy_ratio_min": min(h / h0 for h, h0 in zip(point["entropy_bits"], source["entropy_bits"]))}


def meets(r: dict) -> bool:
    return (r["tc_ratio"] <= CRITERIA["tc_ratio_max"] and r["log_mel_ratio"] <= CRITERIA["log_mel_ratio_max"]
            and r["entropy_ratio_min"] >= CRITERIA["entropy_ratio_min"])


SPREAD_KEYS = ("tc_ratio", "log_mel_ratio", "entropy_ratio_min", "joint_agreement")


def summarize(results: dict) -> dict:
    """Per setting and update count: every seed's ratios to its source and joint agreement, their mean and range
    over seeds, whether every seed meets CRITERIA. The recipe: the cheapest (fewest updates, then lowest
    worst-seed TC) point meeting them on every seed, else None; the frontier: among points that keep every
    codebook (entropy criterion on every seed), those no other point beats on both worst-seed TC and worst-seed
    log-mel ratio."""
    import numpy as np

    table: dict[str, dict] = {}
    controls = {(r["seed"], p["updates"]): p for r in results["finetunes"].values() if r["setting"] == "control"
                for p in r["trajectory"]}
    for run in results["finetunes"].values():
        src = run["trajectory"][0]
        for point in run["trajectory"][1:]:
            cell = table.setdefault(run["setting"], {}).setdefault(str(point["updates"]), {"seeds": {}})
            control = controls.get((run["seed"], point["updates"]))  # the same continuation without the loss
            cell["seeds"][str(run["seed"])] = {**ratios(point, src), "joint_agreement": point["agreement"]["joint"],
                                               "agreement": point["agreement"]["per_codebook"],
                                               "si_snr_db": point["si_snr_db"],
                                               "vs_control": ratios(point, control) if control else None}
    seeds = sorted({str(r["seed"]) for r in results["finetunes"].values()})
    points = []
    for setting, by_updates in table.items():
        for updates, cell in by_updates.items():
            runs = list(cell["seeds"].values())
            for key in SPREAD_KEYS:
                vals = [r[key] for r in runs]
                cell[key] = {"mean": float(np.mean(vals)), "min": float(np.min(vals)), "max": float(np.max(vals))}
            cell["all_seeds"] = sorted(cell["seeds"]) == seeds
            cell["meets_on_every_seed"] = cell["all_seeds"] and all(meets(r) for r in runs)
            points.append((setting, int(updates), cell))
    met = sorted((p for p in points if p[2]["meets_on_every_seed"]), key=lambda p: (p[1], p[2]["tc_ratio"]["max"]))
    worst = lambda p: (p[2]["tc_ratio"]["max"], p[2]["log_mel_ratio"]["max"])  # noqa: E731
    healthy = [p for p in points if p[2]["all_seeds"]
               and p[2]["entropy_ratio_min"]["min"] >= CRITERIA["entropy_ratio_min"]]
    frontier = [p for p in healthy if not any(
        worst(o)[0] <= worst(p)[0] and worst(o)[1] <= worst(p)[1] and worst(o) != worst(p) for o in healthy)]
    frontier.sort(key=worst)

    # what ships: the recipe; else the best trade-off: among the loss settings' healthy points whose log-mel L1
    # criterion holds on every seed, the lowest worst-seed TC ratio (then the fewest updates)
    within = sorted((p for p in healthy if p[0] != "control" and worst(p)[1] <= CRITERIA["log_mel_ratio_max"]),
                    key=lambda p: (worst(p)[0], p[1]))
    met = [p for p in met if p[0] != "control"]

    def point(p):
        return {"setting": p[0], "updates": p[1], "overrides": SETTINGS.get(p[0]), "meets": p[2]["meets_on_every_seed"],
                **{k: p[2][k] for k in SPREAD_KEYS}}

    shipped = met[0] if met else within[0] if within else None
    return {"seeds": seeds, "table": table, "recipe": point(met[0]) if met else None,
            "shipped": point(shipped) if shipped else None, "shipped_is": "recipe" if met else "best trade-off",
            "meeting": [point(p) for p in met], "frontier": [point(p) for p in frontier]}


def sources_summary(results: dict) -> dict:
    """The sources' plateau and final held-out numbers, per seed."""
    out = {}
    for name, src in results["sources"].items():
        final = src["trajectory"][-1]
        out[name] = {"xp": src["xp"], "plateau": src["plateau"], "updates": final["updates"],
                     **{k: final[k] for k in ("tc_corrected_pct", "log_mel_l1", "si_snr_db", "entropy_bits")}}
    return out


def markdown(results: dict) -> str:
    """The table the docs show (examples/finetune_existing_codec.md; tests/test_finetune.py
    checks that they show this text): per setting and fine-tune length, each seed's ratio to its source."""
    summary = results["summary"]
    seeds = summary["seeds"]
    lines = [f"| setting | updates | corrected TC / source's ({' / '.join(seeds)}) | log-mel L1 / source's | "
             "min entropy / source's | joint code agreement | TC / control's | log-mel L1 / control's | "
             "every criterion, every seed |", "|---|---|---|---|---|---|---|---|---|"]
    for setting, by_updates in summary["table"].items():
        for updates, cell in sorted(by_updates.items(), key=lambda kv: int(kv[0])):
            def per(key, f, within=None, cell=cell):
                values = [cell["seeds"].get(s) for s in seeds]
                values = [v[within] if v and within else v for v in values]
                return " / ".join("-" if v is None else format(v[key], f) for v in values)

            control = "-" if setting == "control" else None
            lines.append(f"| {setting} | {updates} | {per('tc_ratio', '.2f')} | {per('log_mel_ratio', '.3f')} | "
                         f"{per('entropy_ratio_min', '.2f')} | {per('joint_agreement', '.2f')} | "
                         f"{control or per('tc_ratio', '.2f', 'vs_control')} | "
                         f"{control or per('log_mel_ratio', '.3f', 'vs_control')} | "
                         f"{'yes' if cell['meets_on_every_seed'] else 'no'} |")
    return "\n".join(lines)


def headline(results: dict) -> str:
    """One line on what ships (the docs quote it; tests/test_finetune.py checks it is this text): the setting, its
    budget, and each seed's numbers against its source."""
    shipped, seeds = results["summary"]["shipped"], results["summary"]["seeds"]
    if shipped is None:
        return "No loss setting kept every codebook and log-mel L1 within the criteria: nothing ships."
    cell = results["summary"]["table"][shipped["setting"]][str(shipped["updates"])]["seeds"]
    per = lambda key, f: " / ".join(format(cell[s][key], f) for s in seeds)  # noqa: E731
    mel = " / ".join(f"{100 * (cell[s]['log_mel_ratio'] - 1):+.1f} %" for s in seeds)
    what = "meets every criterion on every seed" if shipped["meets"] else "the best trade-off: criteria not met"
    return (f"`{' '.join(shipped['overrides'])}` for {shipped['updates']} updates ({what}), seeds "
            f"{' / '.join(seeds)}: corrected pairwise TC {per('tc_ratio', '.3f')}x the source's, log-mel L1 {mel}, "
            f"smallest codebook entropy {per('entropy_ratio_min', '.2f')}x, joint code agreement with the source "
            f"{per('joint_agreement', '.2f')}")


def markdown_sources(results: dict) -> str:
    """The sources' table the docs show: plateau by PLATEAU's rule, final held-out numbers per seed."""
    lines = ["| source | plateau (valid mel, rule) | trained | corrected TC, % joint H | entropy per codebook, bits | "
             "log-mel L1 | SI-SNR, dB |", "|---|---|---|---|---|---|---|"]
    for name, src in results["sources_summary"].items():
        reached = f"{src['plateau']['updates']} updates" if src["plateau"]["reached"] else "not reached"
        lines.append(f"| {name} | {reached} | {src['updates']} updates | {src['tc_corrected_pct']:.2f} | "
                     f"{' / '.join(f'{h:.2f}' for h in src['entropy_bits'])} | {src['log_mel_l1']:.3f} | "
                     f"{src['si_snr_db']:.1f} |")
    return "\n".join(lines)


def plot(results: dict, path: Path) -> Path:
    """Trajectories: the sources' held-out log-mel L1 and valid mel loss; per setting and seed, TC, log-mel and
    entropy ratios to the source, joint agreement and SI-SNR, against fine-tune updates (criteria dotted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    ax = axes[0, 0]
    valid_ax, handles = ax.twinx(), []
    for name, src in results["sources"].items():
        t = [p["updates"] for p in src["trajectory"]]
        line, = ax.plot(t, [p["log_mel_l1"] for p in src["trajectory"]], marker="o", label=f"{name}: held-out log-mel")
        valid = src.get("valid_mel") or []
        handles += [line, *valid_ax.plot([(e + 1) * results["source_budget"]["updates"] for e in range(len(valid))],
                                         valid, ls=":", marker=".", color=line.get_color(),
                                         label=f"{name}: valid mel loss (right)")]
        if src["plateau"]["reached"]:
            ax.axvline(src["plateau"]["updates"], color=line.get_color(), ls="--", lw=0.8)
    ax.set(title="sources, no loss (dashed: plateau by the rule)", xlabel="updates", ylabel="held-out log-mel L1")
    ax.legend(handles=handles, fontsize=7)
    colors = dict(zip(SETTINGS, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    panels = [(axes[0, 1], "tc_ratio", "corrected pairwise TC / source's", CRITERIA["tc_ratio_max"]),
              (axes[0, 2], "log_mel_ratio", "held-out log-mel L1 / source's", CRITERIA["log_mel_ratio_max"]),
              (axes[1, 0], "entropy_ratio_min", "min over codebooks: entropy / source's",
               CRITERIA["entropy_ratio_min"]),
              (axes[1, 1], "joint", "joint code agreement with the source", None),
              (axes[1, 2], "si_snr_db", "held-out SI-SNR, dB (audiocraft SISNR)", None)]
    first_seed = min(run["seed"] for run in results["finetunes"].values())
    for run in results["finetunes"].values():
        src = run["trajectory"][0]
        t = [p["updates"] for p in run["trajectory"]]
        r = [{**ratios(p, src), "joint": 1.0 if p["agreement"] is None else p["agreement"]["joint"],
              "si_snr_db": p["si_snr_db"]} for p in run["trajectory"]]
        for ax, key, _, _ in panels:
            ax.plot(t, [x[key] for x in r], "-" if run["seed"] == first_seed else "--", marker=".",
                    color=colors.get(run["setting"]), label=f"{run['setting']} seed={run['seed']}")
    for ax, _, title, level in panels:
        ax.set(title=title, xlabel="fine-tune updates")
        if level is not None:
            ax.axhline(level, color="k", ls=":", lw=1)
    axes[0, 1].legend(fontsize=7, ncol=2)
    fig.suptitle("The tiny codec fine-tuned with the independence loss, held-out music (scripts/finetune_study.py); "
                 "solid / dashed: the two seeds", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def report(results: dict, out: Path) -> None:
    """Summary, table and figure of `results`, written into `out` (and out.png)."""
    results["sources_summary"] = sources_summary(results)
    results["summary"] = summarize(results)
    out.write_text(json.dumps(results, indent=2))
    png = plot(results, out.with_suffix(".png"))
    for name, src in results["sources_summary"].items():
        _log(f"source {name}: plateau {src['plateau']}, TC {src['tc_corrected_pct']:.2f} %, "
             f"log-mel {src['log_mel_l1']:.3f}, entropy {[round(h, 2) for h in src['entropy_bits']]}")
    print(markdown_sources(results) + "\n\n" + markdown(results) + "\n\n" + headline(results), flush=True)
    s = results["summary"]
    _log(f"recipe: {s['recipe']}" if s["recipe"] else "no setting meets the criteria on every seed; frontier: "
         f"{[(f['setting'], f['updates']) for f in s['frontier']]}; best trade-off: {s['shipped']}")
    _log(f"wrote {out} and {png}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/finetune_study.json"))
    parser.add_argument("--report", action="store_true", help="summary and figure from --out; trains nothing")
    args = parser.parse_args()
    results = json.loads(args.out.read_text()) if args.report else run_study(args)
    report(results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
