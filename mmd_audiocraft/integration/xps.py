"""Dora experiment folders: where an XP lives, what it holds, which codec an LM XP trained on.

The one module that knows the layout of a Dora dir (audiocraft's: AUDIOCRAFT_DORA_DIR or the team config's
`dora_dir`, shared by our Dora main) and what audiocraft and we keep in it:

    <dora dir>/xps/<SIG>/           an XP (`//sig/SIG` in audiocraft's configs; `dora run -f SIG`)
        .argv.json                  its Dora argv (dora.XP._argv_cache), what `-f SIG` and grids recompose
        history.json                per-epoch {stage: {metric: value}} (flashy's `xp.link.update_history`)
        checkpoint.th               audiocraft's last checkpoint (`checkpoint.checkpoint_name()`, rank 0)
        codec_provenance.json       ours: the codec an LM XP trained on (signature, sha256 of its weights)
        factorization_gap.json      ours: the factorization gap `measure` cached for `compare`
        code_agreement.json,        ours: how far its codes moved from a reference codec's, and how stable
        code_stability.json         they are under re-encoding (`measure --reference/--stability`)
    <dora dir>/grids/<NAME>/<SIG>   Dora's links to the XPs a grid defines

Dora internals used here are listed in integration/seams.py's table (Launcher._herd/_shepherd, Sheep).
"""
from __future__ import annotations

import datetime
import hashlib
import json
import typing as tp
from pathlib import Path

SIG_PREFIX = "//sig/"
ARGV_NAME = ".argv.json"
HISTORY_NAME = "history.json"
CHECKPOINT_NAME = "checkpoint.th"  # audiocraft's checkpoint_name(use_fsdp=False)
PROVENANCE_NAME = "codec_provenance.json"
GAP_CACHE_NAME = "factorization_gap.json"
# measure --reference / --stability of an XP's checkpoint, cached beside it for compare: measure's key -> file
DRIFT_CACHE_NAMES = {"code_agreement": "code_agreement.json", "code_stability": "code_stability.json"}
ACCEPT_KEY = "accept_codec_change"  # config key (mmd_config.yaml; not in signatures) that overrides the check


class ProvenanceError(ValueError):
    """The codec behind an LM XP's `compression_model_checkpoint` is not the one it trained on."""


# -- where ----------------------------------------------------------------------------------------------------
def dora_dir() -> Path:
    """audiocraft's Dora dir (AUDIOCRAFT_DORA_DIR, else the team config's), which our main shares."""
    from audiocraft import train

    return Path(train.main.dora.dir)


def sig_of(spec: tp.Any) -> str | None:
    """'//sig/SIG' -> 'SIG'; None for anything else (a path, //pretrained/..., None)."""
    text = str(spec or "")
    if not text.startswith(SIG_PREFIX):
        return None
    return text[len(SIG_PREFIX):].strip("/") or None


def xps_dir(root: Path | None = None) -> Path:
    """The folder of every XP of Dora dir `root` (default: audiocraft's)."""
    return Path(root if root is not None else dora_dir()) / "xps"


def xp_folder(sig: str, root: Path | None = None) -> Path:
    """The folder of XP `sig` in Dora dir `root` (default: audiocraft's)."""
    return xps_dir(root) / sig


def checkpoint_of(folder: Path) -> Path:
    return Path(folder) / CHECKPOINT_NAME


def gap_cache(folder: Path) -> Path:
    """Where `measure` caches an XP's factorization gap and `compare` reads it."""
    return Path(folder) / GAP_CACHE_NAME


def current_folder() -> Path | None:
    """The folder of the XP this process runs (Dora's `get_xp`), None outside one."""
    from dora import get_xp

    try:
        return Path(get_xp().folder)
    except RuntimeError:
        return None


