"""Every seam between the plugin and audiocraft, Dora, Hydra, torch and the process, listed in one table.

Most live here; two live beside what they serve (the table says where). Nothing runs at import: the Dora main
(`train.py`) calls :func:`install_all` when it starts; the CLI, the demo and the library's codec loader
(`loaders.load_compression_model`) call `process.prepare_process` (the loader also `pvq.install_quantizers`).
Checked against audiocraft 1.3.0 (PyPI sdist; git main 1.4.0a2 has the same symbols), dora-search 0.1.13,
hydra-core 1.3, torch 2.1 and 2.11.

seam               what is wrapped or registered (symbol)          what we do, and why
-----------------  ----------------------------------------------  --------------------------------------------------
solver selection   audiocraft.solvers.get_solver,                  `solver=compression` builds MMDCompressionSolver:
                   audiocraft.solvers.builders.get_solver          classes come from a dict literal, and
                                                                   audiocraft.train calls the package attribute
preflight          audiocraft.train.get_solver                     integration/preflight.py checks the config first:
                                                                   audiocraft divides batch sizes and loads codecs
                                                                   behind bare asserts, and its evaluation metrics
                                                                   fail in the job on a missing download
quantizers         audiocraft.models.builders.get_quantizer        `encodec.quantizer=pvq` builds the PVQ: a dict
  (pvq.py)                                                         literal, looked up as a module global
HF EnCodec folders audiocraft.models.encodec.CompressionModel       a transformers EnCodec folder (config.json +
  (pretrained.py)    .get_pretrained                               weights) loads as a hub name does: audiocraft
                                                                   took any path for an exported package
checkpoints        audiocraft.utils.checkpoint.load_checkpoint     a trusting torch.load: torch >= 2.6 loads
                                                                   weights-only, audiocraft checkpoints hold OmegaConf
config search      hydra Plugins.register(SearchPathPlugin)        mmd_audiocraft.config appended: Dora lists groups
                                                                   and signs XPs from audiocraft's tree
Dora main          dora.hydra_main; audiocraft.train.main.dora     train.py shares audiocraft's Dora dir and SLURM
                                                                   defaults, so //sig/ resolves from either side
safe globals       torch.serialization.add_safe_globals            OmegaConf types allowed: weights-only loads of
  (process.py)                                                     exported packages
environment        USER, HF_HUB_OFFLINE                            set when missing: audiocraft's config reads $USER;
  (process.py)                                                     hub lookups hang without a route
login name         os.getlogin                                     falls back to the effective user: `dora grid`
  (process.py)                                                     (Shepherd._check_orphans) fails without a terminal
grids              dora.grid.run_grid                              a grid folder per setting of the inputs (Dora
                                                                   cancels what a folder no longer defines); the
                                                                   grid_check.py check before submitting; --clear
                                                                   refused before Dora deletes the XP folders when
                                                                   SLURM cannot take the jobs (slurm.py asks sinfo)
XP folders         dora HydraMain.init_xp, .dora.exclude;          xps.py: an execute_only run in an XP's own folder
  (xps.py)         dora.explore.Launcher._herd/_shepherd,          keeps its .argv.json (else `-f SIG` would resume
                   dora.shep.Sheep                                 as an evaluation); execute_inplace and
                                                                   accept_codec_change are not in signatures; grids
                                                                   listed without scheduling (waiting LMs, compare)
inside the solver  CompressionSolver.__init__, .balancer,          see integration/solver.py: the loss key, its
                   .balancer.averager, .load_from_pretrained,      backward, a resumable EMA, HF weight-norm keys,
                   .save_checkpoints                               the cause of a failed checkpoint write first
"""
from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path

from .pretrained import install_hf_encodec_folders
from .process import prepare_process, wrap_once

