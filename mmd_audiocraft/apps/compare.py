"""`mmd-audiocraft compare`: codec XPs side by side from what they logged (the paper's Figure 2 from your XPs).

Nothing is recomputed: every number comes from files the XPs wrote. Per codec XP (a compression solver XP):
the settings that differ between the compared XPs (from their Dora argv) and `losses.inde`; from `history.json`,
the last epoch with an `evaluate` stage (the independence metrics of `integration/evaluation.py`, audiocraft's
reconstruction metrics) and the `valid` stage of that epoch; `inde_grad_ratio` of the last `train` stage; the
factorization gap, code agreement with a reference codec and code stability of measure reports cached in the XP
folder (`factorization_gap.json`, `code_agreement.json`, `code_stability.json`); the last valid
cross-entropy of every LM XP of the same Dora dir whose `compression_model_checkpoint` is `//sig/<codec sig>`,
per `codebooks_pattern.modeling`; and, for each such LM, what its evaluation XP (`continue_from=//sig/<LM sig>
execute_only=evaluate`, grid mmd_musicgen_eval) logged: the paper's Table 2 columns FAD (VGGish), KL (PaSST) and
CLAP score, and chroma cosine, where logged.

Inputs: XP folders, `//sig/SIG` (the Dora dir of the plugin's main; AUDIOCRAFT_DORA_DIR honoured) and grid names
of `grids/` (the XPs its explorer lists, as `dora grid NAME --dry_run` would, with nothing
scheduled nor written; XPs that never ran are rows with status "not run"). Folder inputs whose XP ran need no
audiocraft import (Hydra saved their config in `.hydra/config.yaml`); `//sig/` and grids load the Dora main.

The result is a JSON-ready dict (schema COMPARE_SCHEMA):
    schema, inputs    the version of these keys; the inputs as given
    settings          keys of the overrides that differ between the XPs (each row's values under `settings`)
    xps               one dict per XP, in input order (duplicates dropped): input, sig, folder, status
                      ("run" | "no evaluate stage yet" | "not run"), solver, `losses.inde`, settings, epoch
                      (1-based, of the evaluate stage; null when none), evaluate and valid (that epoch's
                      stages as logged), train ({inde_grad_ratio} of the last train stage, if logged), at_null
                      (corrected information keys <= 0), factorization_gap, code_agreement, code_stability
                      (the cached reports, as `measure` writes them, or null), lm
                      ([{sig, modeling, ce, epoch, codec, warning, evaluation}]: LM XPs on this codec;
                      codec: same | accepted | changed | unrecorded | unknown, whether this codec's weights are
                      the ones the LM recorded training on (integration/xps.py), warning: a line when not;
                      evaluation: null, or
                      {sig, epoch, and those of fad, kld, text_consistency, chroma_cosine, ce, ppl that its
                      evaluate stage logged (audiocraft's names: fad = FAD VGGish, kld = KL PaSST,
                      text_consistency = CLAP cosine)} of the LM's last evaluation XP, by folder name)
Non-finite numbers are written as null (strict JSON).
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import math
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from ..integration import xps
from ..integration.xps import SIG_PREFIX

__all__ = ["COMPARE_SCHEMA", "CompareInputError", "XPEntry", "resolve_inputs", "compare", "format_compare_table",
           "CORRECTED_KEYS", "is_at_null"]

COMPARE_SCHEMA = "mmd-audiocraft/compare/1"
GAP_FILE = xps.GAP_CACHE_NAME  # written by `measure --xp` next to the XP's checkpoint
# written by `measure --reference/--stability` of an XP's checkpoint in its folder: measure's key -> file name
CODE_DRIFT_FILES = xps.DRIFT_CACHE_NAMES
WEIGHT_KEY = "losses.inde"
HYDRA_CONFIG = Path(".hydra") / "config.yaml"  # Hydra's copy of the composed config, written when the XP runs
# keys of valid stages that measure reconstruction (audiocraft's compression solver; others are usage/MMD)
VALID_RECONSTRUCTION = ("l1", "mel", "msspec", "sisnr")
# what an LM's evaluation XP logs (audiocraft's MusicGenSolver.evaluate): key, table header, format, table scale.
# The paper's Table 2: FAD_vgg, KL, CLAP (%); chroma cosine and the evaluate split's ce where logged.
EVALUATION_METRICS = (("fad", "FAD", ".3f", 1), ("kld", "KL", ".3f", 1), ("text_consistency", "CLAP%", ".1f", 100),
                      ("chroma_cosine", "chroma", ".3f", 1), ("ce", "eval ce", ".4f", 1), ("ppl", "eval ppl", ".2f", 1))


class CompareInputError(ValueError):
    """An input that names no XP, sig or grid, or an XP that is not a codec (a user error, one line)."""


# -------------------------------------------------------------------------------------------- metrics
def _codebook_key(pattern: str):
    return re.compile(pattern.replace("{k}", r"(\d+)") + "$")


_MI_REST = _codebook_key("mi_rest_q{k}_bits")
_ENTROPY = _codebook_key("entropy_q{k}_bits")
# Information estimates that are raw - null: at or below 0 they say "no dependence above the estimator's bias",
# never a negative amount of information.
CORRECTED_KEYS = ("tc_pair_pct", "tc_all_bits")
INDEPENDENCE_KEYS = ("inde_heldout", "tc_pair_raw_pct", "tc_pair_null_pct", "tc_pair_pct", "tc_all_bits")


def is_corrected(key: str) -> bool:
    return key in CORRECTED_KEYS or bool(_MI_REST.match(key))


def is_at_null(key: str, value) -> bool:
    """A corrected information value at or below its shuffle-null (displayed as saturated, never negative)."""
    return is_corrected(key) and isinstance(value, (int, float)) and value <= 0


def _is_independence(key: str) -> bool:
    return key in INDEPENDENCE_KEYS or bool(_MI_REST.match(key) or _ENTROPY.match(key))


# ------------------------------------------------------------------------------------------------ XPs
@dataclasses.dataclass
class XPEntry:
    """One XP to compare: where it lives and how it was configured (argv and config may be unknown)."""
    sig: str
    folder: Path
    source: str  # the input that named it
    argv: list[str] | None = None  # Dora's argv (.argv.json), None when the folder has none
    cfg: object | None = None  # DictConfig: composed by Dora (grids) or saved by Hydra; None until needed

    @property
    def dora_dir(self) -> Path | None:
        return self.folder.parent.parent if self.folder.parent == xps.xps_dir(self.folder.parent.parent) else None


def _main():
    from ..train import main

    return main


def _read_json(path: Path, what: str):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CompareInputError(f"{path}: cannot read the {what} ({exc})") from exc


def _saved_config(folder: Path):
    path = folder / HYDRA_CONFIG
    if not path.is_file():
        return None
    from omegaconf import OmegaConf

    return OmegaConf.load(path)


def _folder_entry(folder: Path, source: str) -> XPEntry:
    argv = _read_json(folder / ".argv.json", "XP's Dora argv (.argv.json)")
    if argv is None and not (folder / xps.HISTORY_NAME).is_file():
        raise CompareInputError(f"{source}: not a Dora XP folder (no history.json nor .argv.json in {folder})")
    if argv is not None and not (isinstance(argv, list) and all(isinstance(a, str) for a in argv)):
        raise CompareInputError(f"{folder / '.argv.json'}: expected a list of strings (Dora's argv), "
                                f"got {type(argv).__name__}")
    return XPEntry(folder.name, folder, source, argv, _saved_config(folder))


def _sig_entry(spec: str) -> XPEntry:
    sig = spec[len(SIG_PREFIX):].strip("/")
    if not sig or "/" in sig:
        raise CompareInputError(f"{spec}: expected //sig/SIG with one XP signature")
    folder = xps.xp_folder(sig, _main().dora.dir)
    if not folder.is_dir():
        raise CompareInputError(f"{spec}: no XP folder {folder} (give the SIG of an XP of this Dora dir: "
                                "AUDIOCRAFT_DORA_DIR or audiocraft's team config)")
    return _folder_entry(folder, spec)


def grid_names() -> list[str]:
    """The grids `dora -P mmd_audiocraft grid NAME` knows (modules of grids/)."""
    import pkgutil

    from .. import grids

    return sorted(m.name for m in pkgutil.iter_modules(grids.__path__) if not m.name.startswith("_"))


def _grid_entries(name: str) -> list[XPEntry]:
    from dora.explore import Explorer

    main = _main()
    explorer = getattr(importlib.import_module(f"mmd_audiocraft.grids.{name}"), "explorer", None)
    if not isinstance(explorer, Explorer):
        raise CompareInputError(f"grid {name}: grids/{name}.py has no Dora `explorer`")
    try:
        with contextlib.redirect_stdout(sys.stderr):  # LM grids print which codecs they wait for
            sheeps = xps.list_grid(main, explorer).sheeps
    except ValueError as exc:  # e.g. an unknown $MMD_GRID_PROFILE (grids/_profile.py)
        raise CompareInputError(f"grid {name}: {exc}") from exc
    return [XPEntry(sig, sheep.xp.folder, name, list(sheep.xp.argv), sheep.xp.cfg) for sig, sheep in sheeps.items()]


def resolve_inputs(inputs: Sequence[str]) -> list[XPEntry]:
    """The XPs named by `inputs`, in order, each once (by folder).

    inputs: XP folders, `//sig/SIG`, or names of grids of grids/, mixed.
    Raises CompareInputError naming the first input that is none of these.
    """
    if not inputs:
        raise CompareInputError("expected at least one XP folder, //sig/SIG or grid name")
    entries: list[XPEntry] = []
    for spec in inputs:
        spec = str(spec)
        path = Path(spec).expanduser()
        if spec.startswith(SIG_PREFIX):
            found = [_sig_entry(spec)]
        elif path.is_dir():
            found = [_folder_entry(path.resolve(), spec)]
        elif path.exists():
            raise CompareInputError(f"{spec}: not a folder (expected an XP folder, //sig/SIG or a grid name)")
        elif re.fullmatch(r"[A-Za-z_]\w*", spec) and spec in grid_names():
            found = _grid_entries(spec)
        else:
            raise CompareInputError(f"{spec}: no such XP folder, and not a grid of grids/ "
                                    f"({', '.join(grid_names())}) nor //sig/SIG")
        seen = {e.folder.resolve() for e in entries}
        entries += [e for e in found if e.folder.resolve() not in seen]
    return entries


def _config(entry: XPEntry):
    """The XP's config: composed (grid), saved by Hydra when it ran, else composed by Dora from its argv."""
    if entry.cfg is None and entry.argv is not None:
        entry.cfg = _main().get_xp(entry.argv).cfg
    return entry.cfg


