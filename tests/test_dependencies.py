"""dvc.yaml lists the code each stage runs, so `dvc status` never calls a stale report up to date.

Each stage's entry point is read without running it (tests/imports.py), its
imports followed to the end, lazy ones inside functions too; every module it
reaches must be covered by one of the stage's `deps` (a file, or a folder
around it), unless it is one of the few below that cannot change an output.
"""

from __future__ import annotations

import ast
import re

import pytest
import yaml

from tests.imports import ROOT, closure

# Modules that run in a stage but cannot change what it writes. Listing them as
# deps would re-run the pipeline for an edit that changes no output.
CANNOT_CHANGE_OUTPUTS = {
    "stages/lib/errors.py": "exception classes: what a failing stage prints, never what a stage writes",
    "stages/lib/infra/cli.py": "the entry-point wrapper: exit status and the one-line error",
    "stages/lib/infra/cores.py": "the size of a worker pool; every pool returns the same results on any number of cores",
    "stages/lib/infra/cluster.py": ("where the pools run (here or on a Dask cluster); the results are byte for byte the "
                                    "same on either (tests/test_cluster.py)"),
    "stages/lib/infra/interrupts.py": "stops a stage on a signal; a stopped stage writes nothing",
    "stages/lib/infra/tracking.py": "logs to MLflow, which is not a DVC output",
}


def stages() -> dict[str, dict]:
    """Every stage of dvc.yaml, a foreach or matrix stage once: its entry module and its code deps."""
    out = {}
    for name, stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].items():
        body = stage.get("do", stage)
        module = re.search(r"python -m ([\w.]+)", body["cmd"]).group(1)
        out[name] = {"module": module, "deps": [d for d in body["deps"] if d.startswith("stages/")]}
    return out


def covered(path, deps: list[str]) -> bool:
    return any(str(path) == dep or str(path).startswith(dep.rstrip("/") + "/") for dep in deps)


def no_code(path) -> bool:
    """A package marker with nothing but a docstring cannot change anything."""
    body = ast.parse((ROOT / path).read_text()).body
    return all(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in body)


@pytest.mark.parametrize("stage", list(stages()))
def test_every_module_a_stage_imports_is_a_dep(stage):
    spec = stages()[stage]
    missing = sorted(str(p) for p in closure(spec["module"])
                     if not covered(p, spec["deps"]) and str(p) not in CANNOT_CHANGE_OUTPUTS and not no_code(p))
    assert missing == [], f"{stage}: add to its deps in dvc.yaml: {missing}"


@pytest.mark.parametrize("stage", list(stages()))
def test_every_code_dep_exists(stage):
    for dep in stages()[stage]["deps"]:
        assert (ROOT / dep).exists(), f"{stage}: dep {dep} does not exist"


def test_the_allowlist_names_real_modules():
    for path in CANNOT_CHANGE_OUTPUTS:
        assert (ROOT / path).is_file(), path


def test_the_closure_follows_lazy_imports():
    # evaluate_memory imports training inside main(): a closure of top-level imports alone would miss it.
    files = {str(p) for p in closure("stages.evaluate_memory")}
    assert "stages/lib/nn/training.py" in files and "stages/lib/infra/plots.py" in files
    # ... and a memory stage runs no forecaster code.
    assert not any(f.startswith("stages/lib/forecast/") and not f.endswith(("specs.py", "__init__.py")) for f in files)


def test_layers_point_one_way():
    """import-linter checks .importlinter's contracts: the library's layers import downwards only.

    Run as its own process: its console output, called in-process, broke pytest's captured streams.
    """
    import subprocess
    import sys
    from pathlib import Path

    linter = Path(sys.executable).parent / "lint-imports"  # installed beside this Python by requirements-dev.txt
    assert linter.exists(), "import-linter is not installed: pip install -r requirements-dev.txt"
    done = subprocess.run([str(linter), "--config", str(ROOT / ".importlinter"), "--no-cache"], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
