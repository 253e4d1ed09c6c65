"""The package's layers follow its folders: `core/` (the math), `integration/` (the glue into audiocraft, Dora and
Hydra), `apps/` (the CLI, the demo, the grids); a layer imports only the layers before it. The math loads no
framework and changes nothing in the process; the import graph has no circle."""
from __future__ import annotations

import ast
import graphlib
import json
import os
import subprocess
import sys

from .conftest import ROOT

PACKAGE = "mmd_audiocraft"
LAYERS = ("core", "integration", "apps")  # each may import itself and the ones before it
# modules outside the three folders, and their layer: the public math API, the Dora main, the shipped grids
# (a top-level folder of the repository, installed as mmd_audiocraft.grids) and configs (no code)
OTHERS = {PACKAGE: "core", f"{PACKAGE}.train": "integration", f"{PACKAGE}.grids": "apps",
          f"{PACKAGE}.config": None}
FRAMEWORKS = ("audiocraft", "dora", "omegaconf", "hydra", "flashy", "julius", "treetable", "submitit")


def package_files() -> dict[str, object]:
    """module name -> file, for the package and the folders shipped into it (grids/, config/)."""
    files = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    for folder in ("grids", "config"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = [PACKAGE, *path.relative_to(ROOT).with_suffix("").parts]
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in LAYERS:
        return parts[1]
    for name, layer in OTHERS.items():  # the package itself, or a module inside one of the others
        if module == name or (name != PACKAGE and module.startswith(name + ".")):
            return layer
    raise AssertionError(f"{module} sits in no layer folder: put it under {PACKAGE}/{{{','.join(LAYERS)}}}/")


def imports_of(module: str, path, known: set[str]) -> tuple[set[str], set[str]]:
    """(package modules, other top-level packages) that a file imports, at any depth (function-level too)."""
    is_package = path.name == "__init__.py"
    package = module if is_package else module.rsplit(".", 1)[0]
    ours, others = set(), set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            base = base[: len(base) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            targets = [target] + [f"{target}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            if target.split(".")[0] != PACKAGE:
                others.add(target.split(".")[0])
            else:  # the deepest known module the import names
                while target not in known and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target in known and target != module:
                    ours.add(target)
    return ours, others


def graph() -> dict[str, tuple[set[str], set[str]]]:
    files = package_files()
    return {module: imports_of(module, path, set(files)) for module, path in files.items()}


def test_every_module_imports_only_its_layer_and_the_layers_before_it():
    edges = graph()
    assert {"mmd_audiocraft.integration.solver", "mmd_audiocraft.grids.mmd_musicgen"} <= set(edges)
    assert "mmd_audiocraft.core.loss" in edges["mmd_audiocraft.integration.solver"][0]  # relative imports seen
    rank = {layer: i for i, layer in enumerate(LAYERS)}
    wrong = []
    for module, (ours, _) in edges.items():
        layer = layer_of(module)
        for target in ours:
            target_layer = layer_of(target)
            if layer is None or (target_layer is not None and rank[target_layer] > rank[layer]):
                wrong.append(f"{module} ({layer}) imports {target} ({target_layer})")
    assert wrong == []


def test_the_math_imports_no_framework_at_any_depth():
    edges = graph()
    core = {m: others for m, (_, others) in edges.items() if layer_of(m) == "core"}
    assert len(core) > 10
    found = {m: sorted(o & set(FRAMEWORKS)) for m, o in core.items() if o & set(FRAMEWORKS)}
    assert found == {}


def test_the_import_graph_of_the_package_has_no_circle():
    edges = graph()
    graphlib.TopologicalSorter({m: ours for m, (ours, _) in edges.items()}).prepare()  # raises CycleError


def loaded_after(imports: list[str], env: dict | None = None) -> dict:
    """sys.modules and os.environ of a fresh interpreter after importing `imports`."""
    code = ("import json, os, sys\nbefore = dict(os.environ)\n" + "".join(f"import {m}\n" for m in imports) +
            "print(json.dumps({'modules': sorted(sys.modules), 'env_changed': sorted(k for k in set(before) | "
            "set(os.environ) if before.get(k) != os.environ.get(k))}))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                         env=env or dict(os.environ), cwd=ROOT).stdout
    return json.loads(out.splitlines()[-1])


def test_importing_the_math_loads_no_framework_and_changes_nothing_in_the_process():
    math = [m for m in graph() if layer_of(m) == "core"]
    env = {k: v for k, v in os.environ.items() if k not in ("USER", "HF_HUB_OFFLINE")}
    after = loaded_after(math, env)
    assert "mmd_audiocraft.core.metrics.factorization_gap" in after["modules"]  # the check is not vacuous
    heavy = [m for m in after["modules"] if m.split(".")[0] in FRAMEWORKS]
    assert heavy == [], f"importing the math loads {heavy[:8]}"
    assert after["env_changed"] == []


def test_training_loads_no_application():
    after = loaded_after(["mmd_audiocraft.integration.solver", "mmd_audiocraft.train"])
    assert "audiocraft.solvers.compression" in after["modules"]  # the check is not vacuous
    assert [m for m in after["modules"] if m.startswith("mmd_audiocraft.apps")] == []