def _select(cfg, key: str):
    from omegaconf import OmegaConf

    return OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)


# ------------------------------------------------------------------------------------------- settings
def _argv_overrides(argv: Sequence[str] | None) -> dict[str, str]:
    """key -> value of Dora's `key=value` overrides (Hydra's +/~/++ prefixes and quotes dropped)."""
    out = {}
    for arg in argv or ():
        key, sep, value = arg.partition("=")
        if sep:
            out[key.lstrip("+~")] = value.strip("\"'")
    return out


def _normalised(value) -> str:
    """Overrides as one text whatever their spelling: 1000, 1000.0 and 1e3 are the same weight."""
    if isinstance(value, bool):
        return str(value).lower()
    text = str(value)
    try:
        number = float(text)
    except ValueError:
        return text.lower() if text.lower() in ("true", "false") else text
    return format(number, "g")


def _setting(entry: XPEntry, overrides: dict[str, str], key: str) -> str:
    if key in overrides:
        return _normalised(overrides[key])
    if "/" in key or entry.cfg is None:  # a config group (model/encodec=...): its default choice
        return "default"
    value = _select(entry.cfg, key)
    return "default" if value is None else _normalised(value)


def differing_settings(entries: Sequence[XPEntry]) -> list[str]:
    """Override keys whose value differs between the XPs (in first-seen order), `losses.inde` excepted: it
    always has its own column."""
    overrides = [_argv_overrides(e.argv) for e in entries]
    keys = list(dict.fromkeys(k for o in overrides for k in o if k != WEIGHT_KEY))
    return [k for k in keys if len({_setting(e, o, k) for e, o in zip(entries, overrides)}) > 1]


