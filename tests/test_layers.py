"""The package's import graph runs one way: each module imports only from layers below its own.

Layers, bottom up (docs/DESIGN.md, "Module map", draws them)::

    errors, types  <  registry, config, models  <  capture, runtime, sinks  <  vision  <  temporal
      <  pipeline  <  api, runner  <  tools  <  cli  <  __main__

Modules in one unit (one sub-package, or one top-level module) may import each other; two units of
the same layer may not (capture never imports sinks, api never imports runner). Every import is
counted, those inside functions and under ``TYPE_CHECKING`` too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "edge_fer"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "types"),
    ("registry", "config", "models"),
    ("capture", "runtime", "sinks"),
    ("vision",),
    ("temporal",),
    ("pipeline",),
    ("api", "runner"),
    ("tools",),
    ("cli",),
    ("__main__",),
)
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(dotted: str) -> bool:
    path = PACKAGE.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports_of(path: Path) -> set[str]:
    """The edge_fer modules `path` imports (a name imported from a package counts as the
    sub-module when it is one, else as the package)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("edge_fer"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("edge_fer"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if _is_module(sub) else node.module)
    return found


def unit_of(module: str) -> str | None:
    """``edge_fer.vision.emotion`` → ``vision``; the package root (the lazy facade) → None."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def graph() -> dict[str, set[str]]:
    """Unit → the other units it imports."""
    edges: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        source = unit_of(_module_name(path))
        if source is None:
            continue
        for target in map(unit_of, imports_of(path)):
            if target is not None and target != source:
                edges.setdefault(source, set()).add(target)
    return edges


def test_every_unit_of_the_package_has_a_layer() -> None:
    units = {unit_of(_module_name(p)) for p in PACKAGE.rglob("*.py")} - {None}
    assert units == set(RANK), "a new module or sub-package: give it a layer in LAYERS and in docs/DESIGN.md"


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_only_go_down(path: Path) -> None:
    source = unit_of(_module_name(path))
    if source is None:
        return  # edge_fer/__init__.py: names are imported on first use, by string
    upward = [
        target for target in sorted(imports_of(path)) if (unit := unit_of(target)) is not None and unit != source and RANK[unit] >= RANK[source]
    ]
    assert not upward, f"{path.relative_to(PACKAGE)} ({source}, layer {RANK[source]}) imports {upward} from its own layer or above"


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    # The check itself works: a module of vision importing the pipeline is found.
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from edge_fer.pipeline import Pipeline\n    from edge_fer import models\n")
    assert imports_of(bad) == {"edge_fer.pipeline", "edge_fer.models"}
    assert RANK[unit_of("edge_fer.pipeline") or ""] >= RANK["vision"]


def test_no_two_modules_share_a_name() -> None:
    # ``base`` is the one shared name, on purpose: in every registry package it holds the
    # protocol and the registry that the implementations beside it import.
    names = [p.stem for p in PACKAGE.rglob("*.py") if p.stem not in ("__init__", "base")]
    assert sorted({n for n in names if names.count(n) > 1}) == []
