"""Solver selection for the plugin's main: audiocraft's `get_solver`, wrapped from outside.

audiocraft picks solver classes from a dict literal inside `builders.get_solver` and `train.py` calls it
through the `audiocraft.solvers` package attribute, so both names are rebound to a wrapper that routes the
compression solver to ours and everything else to the stock function.
"""
from __future__ import annotations


def _plugin_solver(name: str):
    if name == "compression":
        from .compression import MMDCompressionSolver

        return MMDCompressionSolver
    return None


def install_solver_selection() -> None:
    """Idempotent: route `solver=compression` to MMDCompressionSolver, and register our quantizers."""
    import audiocraft.solvers as solvers
    from audiocraft.solvers import builders

    from ..quantizers import install_quantizers

    install_quantizers()
    if getattr(solvers.get_solver, "_mmd_audiocraft", False):
        return
    stock_get_solver = builders.get_solver

    def get_solver(cfg):
        klass = _plugin_solver(cfg.solver)
        return klass(cfg) if klass is not None else stock_get_solver(cfg)

    get_solver._mmd_audiocraft = True
    solvers.get_solver = builders.get_solver = get_solver