def _weight(entry: XPEntry) -> float | None:
    value = _argv_overrides(entry.argv).get(WEIGHT_KEY)
    if value is None and entry.cfg is not None:
        value = _select(entry.cfg, WEIGHT_KEY)
    try:
        return None if value is None else float(value)
    except ValueError:
        return None


def _solver(entry: XPEntry) -> str | None:
    """The XP's solver (`compression` for codecs): from its config, else its `solver=` override; None when the
    folder says neither."""
    group = _argv_overrides(entry.argv).get("solver")
    if entry.cfg is None and group:
        return group.split("/", 1)[0]
    cfg = _config(entry)
    return None if cfg is None else _select(cfg, "solver")


# ------------------------------------------------------------------------------------------ histories
def _history(folder: Path) -> list[dict] | None:
    """Per-epoch {stage: {metric: value}} flashy wrote; None when the XP never finished an epoch."""
    history = _read_json(folder / xps.HISTORY_NAME, "XP's history.json")
    if history is None:
        return None
    if not isinstance(history, list) or not all(isinstance(epoch, dict) for epoch in history):
        raise CompareInputError(f"{folder / 'history.json'}: expected a list of per-epoch dicts "
                                f"(flashy's history), got {type(history).__name__}")
    return history


def _last_with(history: list[dict], stage: str, key: str | None = None) -> tuple[int, dict] | None:
    """(1-based epoch, that stage's metrics) of the last epoch whose `stage` (holding `key`) was logged."""
    for index in range(len(history) - 1, -1, -1):
        metrics = history[index].get(stage)
        if isinstance(metrics, dict) and (key is None or key in metrics):
            return index + 1, metrics
    return None


