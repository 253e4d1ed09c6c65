"""MusicGen-small as the LM grids' paper profile launches it, on a paper-size codec XP, 2 updates on CPU; prints JSON.

What `dora -P mmd_audiocraft grid mmd_musicgen` would run on a GPU cluster, shrunk to what a CPU can do, to show
that the paper-scale LM builds on one of our codecs, reads its codes through `//sig/` and trains:
1. the codec (own process): `solver=compression/encodec_mmd_musicgen_32khz` (the paper's 32 kHz EnCodec, 4 x 2048
   codes at 50 Hz) built and saved untrained in a fresh Dora dir, as tests/dry_run_driver.py `prepare-codec32`
   does, with random codebooks (`rvq.kmeans_init=false`: audiocraft's k-means init waits for a first training
   batch, and until then every frame gets code 0); our LM preflight
   (`integration/preflight.check_lm_codec`) is run on the LM config, as composed, and on the same config with
   `transformer_lm.card=1024` (it must refuse that one, naming the key);
2. the LM (own process, `dora -P mmd_audiocraft run`): the paper profile's overrides (grids/_profile.py:
   musicgen/musicgen_base_32khz + LM_FSDP + LM_PAPER) on `compression_model_checkpoint=//sig/CODEC`, plus what
   a CPU needs (`cpu_overrides`): no T5 (`conditioner=none`: T5 comes from the Hugging Face hub), `device=cpu`,
   FSDP off (torch's FSDP shards over CUDA devices; audiocraft only wraps the model with it on GPUs), the EMA
   on the CPU, 1 s segments of batch 2, one epoch of 2 updates, no checkpoint written (weights, AdamW state,
   EMA and best state: several GB). audiocraft runs the evaluate and generate stages at the last epoch whatever
   their `every`: this benchmark skips them (a wrapper on `should_run_stage`), so the process trains and
   validates only.

Measured: seconds per training update (`run_step` in train mode, each update; the first one also allocates
AdamW's state), the LM process's wall time and its peak RSS (`ru_maxrss` of that process, import and build
included). Checked, and reported under `checks`: the codec's codes vary; the built LM's cardinality, number of
codebooks and delay-pattern delays are the codec's (audiocraft builds them from `transformer_lm.*` and asserts
they match the codec it loaded; our preflight checks the same before); it logged a finite train and valid
cross-entropy; the preflight refuses a mismatched cardinality. Exits 1 when a check fails.

Why a benchmark and not a slow test: the LM process peaks at about 10 GB of RSS (weights, gradients, AdamW's
moments, EMA and best state), too much next to the rest of the suite on a CI machine for what it adds to the grid
tests (results, with the command and date that made them: benchmarks/results/musicgen_small_cpu.json, quoted in
docs/PERFORMANCE.md).

    python benchmarks/bench_musicgen_small_cpu.py [--segment 1] [--batch 2] [--updates 2] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.conftest import MUSIC_FIXTURE, SPLITS  # noqa: E402  (the tests' real-music fixture)

CODEC_SOLVER = "solver=compression/encodec_mmd_musicgen_32khz"
# An untrained codec whose codebooks start random (audiocraft's uniform init) instead of waiting for k-means on the
# first training batch (rvq.kmeans_init, all-zero until then: every frame would get code 0); batches of 8 for the
# codes counted below.
CODEC_CPU = ["dset=audio/mmd_music_32khz", "device=cpu", "rvq.kmeans_init=false", "dataset.batch_size=8",
             "dataset.num_workers=0"]
RESULTS = "@@RESULTS@@"


def cpu_overrides(segment: float, batch: int, updates: int) -> dict:
    """What the paper-profile LM needs to run on a CPU (see the module docstring)."""
    return {"conditioner": "none", "device": "cpu", "autocast": False, "fsdp.use": False, "optim.ema.device": "cpu",
            "dataset.segment_duration": segment, "dataset.batch_size": batch, "dataset.num_workers": 0,
            "dataset.train.num_samples": batch * updates, "dataset.valid.num_samples": batch,
            "optim.epochs": 1, "optim.updates_per_epoch": updates, "checkpoint.save_last": False}


def corpus_32khz(root: Path) -> Path:
    """The fixture music (16 kHz files; audiocraft's AudioDataset resamples them to the LM's 32 kHz) in the layout
    of config/dset/audio/mmd_music_32khz.yaml."""
    manifest = root / "all.jsonl"
    subprocess.run([sys.executable, "-m", "audiocraft.data.audio_dataset", str(MUSIC_FIXTURE), str(manifest),
                    "--resolve"], check=True, capture_output=True)
    for split in SPLITS:
        (root / "music_32khz" / split).mkdir(parents=True)
        shutil.copy(manifest, root / "music_32khz" / split / "data.jsonl")
    return root


# -- step 1, in its own process ------------------------------------------------------------------------------
def codec_child(args) -> dict:
    """Saves the untrained paper codec in the Dora dir; composes the LM's argv; runs the LM preflight on it."""
    import torch
    from mmd_audiocraft.grids._profile import current

    from mmd_audiocraft.integration.errors import ConfigError
    from mmd_audiocraft.integration.preflight import check_lm_codec
    from mmd_audiocraft.integration.seams import install_all
    from mmd_audiocraft.train import audiocraft_train, main

    install_all()
    torch.manual_seed(0)
    codec = main.get_xp([CODEC_SOLVER, *CODEC_CPU])
    codec.folder.mkdir(parents=True, exist_ok=True)
    with codec.enter():
        solver = audiocraft_train.get_solver(codec.cfg)
        solver.save_checkpoints()
        wav = next(iter(solver.dataloaders["valid"]))
        with torch.no_grad():
            codes, _ = solver.model.eval().encode(wav)
    distinct = [int(codes[:, k].unique().numel()) for k in range(codes.shape[1])]
    lm = [*current().lm, {"compression_model_checkpoint": f"//sig/{codec.sig}"},
          cpu_overrides(args.segment, args.batch, args.updates)]
    argv = main.value_to_argv(lm)
    cfg = main.get_xp(argv).cfg
    check_lm_codec(cfg)  # raises on a codec this LM cannot use
    cfg.transformer_lm.card = 1024
    try:
        check_lm_codec(cfg)
        refusal = None
    except ConfigError as exc:
        refusal = str(exc)
    return {"codec_sig": codec.sig, "lm_argv": argv, "preflight_refuses_card_1024": refusal,
            "codec_distinct_codes_per_codebook": distinct}


