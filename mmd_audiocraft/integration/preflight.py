"""Checks of a composed config against the run it starts, before audiocraft builds the solver.

audiocraft divides every batch size by the number of processes behind bare asserts (`train.get_solver`), an
empty data shard crashes a stage's metric averaging, and a codec named by `continue_from` or
`compression_model_checkpoint` fails inside audiocraft or torch (an assert, a strict `load_state_dict`, or the
LM's `Scaled compression model not supported` at its first batch), `execute_only` without a model to run fails on
audiocraft's assert, and the evaluate stage's generation metrics (FAD, KL, CLAP) fail inside the job when a file
or package they need is missing (`metric_requirements.py`). Each case is checked here first and reported as one
`ConfigError` naming the key, its value and what to write instead.
"""
from __future__ import annotations

import difflib
import logging
import math
from pathlib import Path

import omegaconf

from ..core.validation import is_int_at_least
from . import xps
from .errors import ConfigError
from .loaders import PRETRAINED_PREFIX, ModelLoadError, load_compression_model
from .metric_requirements import missing_requirements

SPLITS = ("train", "valid", "evaluate", "generate")
# audiocraft's solvers that load a codec from `compression_model_checkpoint` (builders.get_solver's names)
CODEC_USERS = ("musicgen", "lm", "audiogen", "sound_lm", "magnet", "audio_magnet", "diffusion")
STAGES = ("generate", "evaluate", "valid")  # what `execute_only` can run (audiocraft's StandardSolver.run_one_stage)
logger = logging.getLogger(__name__)


def check_before_build(cfg: omegaconf.DictConfig, world_size: int, resuming: bool = False) -> None:
    """Every check below that applies to `cfg`; raises ConfigError. `resuming`: the XP has its own checkpoint
    (audiocraft then ignores `continue_from`)."""
    check_fsdp(cfg)
    check_batch_sizes(cfg, world_size)
    check_datasource(cfg)
    check_execute_only(cfg, resuming)
    if cfg.get("solver") == "compression":
        check_losses(cfg)
    if cfg.get("solver") == "compression" and cfg.get("continue_from") and not resuming:
        check_continue_from(cfg)
    if cfg.get("solver") in CODEC_USERS:
        check_generation_metrics(cfg)
        check_lm_codec(cfg, resuming)


# -- devices -----------------------------------------------------------------------------------------------------
def check_fsdp(cfg: omegaconf.DictConfig) -> None:
    """`fsdp.use=true` needs one CUDA GPU per process: audiocraft's `optim.fsdp.wrap_with_fsdp` asserts it
    ("Please upgrade Dora!") after the data and the model are built."""
    if not (cfg.get("fsdp") or {}).get("use"):
        return
    import torch

    gpus = torch.cuda.device_count()
    if str(cfg.get("device")) != "cuda" or gpus == 0:
        where = f"device={cfg.get('device')}" if str(cfg.get("device")) != "cuda" else "no CUDA GPU is visible"
        raise ConfigError(f"fsdp.use=true shards the model over CUDA GPUs (audiocraft's FSDP wrapper), and here "
                          f"{where}: set fsdp.use=false to train without sharding")


# -- data over processes ---------------------------------------------------------------------------------------
def check_batch_sizes(cfg: omegaconf.DictConfig, world_size: int) -> None:
    """Every batch size audiocraft divides by `world_size` must be a positive multiple of it, and every split
    read in fixed shards (no shuffle) needs a sample per process (an empty shard has no metrics to average)."""
    dataset = cfg.dataset
    keys = ["dataset.batch_size"]
    keys += [f"dataset.{split}.batch_size" for split in SPLITS if "batch_size" in (dataset.get(split) or {})]
    for key in keys:
        value = omegaconf.OmegaConf.select(cfg, key)
        if not is_int_at_least(value, 1):
            raise ConfigError(f"{key}={value}: expected a positive integer (the batch over all processes)")
        if value % world_size:
            fit = math.ceil(value / world_size) * world_size
            raise ConfigError(f"{key}={value} cannot be split over {world_size} processes: audiocraft divides "
                              f"each batch size by the number of processes; use a multiple of {world_size}, "
                              f"e.g. {key}={fit}")
    sources = cfg.get("datasource") or {}
    for split in SPLITS:
        node = dataset.get(split) or {}
        shuffle = node.get("shuffle", dataset.get("shuffle"))
        num_samples = node.get("num_samples", dataset.get("num_samples"))
        if not isinstance(sources.get(split), str) or shuffle or num_samples is None:
            continue
        if num_samples < world_size:
            raise ConfigError(f"dataset.{split}.num_samples={num_samples} leaves a process without data: the "
                              f"{split} split is sharded over the {world_size} processes; use "
                              f"dataset.{split}.num_samples={world_size} or more")