def _factorization_gap(folder: Path) -> dict | None:
    """The cached measure report's gap {total_bits, spread_bits, per_codebook_bits}, checked; None if absent."""
    path = folder / GAP_FILE
    gap = _read_json(path, "factorization gap report")
    if gap is None:
        return None
    if not isinstance(gap, dict):
        raise CompareInputError(f"{path}: expected a JSON object, got {type(gap).__name__}")
    for key in ("total_bits", "spread_bits"):
        if not isinstance(gap.get(key), (int, float)) or isinstance(gap.get(key), bool):
            raise CompareInputError(f"{path}: '{key}' is {gap.get(key)!r}, expected a number of bits")
    per = gap.get("per_codebook_bits", [])
    if not isinstance(per, list) or not all(isinstance(v, (int, float)) for v in per):
        raise CompareInputError(f"{path}: 'per_codebook_bits' is {per!r}, expected a list of numbers")
    return gap


def _code_drift(folder: Path, key: str) -> dict | None:
    """The cached measure report `key` (code_agreement or code_stability: {per_codebook, joint, reconstruction,
    ...}), checked; None if absent."""
    path = folder / CODE_DRIFT_FILES[key]
    report = _read_json(path, f"{key} report")
    if report is None:
        return None
    if not isinstance(report, dict):
        raise CompareInputError(f"{path}: expected a JSON object, got {type(report).__name__}")
    fractions = [report.get("joint"), *(report.get("per_codebook") or [None])]
    if not isinstance(report.get("per_codebook"), list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 for v in fractions):
        raise CompareInputError(f"{path}: expected 'per_codebook' (a list) and 'joint' fractions in [0, 1], got "
                                f"{report.get('per_codebook')!r} and {report.get('joint')!r}")
    return report


