"""The import layering of ``reid``: no module imports a higher layer, and no import circle.

Every ``import`` of every module under ``reid/`` counts, at module level, inside functions and
under ``TYPE_CHECKING`` alike (a lazy import hides a circle, it does not remove it). Layers, low to
high: the registry, the atomic writer, the value checks and the CLI wrapper; the components (data,
models, losses, evaluation; they may import one another); the config system (it imports the
components to fill the registries); the engine; inference, visualisation and the test fixtures.
A new top-level module or package of ``reid`` must be placed in :data:`LAYERS`.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "reid"
#: Layer of each top-level part of ``reid`` (a module may import its own layer or a lower one).
LAYERS = {
    "registry": 0, "suggest": 0, "atomic_io": 0, "checks": 0, "cli": 0,
    "data": 1, "models": 1, "losses": 1, "evaluation": 1,
    "config": 2,
    "engine": 3,
    "inference": 4, "visualize": 4, "testing": 4,
}


def modules(root: Path, package: str) -> dict[str, Path]:
    """Dotted name -> file of every module under ``root`` (a package's ``__init__`` is the package)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Module -> the modules of ``package`` it imports (the longest dotted prefix that is a module)."""
    mods = modules(root, package)

    def known(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for mod, path in mods.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    here = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
                    base = ".".join(here[:len(here) - node.level + 1] + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                names = [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            deps.update(k for n in names if n.split(".")[0] == package and (k := known(n)) and k != mod)
        graph[mod] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles of ``graph``: its strongly connected components of two or more modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def layer(module: str) -> int | None:
    """The layer of ``module``; the root package (which imports nothing) is the lowest."""
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else 0


def upward(graph: dict[str, set[str]]) -> list[str]:
    """``"a -> b"`` for every import of a higher layer."""
    return [f"{m} -> {d}" for m, deps in sorted(graph.items()) for d in sorted(deps) if layer(d) > layer(m)]


def test_reid_layers_and_no_circles():
    graph = import_graph(ROOT, "reid")
    assert len(graph) > 90 and "reid.engine.trainer" in graph["reid.engine.distributed"]
    unplaced = sorted({m.split(".")[1] for m in graph if "." in m and layer(m) is None})
    assert not unplaced, f"place these parts of reid in LAYERS (tests/test_layers.py): {unplaced}"
    assert upward(graph) == []
    assert cycles(graph) == []
    assert graph["reid"] == set()  # importing reid imports nothing else


@pytest.mark.parametrize("body, upward_imports, circles", [
    ({"data/a.py": "from reid.engine import x\n", "engine/__init__.py": "x = 1\n"}, ["reid.data.a -> reid.engine"], []),
    ({"engine/a.py": "def f():\n    from .b import g\n", "engine/b.py": "from reid.engine.a import f\n"},
     [], [["reid.engine.a", "reid.engine.b"]]),
    ({"models/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..losses import l\n",
      "losses/__init__.py": "from reid.models.a import m\n"}, [], [["reid.losses", "reid.models.a"]]),
    ({"engine/a.py": "import reid.data.b\nfrom reid.registry import R\n", "data/b.py": "", "registry.py": ""}, [], []),
    ({"__init__.py": "from .engine import e\n", "engine.py": "import reid\n"}, ["reid -> reid.engine"],
     [["reid", "reid.engine"]]),
])
def test_checker_finds_upward_imports_and_circles(tmp_path, body, upward_imports, circles):
    for name, text in body.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    graph = import_graph(tmp_path, "reid")
    assert upward(graph) == upward_imports
    assert cycles(graph) == circles
