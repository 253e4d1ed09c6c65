"""Kept importable for code written against earlier versions: these now live in `mmd_audiocraft.plugin`."""
from .plugin import install_checkpoint_loading, trusting_torch_load

__all__ = ["install_checkpoint_loading", "trusting_torch_load"]
