"""The process-level seams every entry point needs before audiocraft and Dora run: a torch, torchaudio and numpy
that work together, a `USER` for audiocraft's config, an offline hub where it cannot be reached, OmegaConf allowed
in torch's weights-only loads, a login name for `dora grid`; and `wrap_once`, how every seam wraps a symbol (listed
in the table of `seams.py`).

The Dora main, the CLI, the demo and the library's codec loader all call :func:`prepare_process`: one place sets
these defaults. Imports nothing from audiocraft.
"""
from __future__ import annotations

import functools
import importlib.metadata
import os
import socket
import sys
from collections.abc import Callable, Mapping

from packaging.version import Version

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


class StackMismatch(SystemExit):
    """torch, torchaudio and numpy that do not work together. A SystemExit, so that every entry point (the Dora
    main at import, the CLI, the demo) stops with its one line; a library caller can catch it by name."""


# The supported torch lines, with the torch of pyproject.toml's extras torch21 and torch211 (which
# tests/test_install_metadata.py keeps equal): a torch of another line is advised the newest pair.
SUPPORTED_TORCH = {(2, 1): "2.1.0", (2, 11): "2.11.0"}


def installed_versions(path: list[str] | None = None) -> dict[str, str]:
    """The versions of torch, torchaudio and numpy installed on `path` (default sys.path), from their metadata:
    importing a mismatched stack is what fails, so nothing is imported."""
    found = {}
    for name in ("torch", "torchaudio", "numpy"):
        dist = next(iter(importlib.metadata.distributions(name=name, path=sys.path if path is None else path)),
                    None)
        if dist is not None:
            found[name] = dist.version
    return found


def stack_mismatch(versions: Mapping[str, str]) -> str | None:
    """What of `versions` (name -> version of torch, torchaudio, numpy) does not work together, and the pip
    command that fixes it, in one line; None when they pair (or torch is absent).

    torch < 2.3 was built against numpy 1 and declares no bound, so pip pairs it with numpy 2; a torchaudio is
    built for one torch line, and 2.11.0 declares no torch at all, so pip pairs it with any."""
    if "torch" not in versions:
        return None
    torch = Version(versions["torch"])
    line = torch.release[:2]
    numpy_2 = "numpy" in versions and line < (2, 3) and Version(versions["numpy"]).major >= 2
    audio = Version(versions["torchaudio"]) if "torchaudio" in versions else None
    other_audio = audio is not None and audio.release[:2] != line
    if not (numpy_2 or other_audio):
        return None
    wrong, fix = [], []
    if numpy_2:
        wrong.append(f"numpy {versions['numpy']} (torch < 2.3 was built for numpy 1: its tensors fail with "
                     "'Numpy is not available')")
        fix.append('"numpy<2"')
    if other_audio:
        wrong.append(f"torchaudio {versions['torchaudio']} (built for torch {audio.major}.{audio.minor})")
        fix.append(f"torchaudio=={torch.base_version}")
        if line not in SUPPORTED_TORCH:  # a torchaudio of this torch may not exist: the newest supported pair
            supported = ", ".join(f"{major}.{minor}" for major, minor in SUPPORTED_TORCH)
            wrong[-1] += f", and torch {line[0]}.{line[1]} is not a supported line ({supported})"
            newest = SUPPORTED_TORCH[max(SUPPORTED_TORCH)]
            fix = [f"torch=={newest}", f"torchaudio=={newest}"]
    return (f"torch {versions['torch']} does not work with {' nor with '.join(wrong)}; fix it with: "
            f"pip install {' '.join(fix)}")


def check_stack() -> None:
    """Refuse (StackMismatch) an installed torch, torchaudio and numpy that do not work together, before anything
    imports them: they fail later and far from the cause (a training step's 'Numpy is not available', `measure`
    reporting an audio file it cannot read)."""
    problem = stack_mismatch(installed_versions())
    if problem:
        raise StackMismatch(f"mmd_audiocraft: {problem}")


def prepare_process() -> None:
    """What every entry point needs before audiocraft: a torch stack that works (else StackMismatch), `USER`,
    `HF_HUB_OFFLINE` where the hub is unreachable, OmegaConf allow-listed for torch, the login-name fallback.
    Idempotent."""
    check_stack()
    ensure_user()
    if "HF_HUB_OFFLINE" not in os.environ and not hub_reachable():
        os.environ["HF_HUB_OFFLINE"] = "1"
    allow_audiocraft_checkpoints()
    login_name_fallback()