def _evaluation(cfg, history: list[dict], sig: str) -> tuple[str, dict] | None:
    """(LM sig, {sig, epoch, metrics}) when the XP is an LM's evaluation (`execute_only=evaluate`,
    `continue_from=//sig/<LM sig>`) whose evaluate stage was logged; else None."""
    source = str(_select(cfg, "continue_from") or "")
    if _select(cfg, "execute_only") != "evaluate" or not source.startswith(SIG_PREFIX):
        return None
    last = _last_with(history, "evaluate")
    if last is None:
        return None
    epoch, metrics = last
    logged = {key: metrics[key] for key, *_ in EVALUATION_METRICS if key in metrics}
    return source[len(SIG_PREFIX):].strip("/"), {"sig": sig, "epoch": epoch, **logged}


def lm_index(dora_dir: Path, codec_sigs: Sequence[str]) -> dict[str, list[dict]]:
    """codec sig -> [{sig, modeling, ce, epoch, evaluation}] of the LM XPs of `dora_dir` that ran on
    `//sig/<codec sig>`, for the codecs `codec_sigs`.

    Cheap: only XPs with a history whose argv names one of these `//sig/` are read (an LM's evaluation XP
    carries its LM's overrides, so it names the codec too); their config is the one Hydra saved (or Dora's
    composition when there is none). ce: the last valid `ce` (nats per code, audiocraft's LM solver).
    evaluation: what the LM's last evaluation XP (by folder name) logged (`_evaluation`), or None.
    """
    index: dict[str, list[dict]] = {}
    evaluations: dict[str, dict] = {}
    wanted = {SIG_PREFIX + sig for sig in codec_sigs}
    root = xps.xps_dir(dora_dir)
    for folder in sorted(root.iterdir()) if root.is_dir() else ():
        argv_path = folder / xps.ARGV_NAME
        if not (folder / xps.HISTORY_NAME).is_file() or not argv_path.is_file():
            continue
        argv_text = argv_path.read_text()
        if not any(spec in argv_text for spec in wanted):
            continue
        try:
            cfg = _config(_folder_entry(folder, str(folder)))
        except CompareInputError:  # another XP's unreadable argv: not ours to judge here
            continue
        checkpoint = str(_select(cfg, "compression_model_checkpoint") or "")
        if _select(cfg, "solver") == "compression" or not checkpoint.startswith(SIG_PREFIX):
            continue
        history = _history(folder) or []
        evaluation = _evaluation(cfg, history, folder.name)
        if evaluation is not None:
            evaluations[evaluation[0]] = evaluation[1]  # folders in sorted order: the last one wins
            continue
        last = _last_with(history, "valid", "ce")
        if last is None:
            continue
        epoch, valid = last
        codec = checkpoint[len(SIG_PREFIX):].strip("/")
        if SIG_PREFIX + codec not in wanted:
            continue
        index.setdefault(codec, []).append(
            {"sig": folder.name, "modeling": str(_select(cfg, "codebooks_pattern.modeling")),
             "ce": valid["ce"], "epoch": epoch, "provenance": xps.read_provenance(folder)})
    for lms in index.values():
        for lm in lms:
            lm["evaluation"] = evaluations.get(lm["sig"])
    return index


def _check_codecs(entry: XPEntry, lms: list[dict]) -> None:
    """Each LM's `codec`: whether the codec now in `entry`'s folder is the one the LM recorded training on
    (integration/xps.py: same, accepted, changed, unrecorded; unknown when the codec cannot be loaded), and
    the `warning` line for a changed one. The codec is loaded once, only when some LM recorded one."""
    digest = None
    if any(lm["provenance"] for lm in lms):
        from ..integration.loaders import ModelLoadError, load_compression_model

        try:
            digest = xps.codec_digest(load_compression_model(str(entry.folder), trust_checkpoint=True).model)
        except ModelLoadError:
            digest = None
    for lm in lms:
        record = lm.pop("provenance")
        lm["codec"] = "unknown" if record and digest is None else xps.provenance_status(record, digest)
        lm["warning"] = None
        if lm["codec"] in ("changed", "accepted"):
            accepted = " (accepted with accept_codec_change=true)" if lm["codec"] == "accepted" else ""
            lm["warning"] = (f"LM {lm['sig']} trained on codec weights sha256 {record['sha256']}; {entry.sig} now has "
                             f"{digest}{accepted}: its cross-entropy and evaluations are not scores of this codec")