# -- what an XP folder holds ------------------------------------------------------------------------------------
def read_history(folder: Path) -> list[dict]:
    """Per-epoch {stage: {metric: value}} flashy wrote ([] before the first epoch ends, or while unreadable)."""
    try:
        history = json.loads((Path(folder) / HISTORY_NAME).read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return []
    return history if isinstance(history, list) else []


def read_argv(folder: Path) -> list[str] | None:
    """Dora's argv of the XP, None when the folder has none (never run nor `--init`ed here)."""
    try:
        return json.loads((Path(folder) / ARGV_NAME).read_text())
    except FileNotFoundError:
        return None


def last_logged(folder: Path, stage: str) -> dict | None:
    """The metrics of the last epoch whose `stage` was logged, None if none was."""
    for epoch in reversed(read_history(folder)):
        if isinstance(epoch.get(stage), dict):
            return epoch[stage]
    return None


# -- our Dora main's rules for XP folders -------------------------------------------------------------------------
STAGE_KEYS = ("execute_only", "execute_inplace")  # a run of one stage, not a training run
UNSIGNED_KEYS = ("execute_inplace", ACCEPT_KEY)  # how a run reads an XP, not what the XP is


def install_folder_rules(main) -> None:
    """On our Dora main (a dora HydraMain): `UNSIGNED_KEYS` stay out of signatures (audiocraft's config excludes
    execute_only but not execute_inplace, so `-f SIG execute_only=evaluate execute_inplace=true` landed in a
    new, empty XP), and a one-stage run in an XP that already has its argv keeps that argv (Dora's `init_xp`
    would store `execute_only=...` in it, and the next `dora run -f SIG` would evaluate instead of training)."""
    main.dora.exclude.extend(k for k in UNSIGNED_KEYS if k not in main.dora.exclude)
    stock = main.init_xp
    if getattr(stock, "_keeps_argv", False):
        return

    def init_xp(xp):
        stage_run = any(arg.split("=", 1)[0].lstrip("+") in STAGE_KEYS for arg in xp.argv)
        if stage_run and read_argv(xp.folder) is not None:
            return xp
        return stock(xp)

    init_xp._keeps_argv = True
    main.init_xp = init_xp


# -- listing a grid's XPs without scheduling them -----------------------------------------------------------------
class ListingShepherd:
    """What a Dora Launcher needs of its Shepherd to list XPs: Dora's own Shepherd creates folders and cancels
    orphan SLURM jobs when built; this one only composes each XP (`main.get_xp`), like `dora grid --dry_run`."""

    def __init__(self, main):
        self.main = main

    def get_sheep_from_argv(self, argv):
        from dora.shep import Sheep

        return Sheep(self.main.get_xp(argv))


def list_grid(main, explorer):
    """The Dora Herd of every XP that `explorer` (a grid's Dora Explorer) defines: `.sheeps` (sig -> Sheep, in
    the grid's order) and `.slurm_configs` (sig -> SlurmConfig); nothing is scheduled, created or cancelled."""
    from dora.explore import Herd, Launcher

    herd = Herd()
    explorer(Launcher(ListingShepherd(main), main.get_slurm_config(), herd))
    herd.complete()
    return herd


def list_without_scheduling(launcher, *args):
    """Put an XP in the grid being run (its table, `--init`) without scheduling it; returns its Sheep.

    Uses Dora's Launcher internals (dora-search 0.1.12-0.1.13): the XP joins the herd but no job array, and
    `dora grid` only submits the XPs of job arrays.
    """
    sub = launcher.bind(*args)
    try:
        herd, shepherd, argv, slurm = launcher._herd, launcher._shepherd, sub._argv, sub._slurm
    except AttributeError as exc:
        raise RuntimeError(f"this Dora version's Launcher changed ({exc}): waiting XPs cannot be listed; "
                           "use dora-search 0.1.12 or 0.1.13") from None
    herd.complete()  # keep the table in the order the grid lists its XPs
    sheep = shepherd.get_sheep_from_argv(argv)
    if sheep.xp.sig not in herd.sheeps:
        herd.sheeps[sheep.xp.sig] = sheep
        herd.slurm_configs[sheep.xp.sig] = slurm
    return sheep


# -- codec provenance of LM XPs -----------------------------------------------------------------------------------
def codec_digest(model) -> str:
    """sha256 (hex, first 16 digits) of a codec's weights: every tensor of `model.state_dict()` by name, dtype,
    shape and bytes. Equal for the same weights loaded twice; any changed value changes it."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{flat.dtype}|{list(tensor.shape)}|".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def read_provenance(folder: Path) -> dict | None:
    """{codec, sig, sha256, recorded, accepted: [{sha256, at}]} of an LM XP, None if it recorded none."""
    try:
        return json.loads((Path(folder) / PROVENANCE_NAME).read_text())
    except FileNotFoundError:
        return None


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def record_provenance(folder: Path, spec: str, digest: str) -> dict:
    """Write the record of a fresh LM XP: the codec it trains on (`spec`, its //sig/ signature) and its digest."""
    record = {"codec": str(spec), "sig": sig_of(spec), "sha256": digest, "recorded": _now(), "accepted": []}
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / PROVENANCE_NAME).write_text(json.dumps(record, indent=2) + "\n")
    return record


def provenance_status(record: dict | None, digest: str) -> str:
    """'same' (the recorded codec), 'accepted' (a change the user accepted before), 'changed', or 'unrecorded'."""
    if record is None:
        return "unrecorded"
    if digest == record.get("sha256"):
        return "same"
    return "accepted" if digest in {a.get("sha256") for a in record.get("accepted", [])} else "changed"


def check_provenance(folder: Path, spec: str, digest: str, accept: bool, what: str) -> str | None:
    """Check the codec now behind `spec` (weights `digest`) against the one LM XP `folder` trained on.

    `what` says which run asks ("resuming", "evaluating"). Returns None when it is the same codec (or the XP
    recorded none), a warning line when it changed and the user accepted it (`accept`; the change is added to
    the record), and raises ProvenanceError naming both digests otherwise.
    """
    record = read_provenance(folder)
    status = provenance_status(record, digest)
    if status in ("same", "unrecorded"):
        return None
    line = (f"{spec}: the codec changed since LM XP {Path(folder).name} trained on it (recorded sha256 "
            f"{record['sha256']}, now {digest})")
    if status == "accepted" or accept:
        if status == "changed":
            record.setdefault("accepted", []).append({"sha256": digest, "at": _now()})
            (Path(folder) / PROVENANCE_NAME).write_text(json.dumps(record, indent=2) + "\n")
        return f"{line}; {what} anyway ({ACCEPT_KEY}=true): its scores are not comparable with earlier ones"
    raise ProvenanceError(f"{line}; {what} would run the LM on codes it was not trained on. Restore that codec, "
                          f"or add {ACCEPT_KEY}=true to go on with the new one")
