"""Runs documented commands in one process (importing audiocraft costs ~15 s per process): `python THIS STEPS.json`.

A step is one documented command, placeholders already substituted by the test:
- `export A=x` / `A=x`: set in the environment (a new AUDIOCRAFT_DORA_DIR moves the Dora dir, as a new process
  would see it);
- `python -c CODE`: run here;
- `dora -P mmd_audiocraft run ...`, dry: the XP is composed as Dora composes it (`-f SIG` reads its argv), its
  solver is built through audiocraft's `train.get_solver` (our checks included) and restored (`continue_from`
  loaded); nothing is trained. On a machine without GPU the solver is built on CPU (cfg.device only; the XP
  keeps its signature);
- `dora -P mmd_audiocraft grid ...`: Dora's own CLI with `--dry_run --init` (SLURM submission would fail the
  step); `dora -P mmd_audiocraft info ...`: Dora's own CLI;
- `prepare-codec32`: a checkpoint of `solver=compression/encodec_mmd_musicgen_32khz` (the solver built, then
  saved untrained) in the current Dora dir, its signature in $CODEC32_SIG: the 32 kHz codec the fine-tuning
  example starts from.
Prints one JSON line: for each step, its key, whether it succeeded and the error or output tail.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import traceback
from pathlib import Path

FOUND: dict[str, str] = {}  # variables the steps define for the ones after (GRID_SIG, CODEC32_SIG)


def _set_env(assignments: list[str]) -> None:
    from mmd_audiocraft.train import audiocraft_train, main

    for item in assignments:
        name, value = item.split("=", 1)
        os.environ[name] = os.path.expandvars(value)
        if name == "AUDIOCRAFT_DORA_DIR":
            main.dora.dir = audiocraft_train.main.dora.dir = Path(os.environ[name])


def _build(args: list[str]):
    import torch

    from mmd_audiocraft.train import audiocraft_train, main

    sig, rest, i = None, [], 0
    while i < len(args):
        if args[i] == "-f":
            sig, i = args[i + 1], i + 2
        elif args[i] == "--ddp_workers":
            i += 2
        elif args[i] == "-d":
            i += 1
        else:
            rest, i = rest + [args[i]], i + 1
    xp = main.get_xp_from_sig(sig) if sig else None
    xp = main.get_xp((list(xp.argv) if xp else []) + rest) if rest or not sig else xp
    with xp.enter():
        if not torch.cuda.is_available():
            xp.cfg.device = "cpu"
        solver = audiocraft_train.get_solver(xp.cfg)
        solver.restore()
    return xp, solver


def _dora_cli(args: list[str]) -> None:
    from dora.__main__ import main as dora_main

    sys.argv = ["dora", "-P", "mmd_audiocraft", *args]
    dora_main()


def run_step(words: list[str]) -> str:
    words = [os.path.expandvars(w) for w in words]
    if words[0] == "export" or "=" in words[0] and len(words) == 1:
        _set_env(words[1:] if words[0] == "export" else words)
        return ""
    if words[0] == "prepare-codec32":
        xp, solver = _build(["solver=compression/encodec_mmd_musicgen_32khz", "dset=audio/mmd_music_32khz"])
        xp.folder.mkdir(parents=True, exist_ok=True)
        with xp.enter():
            solver.save_checkpoints()
        FOUND["CODEC32_SIG"] = os.environ["CODEC32_SIG"] = xp.sig
        return xp.sig
    if words[:2] == ["python", "-c"]:
        exec(compile(words[2], "<documented python -c>", "exec"), {"__name__": "__main__"})
        return ""
    prefix = [w for w in words[: words.index("dora")]]
    words = words[words.index("dora"):]
    assert words[:3] == ["dora", "-P", "mmd_audiocraft"], words
    saved = dict(os.environ)
    _set_env(prefix)
    try:
        command, args = words[3], words[4:]
        if command == "run":
            xp, solver = _build(args)
            return f"built {type(solver).__name__} for XP {xp.sig}"
        if command == "grid":
            _dora_cli(["grid", *args, *[f for f in ("--dry_run", "--init") if f not in args]])
        else:
            _dora_cli([command, *args])
        return ""
    finally:
        os.environ.clear()
        os.environ.update(saved, **FOUND)


def main() -> None:
    from mmd_audiocraft.integration.seams import install_all
    from mmd_audiocraft.train import main as _  # noqa: F401  (our main's setup: config path, Dora dir)

    install_all()  # what our Dora main installs before audiocraft's main runs (checkpoints trusted included)
    import dora.grid
    import dora.shep

    stock_run_grid = dora.grid.run_grid

    def recording_run_grid(main, explorer, grid_name, *args, **kwargs):
        sheeps = stock_run_grid(main, explorer, grid_name, *args, **kwargs)
        FOUND["GRID_SIG"] = sheeps[0].xp.sig  # the `SIG` of the commands that follow
        return sheeps

    def no_slurm(self, job_array):
        raise AssertionError(f"would submit {[s.xp.sig for s in job_array.sheeps]} to SLURM")

    dora.grid.run_grid = recording_run_grid
    dora.shep.Shepherd._submit = no_slurm
    results = []
    for step in json.loads(Path(sys.argv[1]).read_text()):
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                detail = run_step(step["words"])
            results.append({"key": step["key"], "ok": True, "detail": detail + out.getvalue()[-2000:]})
        except BaseException:  # SystemExit included (Dora's CLI exits on bad arguments)
            results.append({"key": step["key"], "ok": False,
                            "detail": out.getvalue()[-2000:] + traceback.format_exc()[-4000:]})
    print("@@RESULTS@@" + json.dumps(results))


if __name__ == "__main__":
    main()
