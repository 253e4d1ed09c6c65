"""The one way the applications write JSON (measure reports, compare tables, the demo's results, cached gaps)."""
from __future__ import annotations

import datetime
import json
import math
import os
import platform
import shlex
import sys
from pathlib import Path

import numpy as np


def write_json(obj, path: str | Path) -> Path:
    """Write `obj` to `path` as strict, indented JSON (parents created) and return the path: numpy scalars and
    arrays become numbers and lists, paths strings, and non-finite floats null (strict JSON has no NaN).
    Raises TypeError for anything else that JSON cannot hold."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_plain(obj), indent=2, allow_nan=False) + "\n")
    return path


def provenance(command: str | None = None) -> dict:
    """What a committed results file says of where it came from: the command (default: this script as it was run
    from the checkout, `python PATH ARGS`), the
    UTC date, the CPU's name, its core count and the load average when it was written (other work on the machine
    slows timings). The docs quote numbers next to the file that holds them."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"command": command or shlex.join(["python", os.path.relpath(sys.argv[0]), *sys.argv[1:]]),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
            "cpu": cpu, "cores": os.cpu_count(), "loadavg": [round(x, 2) for x in os.getloadavg()]}


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