# -------------------------------------------------------------------------------------------- compare
def _row(entry: XPEntry, settings: list[str], lms: dict[str, list[dict]]) -> dict:
    overrides = _argv_overrides(entry.argv)
    history = _history(entry.folder)
    evaluated = _last_with(history, "evaluate") if history else None
    trained = _last_with(history, "train") if history else None
    epoch, evaluate = evaluated if evaluated else (None, {})
    valid = history[epoch - 1].get("valid", {}) if evaluated else {}
    train = {}
    if trained and "inde_grad_ratio" in trained[1]:
        train["inde_grad_ratio"] = trained[1]["inde_grad_ratio"]
    if history is None:
        status = "not run"
    else:
        status = "run" if evaluated else "no evaluate stage yet"
    return {"input": entry.source, "sig": entry.sig, "folder": str(entry.folder), "status": status,
            "solver": _solver(entry), WEIGHT_KEY: _weight(entry),
            "settings": {k: _setting(entry, overrides, k) for k in settings},
            "epoch": epoch, "evaluate": dict(evaluate), "valid": dict(valid), "train": train,
            "at_null": [k for k, v in evaluate.items() if is_at_null(k, v)],
            "factorization_gap": _factorization_gap(entry.folder),
            **{key: _code_drift(entry.folder, key) for key in CODE_DRIFT_FILES}, "lm": lms.get(entry.sig, [])}


def compare(inputs: Sequence[str]) -> dict:
    """The comparison of the codec XPs named by `inputs` (see the module docstring for the keys).

    Raises CompareInputError for an input that names nothing, or that names an XP which is not a codec
    (solver=compression) XP.
    """
    entries = resolve_inputs(inputs)
    for entry in entries:
        solver = _solver(entry)
        if solver is not None and solver != "compression":
            raise CompareInputError(f"{entry.source}: XP {entry.sig} is a {solver!r} XP, not a codec (expected "
                                    "solver=compression XPs; LM XPs appear in their codec's row)")
    settings = differing_settings(entries)
    indexes: dict[Path, dict] = {}  # one scan per Dora dir, for all its codecs
    for entry in entries:
        dora_dir = entry.dora_dir
        if dora_dir is not None and dora_dir not in indexes:
            indexes[dora_dir] = lm_index(dora_dir, [e.sig for e in entries if e.dora_dir == dora_dir])
    rows = [_row(entry, settings, indexes.get(entry.dora_dir, {})) for entry in entries]
    for entry, row in zip(entries, rows):
        _check_codecs(entry, row["lm"])
    return {"schema": COMPARE_SCHEMA, "inputs": [str(i) for i in inputs], "settings": settings, "xps": rows}


# ---------------------------------------------------------------------------------------------- table
AT_NULL = "<=null"


def cell(key: str, value, spec: str) -> str:
    """One table cell: '-' when absent, AT_NULL for a corrected information value at or below 0."""
    if value is None:
        return "-"
    if is_at_null(key, value):
        return AT_NULL
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return format(value, spec)


def _codebooks(rows: list[dict], pattern: re.Pattern) -> list[int]:
    return sorted({int(m.group(1)) for r in rows for k in r["evaluate"] if (m := pattern.match(k))})


def _independence_columns(rows: list[dict]) -> list[tuple[str, str, str]]:
    """(evaluate key, header, format) of the independence metrics some row has."""
    columns = [("inde_heldout", "MMD2 held-out", ".2e"), ("tc_pair_raw_pct", "TC% raw", ".3f"),
               ("tc_pair_null_pct", "TC% null", ".3f"), ("tc_pair_pct", "TC% corr", ".3f"),
               ("tc_all_bits", "TC all[bits]", ".4f")]
    columns += [(f"entropy_q{k}_bits", f"H q{k}", ".3f") for k in _codebooks(rows, _ENTROPY)]
    columns += [(f"mi_rest_q{k}_bits", f"I q{k};rest", ".4f") for k in _codebooks(rows, _MI_REST)]
    return [c for c in columns if any(c[0] in r["evaluate"] for r in rows)]


