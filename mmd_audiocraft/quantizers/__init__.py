"""Quantizers selectable from config (`encodec.quantizer: pvq`): `pvq.py`. They are registered into audiocraft's
model builder by `mmd_audiocraft.plugin.install_quantizers` (re-exported here)."""
from ..plugin import install_quantizers

__all__ = ["install_quantizers"]