# -- step 2, in its own process ------------------------------------------------------------------------------
def lm_child(args) -> None:
    """`dora -P mmd_audiocraft run LM_ARGV` with update timings and the built LM recorded to $BENCH_OUT."""
    from audiocraft.solvers.base import StandardSolver
    from audiocraft.solvers.musicgen import MusicGenSolver
    from dora.__main__ import main as dora_main

    record: dict = {"step_seconds": []}
    stock_step, stock_build, stock_should_run = (MusicGenSolver.run_step, MusicGenSolver.build_model,
                                                 StandardSolver.should_run_stage)

    def run_step(self, idx, batch, metrics):
        start = time.perf_counter()
        out = stock_step(self, idx, batch, metrics)
        if self.is_training:
            record["step_seconds"].append(time.perf_counter() - start)
        return out

    def build_model(self):
        stock_build(self)
        codec, lm = self.compression_model, self.model
        record["codec"] = {"num_codebooks": int(codec.num_codebooks), "cardinality": int(codec.cardinality),
                           "frame_rate": float(codec.frame_rate), "sample_rate": int(codec.sample_rate)}
        record["lm"] = {"num_codebooks": int(lm.num_codebooks), "card": int(lm.card),
                        "delays": [int(d) for d in lm.pattern_provider.delays],
                        "pattern": type(lm.pattern_provider).__name__,
                        "params_millions": sum(p.numel() for p in lm.parameters()) / 1e6,
                        "dim": int(lm.dim), "layers": len(lm.transformer.layers)}

    def should_run_stage(self, stage_name):
        return False if stage_name in ("evaluate", "generate") else stock_should_run(self, stage_name)

    MusicGenSolver.run_step, MusicGenSolver.build_model = run_step, build_model
    StandardSolver.should_run_stage = should_run_stage
    sys.argv = ["dora", "-P", "mmd_audiocraft", "run", *args.lm_argv]
    try:
        dora_main()
    finally:
        Path(os.environ["BENCH_OUT"]).write_text(json.dumps(record))


