"""Run a command and record how long it took and what it left on disk, as a results file the docs quote.

The README's durations and disk sizes (a cold `make setup`, `make test`, the cache) come from such files, with the
command, the date and the CPU beside them (mmd_audiocraft.apps.json_output.provenance).

    python scripts/time_command.py --out benchmarks/results/make_test.json [--du DIR ...] -- make test
"""
from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mmd_audiocraft.apps.json_output import provenance, write_json  # noqa: E402


def tree_bytes(path: Path) -> int:
    """Bytes of the regular files under `path` (symlinks not followed), as `du --apparent-size -b` counts them."""
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--du", type=Path, nargs="*", default=[], help="folders whose size to record afterwards")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to time after --")
    start = time.time()
    code = subprocess.call(command)
    seconds = time.time() - start
    sizes = {str(p): tree_bytes(p) for p in args.du if p.exists()}
    write_json({**provenance(shlex.join(command)), "seconds": round(seconds, 1), "returncode": code,
                "bytes": sizes}, args.out)
    print(f"{shlex.join(command)}: exit {code} after {seconds:.0f} s; wrote {args.out}")
    return code


if __name__ == "__main__":
    sys.exit(main())
