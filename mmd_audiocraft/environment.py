"""Process-level settings our entry points need before audiocraft is imported.

audiocraft's config interpolates ``$USER``, its checkpoints hold OmegaConf objects that torch >= 2.6 refuses
to unpickle by default, and Hugging Face lookups hang on machines without a route to the hub. These are
fixed here once, so `dora -P mmd_audiocraft ...` and `mmd-audiocraft ...` work with nothing exported.
"""
from __future__ import annotations

import functools
import getpass
import os
import socket
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent

_WHEEL_WITHOUT_CONFIG = """\
audiocraft is installed without its config/ tree ({where}), which training needs.
The audiocraft wheel does not ship it. Either
  * install audiocraft from its source distribution, editable:
      pip download --no-deps --no-binary :all: audiocraft==1.3.0 && tar xzf audiocraft-1.3.0.tar.gz
      pip install --no-deps -e audiocraft-1.3.0
  * or point AUDIOCRAFT_CONFIG_DIR at the config/ folder of an audiocraft checkout.
`make setup` in the mmd-audiocraft checkout does the first for you."""


def audiocraft_config_dir() -> Path:
    """audiocraft's Hydra config tree: $AUDIOCRAFT_CONFIG_DIR, else the one beside the audiocraft package."""
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
    """Our own Hydra configs (package data: `mmd_audiocraft/config/`, in a wheel too), appended to audiocraft's
    search path (config_search_path.py)."""
    return Path(os.environ.get("MMD_AUDIOCRAFT_CONFIG_DIR", PACKAGE_DIR / "config")).resolve()


@functools.cache
def hub_reachable(host: str = "huggingface.co", timeout: float = 1.5) -> bool:
    """One short TCP probe, so offline machines fail fast instead of hanging on hub lookups."""
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def allow_audiocraft_checkpoints() -> None:
    """Let torch >= 2.6's weights-only unpickler read audiocraft checkpoints (they hold OmegaConf configs)."""
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


def ensure_user() -> None:
    """audiocraft's config.yaml reads ${oc.env:USER}; give it the login name when the shell did not export it."""
    if not os.environ.get("USER"):
        try:
            os.environ["USER"] = getpass.getuser()
        except Exception:  # no passwd entry (containers)
            os.environ["USER"] = "audiocraft"


def login_name_fallback() -> None:
    """Give `os.getlogin()` a fallback: the effective user's name, who owns the SLURM jobs.

    `dora grid` runs `squeue -u os.getlogin()` when it finds a submission interrupted before its job id was
    saved (dora/shep.py, `Shepherd._check_orphans`, dora-search 0.1.13). Without a controlling terminal (CI,
    cron, containers) `os.getlogin()` raises OSError and `dora grid` dies before doing anything. Only that
    failure is replaced; where `os.getlogin()` works it is unchanged. Installed by our Dora main (train.py).
    """
    if getattr(os.getlogin, "mmd_fallback", False):
        return
    login = os.getlogin

    def getlogin() -> str:
        try:
            return login()
        except OSError:
            import pwd

            return pwd.getpwuid(os.geteuid()).pw_name

    getlogin.mmd_fallback = True
    os.getlogin = getlogin


def prepare_environment() -> None:
    """Apply every fix above; idempotent and cheap after the first call."""
    ensure_user()
    if "HF_HUB_OFFLINE" not in os.environ and not hub_reachable():
        os.environ["HF_HUB_OFFLINE"] = "1"
    allow_audiocraft_checkpoints()