# -- the parent ------------------------------------------------------------------------------------------------
def _child(cmd: list[str], env: dict, cwd: Path) -> tuple[subprocess.CompletedProcess, float, float]:
    """(the finished process, wall seconds, its peak RSS in MB from wait4)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        output = out.read()
    done = subprocess.CompletedProcess(cmd, proc.returncode, output, "")
    return done, time.perf_counter() - start, usage.ru_maxrss / 1024.0


def checks(record: dict, history: list[dict]) -> dict:
    codec, lm = record.get("codec", {}), record.get("lm", {})
    (epoch,) = history or [{}]
    train_ce, valid_ce = epoch.get("train", {}).get("ce"), epoch.get("valid", {}).get("ce")
    n_q = codec.get("num_codebooks")
    return {
        "card_is_the_codecs": lm.get("card") == codec.get("cardinality") == 2048,
        "num_codebooks_is_the_codecs": lm.get("num_codebooks") == n_q == 4,
        "delays_are_0_to_n_q_minus_1": n_q is not None and lm.get("delays") == list(range(n_q)),
        "train_ce_logged_finite": isinstance(train_ce, float) and math.isfinite(train_ce),
        "valid_ce_logged_finite": isinstance(valid_ce, float) and math.isfinite(valid_ce),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--segment", type=float, default=1.0, help="dataset.segment_duration, seconds")
    ap.add_argument("--batch", type=int, default=2, help="dataset.batch_size")
    ap.add_argument("--updates", type=int, default=2, help="optim.updates_per_epoch (one epoch)")
    ap.add_argument("--json", type=Path, help="also write the result here")
    ap.add_argument("--codec-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--lm-child", nargs="*", dest="lm_argv", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.codec_child:
        print(RESULTS + json.dumps(codec_child(args)))
        return 0
    if args.lm_argv is not None:
        lm_child(args)
        return 0

    work = Path(tempfile.mkdtemp(prefix="bench_musicgen_"))
    try:
        dora_dir = work / "dora"
        env = dict(os.environ, AUDIOCRAFT_DORA_DIR=str(dora_dir), HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1",
                   MMD_AUDIOCRAFT_CORPUS=str(corpus_32khz(work / "corpus")), MMD_GRID_PROFILE="paper",
                   MMD_DSET="audio/mmd_music_32khz",  # the paper profile trains on the data it is given
                   BENCH_OUT=str(work / "record.json"))
        sizes = ["--segment", str(args.segment), "--batch", str(args.batch), "--updates", str(args.updates)]
        proc, codec_seconds, codec_rss = _child([sys.executable, __file__, "--codec-child", *sizes], env, work)
        if proc.returncode or RESULTS not in proc.stdout:
            raise SystemExit(f"codec step failed ({proc.returncode}):\n{proc.stdout[-6000:]}")
        codec = json.loads(proc.stdout.split(RESULTS, 1)[1])
        proc, lm_seconds, lm_rss = _child([sys.executable, __file__, "--lm-child", *codec["lm_argv"]], env, work)
        if proc.returncode:
            raise SystemExit(f"LM step failed ({proc.returncode}):\n{proc.stdout[-6000:]}")
        record = json.loads((work / "record.json").read_text())
        from mmd_audiocraft.integration import xps

        lms = [p for p in xps.xps_dir(dora_dir).iterdir() if p.name != codec["codec_sig"]]
        (lm_folder,) = lms
        history = xps.read_history(lm_folder)
        from mmd_audiocraft.apps.json_output import provenance

        result = {
            **provenance(),
            "what": "MusicGen-small (grids/_profile.py paper profile) on an untrained paper codec, CPU",
            "cpu_overrides": cpu_overrides(args.segment, args.batch, args.updates),
            "torch_threads": "torch default (num_threads=1 in audiocraft's config)",
            "nproc": os.cpu_count(), "load_avg_1min_at_end": os.getloadavg()[0],
            "codec_sig": codec["codec_sig"], "lm_sig": lm_folder.name, "lm_argv": codec["lm_argv"],
            "codec": record.get("codec"), "lm": record.get("lm"),
            "step_seconds": record["step_seconds"],
            "seconds_per_step_after_first": (sum(record["step_seconds"][1:]) / max(1, len(record["step_seconds"]) - 1)),
            "lm_process_seconds": lm_seconds, "lm_process_peak_rss_mb": lm_rss,
            "codec_process_seconds": codec_seconds, "codec_process_peak_rss_mb": codec_rss,
            "history": history,
            "preflight_refuses_card_1024": codec["preflight_refuses_card_1024"],
            "codec_distinct_codes_per_codebook": codec["codec_distinct_codes_per_codebook"],
        }
        result["checks"] = checks(record, history)
        distinct = codec["codec_distinct_codes_per_codebook"]
        result["checks"]["codec_codes_vary"] = len(distinct) == 4 and all(n > 1 for n in distinct)
        result["checks"]["preflight_refuses_card_mismatch"] = bool(
            codec["preflight_refuses_card_1024"]
            and "does not fit: set transformer_lm.card=2048 (" in codec["preflight_refuses_card_1024"])
        text = json.dumps(result, indent=2)
        print(text)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(text + "\n")
        return 0 if all(result["checks"].values()) else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
