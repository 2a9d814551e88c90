"""``harness/`` imports only downward: cli -> pipeline -> steps -> evaluation -> schema/leaves.

Checked on the source (every ``import``/``from`` statement, including function-local ones), so a
cycle cannot hide behind a lazy import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "harness"
LAYERS = ["cli", "pipeline", "steps", "evaluation"]  # top to bottom
LEAVES = {"schema", "errors", "provenance", "third_party_output", "examples"}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "harness" or len(parts) < 2:
        return None
    return parts[1]


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
        elif isinstance(node, ast.Import):
            out.extend(a.name for a in node.names)
    return out


def test_harness_imports_only_downward() -> None:
    rank = {name: i for i, name in enumerate(LAYERS)}
    offenders = []
    for py in ROOT.rglob("*.py"):
        own = py.relative_to(ROOT).parts[0].removesuffix(".py")
        for mod in _imports(py):
            target = _layer(mod)
            if target is None or target == own:
                continue
            if own in LEAVES and target not in LEAVES:
                offenders.append(f"{py.relative_to(ROOT)} (a leaf) imports {mod}")
            elif own in rank and target in rank and rank[target] < rank[own]:
                offenders.append(f"{py.relative_to(ROOT)} imports {mod} (upward)")
    assert offenders == []


def test_libraries_never_import_harness() -> None:
    repo = ROOT.parent
    offenders = [f"{py.relative_to(repo)} imports {mod}" for pkg in ("generators", "trainers", "leaderboards", "atomicio", "inputio", "contentid", "modelload")
                 for py in (repo / pkg).rglob("*.py") for mod in _imports(py) if mod.split(".")[0] == "harness"]
    assert offenders == []


def test_shared_io_leaves_import_no_project_package() -> None:
    """``atomicio`` (writing), ``inputio`` (reading users' files) and ``contentid`` (content
    fingerprints) are imported by every package,
    so they may import none: anything else would make the libraries depend on each other through them."""
    repo = ROOT.parent
    project = {"harness", "trainers", "generators", "leaderboards", "atomicio", "inputio", "contentid", "modelload"}
    offenders = [f"{py.relative_to(repo)} imports {mod}" for pkg in ("atomicio", "inputio", "contentid", "modelload")
                 for py in (repo / pkg).rglob("*.py") for mod in _imports(py)
                 if mod.split(".")[0] in project - {pkg}]
    assert offenders == []


def _module_name(py: Path, repo: Path) -> str:
    parts = py.relative_to(repo).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph(package: Path, repo: Path = ROOT.parent) -> dict[str, set[str]]:
    """Module -> the modules of ``package`` it names in an import (top-level and function-local alike).

    The implicit import of a parent package's ``__init__`` is not an edge: every submodule import
    would otherwise close a loop through its package."""
    modules = {_module_name(py, repo): py for py in package.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, py in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(py.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # ``from pkg import mod`` imports the module; ``from mod import name`` the module itself
                candidates = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                              for a in node.names]
            elif isinstance(node, ast.Import):
                candidates = [a.name for a in node.names]
            else:
                continue
            targets.update(c for c in candidates if c in modules and c != name)
        graph[name] = targets
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_cycle_finder_sees_function_local_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "harness" / "evaluation"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from harness.evaluation.b import f\n")
    (pkg / "b.py").write_text("def f():\n    from harness.evaluation import a\n")
    (pkg / "c.py").write_text("import harness.evaluation.a\n")
    graph = _import_graph(pkg, tmp_path)
    assert graph["harness.evaluation.b"] == {"harness.evaluation.a"}
    assert _cycles(graph) == [["harness.evaluation.a", "harness.evaluation.b"]]


@pytest.mark.parametrize("package", ["harness/evaluation", "harness", "generators", "trainers", "leaderboards"])
def test_no_import_cycle_among_a_packages_modules(package: str) -> None:
    """A cycle (harness.evaluation's task_catalog <-> tasks, once) works only while one edge of it
    stays a function-local import, and makes neither module understandable without the other."""
    assert _cycles(_import_graph(ROOT.parent / package)) == []