def reconstruction_columns(rows: list[dict]) -> list[tuple[str, str, str]]:
    """(key, header, format) of the reconstruction metrics some row has: evaluate-stage keys as logged (sisnr,
    visqol, ...), then those of the same epoch's valid stage as `valid_<key>`."""
    keys = list(dict.fromkeys(k for r in rows for k in r["evaluate"] if not _is_independence(k) and k != "duration"))
    columns = [(k, k, ".4g") for k in keys]
    columns += [(f"valid_{k}", f"valid {k}", ".4g") for k in VALID_RECONSTRUCTION if any(k in r["valid"] for r in rows)]
    return columns


def metric(row: dict, key: str):
    """A row's value of a column key (evaluate keys as logged, valid_<key> from the valid stage)."""
    if key.startswith("valid_"):
        return row["valid"].get(key[len("valid_"):])
    return row["evaluate"].get(key)


def _table(headers: list[str], body: list[list[str]], left: int) -> list[str]:
    """Plain-text columns: the first `left` left-aligned, the others right-aligned."""
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(headers)]

    def line(cells):
        return "  " + "  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return [line(headers)] + [line(r) for r in body]


def label(row: dict, settings: Sequence[str]) -> str:
    """A short name of the XP: its differing settings and weight (plots, tables)."""
    parts = [f"{WEIGHT_KEY}={cell(WEIGHT_KEY, row[WEIGHT_KEY], 'g')}"]
    parts += [f"{k}={row['settings'][k]}" for k in settings]
    return " ".join(parts)


def _gap_cell(gap: dict | None) -> str:
    from ..core.metrics.factorization_gap import format_gap_bits

    return "-" if gap is None else f"{format_gap_bits(gap['total_bits'])} ± {gap['spread_bits']:.3f}"


def _code_drift_lines(rows: list[dict], ids: list[list[str]]) -> list[str]:
    """The cached code agreement and stability, with the reconstructions measured beside them."""
    if not any(r.get("code_agreement") or r.get("code_stability") for r in rows):
        return []

    def fractions(report: dict | None) -> list[str]:
        if not report:
            return ["-", "-"]
        return [f"{report['joint']:.3f}", " ".join(f"{v:.3f}" for v in report["per_codebook"])]

    def pair(key: str, spec: str, agreement: dict | None, stability: dict | None) -> str:
        if agreement:
            recon = agreement.get("reconstruction") or {}
            values = [(recon.get(who) or {}).get(key) for who in ("model", "reference")]
        else:
            values = [((stability or {}).get("reconstruction") or {}).get(key)]
        return " / ".join(cell(key, v, spec) for v in values)

    body = []
    for i, r in enumerate(rows):
        agreement, stability = r.get("code_agreement"), r.get("code_stability")
        body.append(ids[i] + fractions(agreement) + fractions(stability)
                    + [pair("mel_l1", ".4f", agreement, stability), pair("sisnr_db", ".2f", agreement, stability),
                       str((agreement or {}).get("reference", "-"))])
    headers = ["#", "sig", "= ref joint", "= ref per codebook", "stable joint", "stable per codebook",
               "mel L1 (/ ref)", "SI-SNR dB (/ ref)", "reference"]
    return ["", "Codes (cached measure reports): fraction of codes identical to the reference codec's on the same "
                "audio, and unchanged by decoding and encoding again; joint = all codebooks of a frame; the "
                "reconstruction measured with them (log-mel L1, SI-SNR), this codec / the reference"] + \
        _table(headers, body, left=2)


def _lm_columns(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(lm["modeling"] for r in rows for lm in r["lm"]))


