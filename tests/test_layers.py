"""The layers the README promises: the math imports no audiocraft, Dora, OmegaConf or Hydra and changes nothing
in the process; the solver does not load the measure command; the package's import graph has no circle."""
from __future__ import annotations

import ast
import graphlib
import json
import os
import subprocess
import sys

from .conftest import ROOT

PACKAGE = ROOT / "mmd_audiocraft"
MATH = ["mmd_audiocraft", "mmd_audiocraft.kernels", "mmd_audiocraft.mmd", "mmd_audiocraft.shuffle",
        "mmd_audiocraft.patterns", "mmd_audiocraft.options", "mmd_audiocraft.loss", "mmd_audiocraft.sampling",
        "mmd_audiocraft.metrics", "mmd_audiocraft.distributed", "mmd_audiocraft.health"]
FRAMEWORKS = ("audiocraft", "dora", "omegaconf", "hydra")
MEASURE_COMMAND = ("mmd_audiocraft.cli", "mmd_audiocraft.measure", "mmd_audiocraft.measure_table",
                   "mmd_audiocraft.manifest", "mmd_audiocraft.models")


def loaded_after(imports: list[str], env: dict | None = None) -> dict:
    """sys.modules and os.environ of a fresh interpreter after importing `imports`."""
    code = ("import json, os, sys\nbefore = dict(os.environ)\n" + "".join(f"import {m}\n" for m in imports) +
            "print(json.dumps({'modules': sorted(sys.modules), 'env_changed': sorted(k for k in set(before) | "
            "set(os.environ) if before.get(k) != os.environ.get(k))}))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                         env=env or dict(os.environ), cwd=ROOT).stdout
    return json.loads(out.splitlines()[-1])


def test_the_math_loads_no_framework_and_changes_nothing_in_the_process():
    env = {k: v for k, v in os.environ.items() if k not in ("USER", "HF_HUB_OFFLINE")}
    after = loaded_after(MATH, env)
    heavy = [m for m in after["modules"] if m.split(".")[0] in FRAMEWORKS]
    assert heavy == [], f"importing the math loads {heavy[:8]}"
    assert after["env_changed"] == []


def test_the_solver_does_not_load_the_measure_command():
    after = loaded_after(["mmd_audiocraft.solvers.compression"])
    assert "audiocraft.solvers.compression" in after["modules"]  # the check is not vacuous
    assert [m for m in MEASURE_COMMAND if m in after["modules"]] == []


def module_name(path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_imports(path, modules: set[str]) -> set[str]:
    """The package modules a file imports, at any depth of the file (function-level imports count too)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            base = base[: len(base) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            targets = [module] + [f"{module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {t for t in targets if t in modules and t != name}
    return found


def test_the_import_graph_of_the_package_has_no_circle():
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(f) for f in files}
    graph = {module_name(f): package_imports(f, modules) for f in files}
    assert graph["mmd_audiocraft.solvers.compression"]  # the parser sees relative imports
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError naming the circle