def names_no_dataset(cfg: omegaconf.DictConfig) -> bool:
    """Whether every split of `datasource` is null (dset=audio/mmd_unset, where the paper-scale configs start)."""
    sources = cfg.get("datasource") or {}
    return all(sources.get(split) is None for split in SPLITS)


def check_datasource(cfg: omegaconf.DictConfig) -> None:
    """Every split of `datasource` names a manifest folder or file that exists (audiocraft reads them when it builds
    the solver's data, and a missing one ends in a FileNotFoundError traceback). Relative paths are resolved as
    audiocraft resolves them (Dora's `git_save.to_absolute_path`). The plugin's own dsets read the demo's corpus:
    the message says how to build it."""
    from dora import git_save

    sources = cfg.get("datasource") or {}
    if names_no_dataset(cfg):
        raise ConfigError("datasource.train=null: no dataset given (the paper-scale configs name none, so that "
                          "they never train on a corpus by accident): add dset=audio/NAME (a dset config) or "
                          "datasource.train=, .valid=, .evaluate=, .generate= manifest folders with "
                          "datasource.max_sample_rate and datasource.max_channels; docs/DATA.md")
    for split in SPLITS:
        value = sources.get(split)
        if not isinstance(value, str):
            continue
        path = Path(git_save.to_absolute_path(value))
        if path.exists():
            continue
        ours = any(f"music_{rate}" in path.parts for rate in ("16khz", "32khz"))
        how = ("these are the demo's corpus (dset=audio/mmd_music_*): build it with `python -m "
               "mmd_audiocraft.apps.demo.corpus` (`make corpus`), or point MMD_AUDIOCRAFT_CORPUS at a built one"
               if ours else "write the manifest with `python -m audiocraft.data.audio_dataset AUDIO_DIR "
               f"{path}/data.jsonl`, or choose another dset=")
        raise ConfigError(f"datasource.{split}={path}: no such manifest folder or file; {how}")


# -- losses ------------------------------------------------------------------------------------------------------
ADVERSARIAL_LOSSES = ("adv", "feat")  # CompressionSolver builds these from `adversarial`, not with get_loss


def check_losses(cfg: omegaconf.DictConfig) -> None:
    """Every key of `losses` is a loss the compression solver builds: audiocraft's CompressionSolver builds one
    for each key (weight 0 included) with `builders.get_loss`, whose dict literal raises a bare KeyError for an
    unknown name, after the data is built. `losses.inde` is ours. The closest valid key is named."""
    from audiocraft.solvers import builders

    losses = cfg.get("losses") or {}
    known = [name for name in losses if name in (*ADVERSARIAL_LOSSES, "inde")]
    unknown = []
    for name in losses:
        if name in known:
            continue
        try:
            builders.get_loss(name, cfg)
        except KeyError as exc:
            if exc.args and exc.args[0] == name:
                unknown.append(name)
                continue
            raise
        known.append(name)
    if unknown:
        name = unknown[0]
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
        hint = f"did you mean losses.{close[0]}? " if close else ""
        raise ConfigError(f"losses.{name}={losses[name]}: audiocraft's compression solver has no loss named "
                          f"{name!r}: {hint}Its losses here: {', '.join(sorted(known))}")


