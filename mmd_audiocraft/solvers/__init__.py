"""The plugin's solvers: `MMDCompressionSolver` (compression.py) with its options checks (inde_config.py),
evaluate metrics (evaluation.py) and the checks run before audiocraft builds any solver (preflight.py). They
are routed in by `mmd_audiocraft.plugin.install_solver_selection` (re-exported here)."""
from ..plugin import install_solver_selection

__all__ = ["install_solver_selection"]