_WHEEL_WITHOUT_CONFIG = """\
audiocraft is installed without its config/ tree ({where}), which training needs.
The audiocraft wheel does not ship it. Either
  * install audiocraft from its source distribution, editable:
      pip download --no-deps --no-binary :all: audiocraft==1.3.0 && tar xzf audiocraft-1.3.0.tar.gz
      pip install --no-deps -e audiocraft-1.3.0
  * or point AUDIOCRAFT_CONFIG_DIR at the config/ folder of an audiocraft checkout.
`make setup` in the mmd-audiocraft checkout does the first for you."""


# -- where things are ---------------------------------------------------------------------------------------
def audiocraft_config_dir() -> Path:
    """audiocraft's Hydra config tree: $AUDIOCRAFT_CONFIG_DIR, else the one beside the audiocraft package.
    Raises FileNotFoundError (with what to do) for a wheel install without it."""
    override = os.environ.get("AUDIOCRAFT_CONFIG_DIR")
    if override:
        path = Path(override).expanduser().resolve()
        if not (path / "config.yaml").is_file():
            raise FileNotFoundError(f"AUDIOCRAFT_CONFIG_DIR={override} has no config.yaml: expected audiocraft's "
                                    "config/ folder (with config.yaml, solver/, model/, dset/).")
        return path
    import importlib.util

    spec = importlib.util.find_spec("audiocraft")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("audiocraft is not installed; run `make setup` or see the README.")
    path = Path(spec.origin).resolve().parent.parent / "config"
    if not (path / "config.yaml").is_file():
        raise FileNotFoundError(_WHEEL_WITHOUT_CONFIG.format(where=f"looked in {path}"))
    return path


def plugin_config_dir() -> Path:
    """Our Hydra configs: the package `mmd_audiocraft.config` (the repository's `config/`, shipped as package data:
    wheel, sdist and editable installs alike), or $MMD_AUDIOCRAFT_CONFIG_DIR."""
    override = os.environ.get("MMD_AUDIOCRAFT_CONFIG_DIR")
    if override:
        return Path(override).expanduser().resolve()
    import importlib.resources

    return Path(str(importlib.resources.files("mmd_audiocraft.config"))).resolve()


# -- audiocraft -------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def trusting_torch_load():
    """Inside, a `torch.load` that does not name `weights_only` unpickles everything (torch's own switch,
    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD): for your own audiocraft checkpoints on torch >= 2.6."""
    flag = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"
    previous = os.environ.get(flag)
    os.environ[flag] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(flag, None)
        else:
            os.environ[flag] = previous


def install_checkpoint_loading() -> None:
    """audiocraft's `load_checkpoint` (resume, `continue_from`, `//sig/`) runs inside `trusting_torch_load`:
    these are files of your Dora folder or paths you named, which every torch before 2.6 loaded as such."""
    from audiocraft.utils import checkpoint

    def make(stock):
        @functools.wraps(stock)
        def load_checkpoint(*args, **kwargs):
            with trusting_torch_load():
                return stock(*args, **kwargs)
        return load_checkpoint

    wrap_once(checkpoint, "load_checkpoint", make)


def _resuming() -> bool:
    """Whether the current Dora XP already has its checkpoint (audiocraft then ignores continue_from)."""
    from audiocraft.utils.checkpoint import checkpoint_name
    from dora import get_xp

    try:
        folder = get_xp().folder
    except RuntimeError:  # not inside an XP (a solver built by hand)
        return False
    return (folder / checkpoint_name(use_fsdp=False)).exists()


def install_solver_selection() -> None:
    """`solver=compression` builds MMDCompressionSolver (both names audiocraft calls it by); once
    `audiocraft.train` is loaded (our Dora main imports it first; `measure` never needs it), its `get_solver`
    runs `integration/preflight.py` before audiocraft divides batch sizes or loads codecs. Quantizers too."""
    import sys

    import audiocraft.solvers as solvers
    from audiocraft.solvers import builders

    from .pvq import install_quantizers

    install_quantizers()

    def make_selection(stock):
        def get_solver(cfg):
            if cfg.solver == "compression":
                from .solver import MMDCompressionSolver

                return MMDCompressionSolver(cfg)
            return stock(cfg)
        return get_solver

    wrap_once(builders, "get_solver", make_selection)
    solvers.get_solver = builders.get_solver

    def make_checked(stock):
        def checked_get_solver(cfg):
            import flashy

            from .preflight import check_before_build

            check_before_build(cfg, flashy.distrib.world_size(), resuming=_resuming())
            return stock(cfg)
        return checked_get_solver

    train = sys.modules.get("audiocraft.train")
    if train is not None:
        wrap_once(train, "get_solver", make_checked)