# -- codecs named in the config --------------------------------------------------------------------------------
def _load(key: str, spec: str):
    """The codec, loaded the way measure loads it (files named on the command line are trusted, as audiocraft
    trusts them); ModelLoadError becomes ConfigError."""
    try:
        return load_compression_model(spec, trust_checkpoint=True, key=key)
    except ModelLoadError as exc:
        raise ConfigError(str(exc)) from None


def _check_form(key: str, spec: str, kind: str) -> None:
    """audiocraft reads training checkpoints by path or //sig/, exported packages only through //pretrained/."""
    pretrained = spec.startswith(PRETRAINED_PREFIX)
    if kind == "exported" and not pretrained:
        raise ConfigError(f"{key}={spec} is an exported package: audiocraft reads those through //pretrained/, "
                          f"write {key}=//pretrained/{spec}")
    if kind == "checkpoint" and pretrained:
        path = spec[len(PRETRAINED_PREFIX):]
        raise ConfigError(f"{key}={spec} is a training checkpoint, not an exported package: write {key}={path} "
                          "(or //sig/SIG)")


def check_continue_from(cfg: omegaconf.DictConfig) -> None:
    """`continue_from` of a compression solver names a codec whose weights fit the model this config builds
    (audiocraft loads them strictly after the data is built)."""
    spec = str(cfg.continue_from)
    name = spec[len(PRETRAINED_PREFIX):] if spec.startswith(PRETRAINED_PREFIX) else ""
    if name.startswith("dac_"):
        raise ConfigError(f"continue_from={spec}: audiocraft fine-tunes EnCodec models only, not DAC")
    loaded = _load("continue_from", spec)
    _check_form("continue_from", spec, loaded.kind)
    if loaded.kind == "pretrained" and type(loaded.model).__name__ == "HFEncodecCompressionModel":
        return  # audiocraft converts its weights (integration/pretrained.py fixes the key names)
    from audiocraft.models import builders

    target = cfg.copy()
    target.device = "cpu"
    wanted = {k: tuple(v.shape) for k, v in builders.get_compression_model(target).state_dict().items()}
    given = {k: tuple(v.shape) for k, v in loaded.model.state_dict().items()}
    differ = sorted(k for k in wanted.keys() | given.keys() if wanted.get(k) != given.get(k))
    if differ:
        first = differ[0]
        info = loaded.info
        raise ConfigError(
            f"continue_from={spec}: its weights do not fit the model this config builds ({len(differ)} tensors "
            f"differ, e.g. {first}: {list(given.get(first, ()))} in the source, {list(wanted.get(first, ()))} "
            f"here). The source is {info['sample_rate']} Hz, {info['num_codebooks']} x {info['bins']} codes; "
            "continue_from only carries weights: use the solver config (model, seanet.*, rvq.*) the source was "
            "trained with")


