"""The process-level seams every entry point needs before audiocraft and Dora run: a `USER` for audiocraft's
config, an offline hub where it cannot be reached, OmegaConf allowed in torch's weights-only loads, a login name
for `dora grid`; and `wrap_once`, how every seam wraps a symbol (listed in the table of `seams.py`).

The Dora main, the CLI, the demo and the library's codec loader all call :func:`prepare_process`: one place sets
these defaults. Imports nothing from audiocraft.
"""
from __future__ import annotations

import functools
import os
import socket
from collections.abc import Callable

_WRAPPED = "__mmd_audiocraft_wraps__"


def wrap_once(owner, name: str, make_wrapper: Callable[[Callable], Callable]) -> None:
    """Replace `owner.name` by `make_wrapper(original)`, once per process (the wrapper remembers what it wraps,
    so entry points may install every seam as often as they run)."""
    original = getattr(owner, name)
    if hasattr(original, _WRAPPED):
        return
    wrapper = make_wrapper(original)
    setattr(wrapper, _WRAPPED, original)
    setattr(owner, name, wrapper)


@functools.cache
def hub_reachable(host: str = "huggingface.co", timeout: float = 1.5) -> bool:
    """One short TCP probe, so offline machines fail fast instead of hanging on hub lookups."""
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def ensure_user() -> None:
    """audiocraft's config.yaml reads ${oc.env:USER}; give it the login name when the shell did not export it."""
    if not os.environ.get("USER"):
        import getpass

        try:
            os.environ["USER"] = getpass.getuser()
        except Exception:  # no passwd entry (containers)
            os.environ["USER"] = "audiocraft"


def allow_audiocraft_checkpoints() -> None:
    """Let torch >= 2.6's weights-only unpickler read OmegaConf configs (exported audiocraft packages)."""
    import torch

    add_safe_globals = getattr(torch.serialization, "add_safe_globals", None)
    if add_safe_globals is None:  # torch < 2.4 loads everything anyway
        return
    import collections
    import typing

    from omegaconf import base, dictconfig, listconfig, nodes

    node_types = [t for t in vars(nodes).values() if isinstance(t, type) and issubclass(t, nodes.Node)]
    add_safe_globals([dictconfig.DictConfig, listconfig.ListConfig, base.ContainerMetadata, base.Metadata,
                      typing.Any, collections.defaultdict, collections.OrderedDict, *node_types])


def login_name_fallback() -> None:
    """`os.getlogin()` falls back to the effective user's name (who owns the SLURM jobs) where it raises.

    `dora grid` runs `squeue -u os.getlogin()` when it finds a submission interrupted before its job id was
    saved (dora/shep.py, `Shepherd._check_orphans`). Without a controlling terminal (CI, cron, containers)
    `os.getlogin()` raises OSError and `dora grid` dies before doing anything; elsewhere it is unchanged."""
    def make(login):
        def getlogin() -> str:
            try:
                return login()
            except OSError:
                import pwd

                return pwd.getpwuid(os.geteuid()).pw_name
        return getlogin

    wrap_once(os, "getlogin", make)


def prepare_process() -> None:
    """What every entry point needs before audiocraft: `USER`, `HF_HUB_OFFLINE` where the hub is unreachable,
    OmegaConf allow-listed for torch, the login-name fallback. Idempotent."""
    ensure_user()
    if "HF_HUB_OFFLINE" not in os.environ and not hub_reachable():
        os.environ["HF_HUB_OFFLINE"] = "1"
    allow_audiocraft_checkpoints()
    login_name_fallback()
