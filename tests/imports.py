"""The import closure of a module of the project, read from the source without running it."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "stages"


def module_file(name: str) -> Path | None:
    """stages.a.b -> stages/a/b.py or stages/a/b/__init__.py (None when it is no module of the project)."""
    base = ROOT.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imported(path: Path) -> set[str]:
    """Every project module that the file imports, at the top or inside a function (lazy imports run too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names if alias.name.split(".")[0] == PACKAGE}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == PACKAGE:
            names.add(node.module)
            # `from stages.lib.infra import cli` imports the module stages.lib.infra.cli
            names |= {f"{node.module}.{alias.name}" for alias in node.names if module_file(f"{node.module}.{alias.name}")}
    return {name for name in names if module_file(name)}


def closure(module: str) -> set[Path]:
    """The files of every project module that importing ``module`` runs, its packages' __init__ files included."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:k]) for k in range(1, len(parts))]  # importing a.b.c runs a and a.b first
        todo += sorted(imported(module_file(name)))
    return {module_file(name).relative_to(ROOT) for name in seen}