def check_lm_codec(cfg: omegaconf.DictConfig, resuming: bool = False) -> None:
    """`compression_model_checkpoint` names a codec an LM can use: loadable, no input renormalisation (the
    LM solvers assert the codec's scale is None at their first batch), the LM's sample rate, number of
    codebooks and cardinality, and the codec the LM trained on (`check_codec_provenance`)."""
    spec = cfg.get("compression_model_checkpoint")
    key = "compression_model_checkpoint"
    if not spec:
        raise ConfigError(f"{key}={spec}: give the codec the LM runs on: {key}=//sig/SIG (a finished codec XP "
                          "of this Dora dir), a checkpoint file or XP folder, or //pretrained/NAME_OR_PATH")
    spec = str(spec)
    loaded = _load(key, spec)
    _check_form(key, spec, loaded.kind)
    import torch
    from audiocraft.models import builders

    model = builders.get_wrapped_compression_model(loaded.model, cfg)
    with torch.no_grad():
        _, scale = model.encode(0.1 * torch.randn(1, model.channels, 2 * int(model.sample_rate // model.frame_rate)))
    if scale is not None:
        raise ConfigError(f"{key}={spec}: this codec renormalizes its input (a scale per item), which audiocraft's "
                          "LM solvers do not support; train the codec with encodec.renormalize=false")
    if int(model.sample_rate) != int(cfg.sample_rate):
        raise ConfigError(f"sample_rate={cfg.sample_rate} but the codec {key}={spec} runs at "
                          f"{model.sample_rate} Hz: set sample_rate={model.sample_rate} (and a dset at that rate)")
    fixes = lm_fixes(cfg, int(model.num_codebooks), int(model.cardinality))
    if fixes:
        settings = " ".join(f"{k}={_override_value(v)}" for k, v in fixes.items())
        raise ConfigError(
            f"{key}={spec} has {model.num_codebooks} codebooks of {model.cardinality} codes, which this LM config "
            f"does not fit: set {settings} (they change together: the LM predicts one stream per codebook "
            "(transformer_lm.n_q) over the codec's codes (transformer_lm.card), laid out by its codebooks_pattern)")
    check_codec_provenance(cfg, spec, xps.codec_digest(loaded.model), resuming)


def check_codec_provenance(cfg: omegaconf.DictConfig, spec: str, digest: str, resuming: bool) -> None:
    """An LM XP records the codec it starts training on (integration/xps.py); a resume, or an evaluation of it
    (in place, or `continue_from` naming it), must load the same weights: audiocraft reloads
    `compression_model_checkpoint` at every start, so a codec retrained under the same //sig/ would silently
    change the codes. Refused (ConfigError naming both digests) unless `accept_codec_change=true`, then a
    warning in the log."""
    import flashy

    own = xps.current_folder()
    if cfg.get("execute_only"):
        source = cfg.get("continue_from")
        folder = own if cfg.get("execute_inplace") or resuming or not source else (
            xps.xp_folder(xps.sig_of(source)) if xps.sig_of(source) else _xp_folder_of_path(str(source)))
        what = "evaluating"
    elif resuming:
        folder, what = own, "resuming"
    else:
        if own is not None and flashy.distrib.is_rank_zero():
            xps.record_provenance(own, spec, digest)
        return
    if folder is None:
        return
    try:
        warning = xps.check_provenance(folder, spec, digest, bool(cfg.get(xps.ACCEPT_KEY)), what)
    except xps.ProvenanceError as exc:
        raise ConfigError(f"compression_model_checkpoint={exc}") from None
    if warning:
        logger.warning("compression_model_checkpoint=%s", warning)


def _xp_folder_of_path(path: str) -> Path:
    """The XP folder of a checkpoint path (its folder) or of an XP folder."""
    path = Path(path).expanduser()
    return path if path.is_dir() else path.parent


def lm_fixes(cfg: omegaconf.DictConfig, n_q: int, card: int) -> dict:
    """The overrides that make an LM config fit a codec of `n_q` codebooks of `card` codes: `transformer_lm.n_q`,
    `transformer_lm.card`, and the keys of the LM's `codebooks_pattern` that audiocraft's pattern provider (its
    `get_codebooks_pattern_provider`) refuses for `n_q` codebooks, each set to that provider's default for
    `n_q` (its attribute of the same name when it has one, else null). {} when the config fits."""
    from audiocraft.models.builders import get_codebooks_pattern_provider

    lm = cfg.get("transformer_lm") or {}
    fixes = {f"transformer_lm.{k}": v for k, v in (("n_q", n_q), ("card", card)) if k in lm and int(lm[k]) != v}
    pattern = cfg.get("codebooks_pattern")
    if pattern is None:
        return fixes
    modeling = pattern.get("modeling")
    node = omegaconf.OmegaConf.to_container(pattern.get(modeling) or omegaconf.OmegaConf.create({}), resolve=True)
    try:
        get_codebooks_pattern_provider(n_q, pattern)
        return fixes
    except (AssertionError, ValueError, TypeError):
        pass
    lists = [k for k, v in node.items() if isinstance(v, list)]
    rest = {k: v for k, v in node.items() if k not in lists}
    try:
        provider = get_codebooks_pattern_provider(n_q, omegaconf.OmegaConf.create({"modeling": modeling,
                                                                                   modeling: rest}))
    except (AssertionError, ValueError, TypeError):  # not a matter of lengths: name the pattern as a whole
        return {**fixes, "codebooks_pattern.modeling": f"<a pattern for {n_q} codebooks>"}
    for k in lists:
        value = getattr(provider, k, None)
        fixes[f"codebooks_pattern.{modeling}.{k}"] = list(value) if isinstance(value, (list, tuple)) else None
    return fixes


def _override_value(value) -> str:
    """A value as a Hydra override writes it, without spaces (one shell word)."""
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ",".join(str(v) for v in value) + "]"
    return str(value)


# -- one stage of a trained model, and what its metrics need -----------------------------------------------------
def evaluation_forms(stage: str, sig: str = "SIG") -> str:
    """The two commands that run one stage of XP `sig`'s trained model (the refusals below name them)."""
    return (f"`dora -P mmd_audiocraft run -f {sig} execute_only={stage} execute_inplace=true` (in that XP, on its "
            f"own checkpoint; writes only {stage}.log.0 there) or `dora -P mmd_audiocraft run -f {sig} "
            f"continue_from=//sig/{sig} execute_only={stage}` (a new XP that logs the {stage} metrics in its "
            "history.json)")


def check_execute_only(cfg: omegaconf.DictConfig, resuming: bool = False) -> None:
    """`execute_only` runs one stage of a trained model (audiocraft's train.main): the stage must be one audiocraft
    runs, and trained weights must be there to load: the XP's own checkpoint with `execute_inplace` (audiocraft
    otherwise evaluates freshly initialised weights), or `continue_from` naming an XP that has its checkpoint
    (audiocraft otherwise asserts, or raises `Could not resolve continue_from` after building)."""
    stage = cfg.get("execute_only")
    if not stage:
        return
    if stage not in STAGES:
        raise ConfigError(f"execute_only={stage}: expected one of {', '.join(STAGES)}")
    spec = cfg.get("continue_from")
    own = xps.current_folder()
    sig = own.name if own is not None else "SIG"
    if cfg.get("execute_inplace"):
        if not resuming:
            raise ConfigError(f"execute_only={stage} execute_inplace=true: this XP ({sig}) has no "
                              f"{xps.CHECKPOINT_NAME}, so there are no trained weights to run; to run a trained "
                              f"XP's model use {evaluation_forms(stage)}")
        return
    if not spec:
        raise ConfigError(f"execute_only={stage} runs one stage of a trained model, and continue_from is not set: "
                          f"use {evaluation_forms(stage, sig)}")
    source = xps.sig_of(spec)
    if resuming or source is None:
        return
    from audiocraft.utils import checkpoint

    if checkpoint.resolve_checkpoint_path(str(spec), use_fsdp=False) is None:
        raise ConfigError(f"continue_from={spec}: {xps.xp_folder(source)} has no {xps.CHECKPOINT_NAME}: run that "
                          f"XP to its end first (execute_only={stage} reads its best state)")


def check_generation_metrics(cfg: omegaconf.DictConfig) -> None:
    """Every file and package that the evaluate stage's generation metrics enabled in `cfg` (FAD, KL, CLAP, chroma
    cosine: `evaluate.metrics.*`) need is here (integration/metric_requirements.py); otherwise one ConfigError
    naming each missing item: its config key and value, where it was looked for, how to get it."""
    missing = missing_requirements(cfg)
    if missing:
        from audiocraft.environment import AudioCraftEnvironment

        where = (f" (//reference/ is audiocraft's reference dir, $AUDIOCRAFT_REFERENCE_DIR: here "
                 f"{AudioCraftEnvironment.get_reference_dir()})" if any("//reference" in str(m) for m in missing)
                 else "")
        raise ConfigError(f"the evaluate stage's metrics need {len(missing)} thing(s) that are not here{where}:\n"
                          + "\n".join(f"  ({i}) {item}" for i, item in enumerate(missing, 1)))
