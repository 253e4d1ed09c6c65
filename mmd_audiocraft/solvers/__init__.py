"""Solver selection for the plugin's main: audiocraft's `get_solver`, wrapped from outside.

audiocraft picks solver classes from a dict literal inside `builders.get_solver` and `train.py` calls it
through the `audiocraft.solvers` package attribute, so both names are rebound to a wrapper that routes the
compression solver to ours and everything else to the stock function. `audiocraft.train.get_solver`, which
divides the batch sizes by the number of processes first (behind bare asserts), is wrapped too: the config
is checked against the run (preflight.py) before anything is divided or built.
"""
from __future__ import annotations


def _plugin_solver(name: str):
    if name == "compression":
        from .compression import MMDCompressionSolver

        return MMDCompressionSolver
    return None


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
    """Idempotent: route `solver=compression` to MMDCompressionSolver, check configs before audiocraft's
    `train.get_solver` (when `audiocraft.train` is loaded: our Dora main imports it first; `measure` never
    needs it), and register our quantizers."""
    import sys

    import audiocraft.solvers as solvers
    from audiocraft.solvers import builders

    from ..quantizers import install_quantizers

    install_quantizers()
    if not getattr(solvers.get_solver, "_mmd_audiocraft", False):
        stock_get_solver = builders.get_solver

        def get_solver(cfg):
            klass = _plugin_solver(cfg.solver)
            return klass(cfg) if klass is not None else stock_get_solver(cfg)

        get_solver._mmd_audiocraft = True
        solvers.get_solver = builders.get_solver = get_solver

    train = sys.modules.get("audiocraft.train")
    if train is None or getattr(train.get_solver, "_mmd_audiocraft", False):
        return
    stock_train_get_solver = train.get_solver

    def checked_get_solver(cfg):
        import flashy

        from .preflight import check_before_build

        check_before_build(cfg, flashy.distrib.world_size(), resuming=_resuming())
        return stock_train_get_solver(cfg)

    checked_get_solver._mmd_audiocraft = True
    train.get_solver = checked_get_solver