def register_config_search_path() -> None:
    """Hydra appends `plugin_config_dir()` to audiocraft's config tree (never shadowing it). A search-path
    plugin rather than `hydra.searchpath` in a primary config: Dora lists config groups and computes
    signatures from the main's config_path, so both keep seeing audiocraft's tree."""
    from hydra.core.plugins import Plugins
    from hydra.plugins.search_path_plugin import SearchPathPlugin

    plugins = Plugins.instance()
    if any(getattr(c, "_mmd_audiocraft", False) for c in plugins.class_name_to_class.values()):
        return

    class MMDAudiocraftSearchPath(SearchPathPlugin):
        _mmd_audiocraft = True

        def manipulate_search_path(self, search_path) -> None:
            search_path.append(provider="mmd-audiocraft", path=f"file://{plugin_config_dir()}")

    plugins.register(MMDAudiocraftSearchPath)


def install_grid_guard() -> None:
    """Around `dora.grid.run_grid`: each setting of a grid's inputs gets its own grid folder (`NAME@SETTING`,
    from the explorer's `setting()`: Dora cancels the jobs of the XPs a folder lists and a run no longer
    defines); a grid that submits is checked first (integration/grid_check.py) and submits nothing while
    anything is missing; `--clear`, which deletes every XP folder of the grid after its confirmation and only
    then submits, is refused where SLURM cannot take the jobs, naming the local alternative."""
    import dora.grid as grid
    from dora.conf import SubmitRules

    from . import xps
    from .errors import ConfigError
    from .slurm import ask_sinfo

    def make(stock):
        @functools.wraps(stock)
        def run_grid(main, explorer, grid_name, rules=None, slurm=None, args=None):
            try:
                return guarded(stock, main, explorer, grid_name, rules, slurm, args)
            except ConfigError as exc:  # an input the grid cannot run with (grids/_profile.py): one line
                raise SystemExit(f"dora grid {grid_name}: {exc}") from None
        return run_grid

    def guarded(stock, main, explorer, grid_name, rules, slurm, args):
        options = args if args is not None else grid.RunGridArgs()
        if options.clear and not options.dry_run:
            _, blocker = ask_sinfo()
            if blocker is not None:
                sigs = list(xps.list_grid(main, explorer).sheeps)
                raise SystemExit(
                    f"dora grid {grid_name} --clear refused, nothing was deleted: --clear deletes every XP folder "
                    f"of the grid before it submits, and SLURM cannot take jobs here ({blocker}). To restart one "
                    f"XP from scratch on this machine: dora -P mmd_audiocraft run --clear -f SIG (this grid's "
                    f"{len(sigs)} XPs: {' '.join(sigs)})")
        setting = getattr(explorer, "setting", None)  # grids/_explorers.py: one grid folder per setting
        folder = f"{grid_name}@{setting()}" if setting is not None and "@" not in grid_name else grid_name
        if not options.dry_run and not options.cancel:
            from .grid_check import format_problems, grid_problems

            problems = grid_problems(main, explorer)
            if problems:
                raise SystemExit(format_problems(folder, problems))
        return stock(main, explorer, folder, rules if rules is not None else SubmitRules(), slurm, options)

    wrap_once(grid, "run_grid", make)


def install_all() -> None:
    """Every seam the Dora main needs (after `audiocraft.train` is imported); idempotent."""
    prepare_process()
    register_config_search_path()
    install_checkpoint_loading()
    install_solver_selection()
    install_grid_guard()
    install_hf_encodec_folders()