def evaluation_columns(rows: list[dict]) -> list[tuple[str, str, str, str, float]]:
    """(metric key, modeling, header, format, scale) of the evaluation metrics some LM of that pattern logged,
    metric by metric (EVALUATION_METRICS' order), then pattern by pattern."""
    columns, models = [], _lm_columns(rows)
    for key, header, spec, scale in EVALUATION_METRICS:
        for modeling in models:
            if any(lm["modeling"] == modeling and key in (lm.get("evaluation") or {}) for r in rows for lm in r["lm"]):
                columns.append((key, modeling, f"{header} {modeling}", spec, scale))
    return columns


def _evaluation_cell(row: dict, key: str, modeling: str, spec: str, scale: float) -> str:
    values = [lm["evaluation"][key] for lm in row["lm"]
              if lm["modeling"] == modeling and key in (lm.get("evaluation") or {})]
    return "/".join(cell(key, None if v is None else v * scale, spec) for v in values) or "-"


def format_compare_table(result: dict) -> str:
    """The comparison as plain-text tables, one row per XP (numbered as in the JSON's `xps`)."""
    rows, settings = result["xps"], result["settings"]
    lines = [f"{len(rows)} codec XP(s); settings that differ: {', '.join(settings) if settings else 'none'} "
             f"(besides {WEIGHT_KEY})"]
    meta_headers = ["#", "sig", "status", *settings, WEIGHT_KEY, "epoch"]
    meta = [[str(i), r["sig"], r["status"], *(r["settings"][k] for k in settings),
             cell(WEIGHT_KEY, r[WEIGHT_KEY], "g"), cell("epoch", r["epoch"], "d")] for i, r in enumerate(rows)]
    lines += [""] + _table(meta_headers, meta, left=3 + len(settings))

    ids = [[str(i), r["sig"]] for i, r in enumerate(rows)]
    independence = _independence_columns(rows)
    if independence:
        lines += ["", "Independence (evaluate stage of that epoch; corrected = raw - shuffle-null)"]
        body = [ids[i] + [cell(k, r["evaluate"].get(k), spec) for k, _, spec in independence]
                for i, r in enumerate(rows)]
        lines += _table(["#", "sig"] + [h for _, h, _ in independence], body, left=2)
    recon = reconstruction_columns(rows)
    lm_models = _lm_columns(rows)
    headers = ["#", "sig"] + [h for _, h, _ in recon] + ["grad ratio", "fact. gap[bits]"]
    headers += [f"ce {m}" for m in lm_models]
    body = []
    for i, r in enumerate(rows):
        cells = [cell(k, metric(r, k), spec) for k, _, spec in recon]
        cells += [cell("inde_grad_ratio", r["train"].get("inde_grad_ratio"), ".3g"), _gap_cell(r["factorization_gap"])]
        cells += ["/".join(format(lm["ce"], ".4f") for lm in r["lm"] if lm["modeling"] == m) or "-" for m in lm_models]
        body.append(ids[i] + cells)
    lines += ["", "Reconstruction (evaluate, valid of that epoch), MMD/reconstruction gradient ratio (last train), "
                  "factorization gap (cached measure report), LM valid cross-entropy (nats)"]
    lines += _table(headers, body, left=2)
    lines += _code_drift_lines(rows, ids)
    evaluated = evaluation_columns(rows)
    if evaluated:
        body = [ids[i] + [_evaluation_cell(r, key, m, spec, scale) for key, m, _, spec, scale in evaluated]
                for i, r in enumerate(rows)]
        lines += ["", "LM evaluations (their evaluate stage: FAD VGGish, KL PaSST, CLAP score x 100 as in the paper's "
                      "Table 2, chroma cosine, evaluate-split cross-entropy)"]
        lines += _table(["#", "sig"] + [h for _, _, h, _, _ in evaluated], body, left=2)
    warnings = [lm["warning"] for r in rows for lm in r["lm"] if lm.get("warning")]
    if warnings:
        lines += ["", *(f"warning: {w}" for w in warnings)]
    if any(r["at_null"] for r in rows):
        lines += ["", f"{AT_NULL}: a corrected information value at or below its shuffle-null: no dependence "
                      "measurable above the estimator's bias (the JSON keeps the logged number)"]
    return "\n".join(lines)
