"""audiocraft's own checkpoints on torch >= 2.6, whose `torch.load` defaults to `weights_only=True`.

Solver checkpoints hold an OmegaConf config, numpy scalars in the metrics history and a `defaultdict` in the
EMA state; the weights-only unpickler rejects the last one whatever is allow-listed. So resume,
`continue_from` and `//sig/` loading (MusicGen on a codec XP) fail on new torch. audiocraft loads these files
through `audiocraft.utils.checkpoint.load_checkpoint`: we wrap it (from outside) so that it trusts them, as
every torch before 2.6 did. These are files of your Dora folder or paths you passed on the command line.
"""
from __future__ import annotations

import contextlib
import functools
import os

_FLAG = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"


@contextlib.contextmanager
def trusting_torch_load():
    """Inside, a `torch.load` that does not name `weights_only` unpickles everything (torch's own switch)."""
    previous = os.environ.get(_FLAG)
    os.environ[_FLAG] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(_FLAG, None)
        else:
            os.environ[_FLAG] = previous


def install_checkpoint_loading() -> None:
    """Idempotent: audiocraft's load_checkpoint, run inside `trusting_torch_load`."""
    from audiocraft.utils import checkpoint

    stock = checkpoint.load_checkpoint
    if getattr(stock, "_mmd_audiocraft", False):
        return

    @functools.wraps(stock)
    def load_checkpoint(*args, **kwargs):
        with trusting_torch_load():
            return stock(*args, **kwargs)

    load_checkpoint._mmd_audiocraft = True
    checkpoint.load_checkpoint = load_checkpoint
