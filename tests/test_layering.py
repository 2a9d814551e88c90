"""``harness/`` imports only downward: cli -> pipeline -> steps -> evaluation -> schema/leaves.

Checked on the source (every ``import``/``from`` statement, including function-local ones), so a
cycle cannot hide behind a lazy import.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "harness"
LAYERS = ["cli", "pipeline", "steps", "evaluation"]  # top to bottom
LEAVES = {"schema", "errors", "provenance", "quiet", "examples"}


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
    offenders = [f"{py.relative_to(repo)} imports {mod}" for pkg in ("generators", "trainers", "leaderboards", "atomicio", "inputio", "contentid")
                 for py in (repo / pkg).rglob("*.py") for mod in _imports(py) if mod.split(".")[0] == "harness"]
    assert offenders == []


def test_shared_io_leaves_import_no_project_package() -> None:
    """``atomicio`` (writing), ``inputio`` (reading users' files) and ``contentid`` (content
    fingerprints) are imported by every package,
    so they may import none: anything else would make the libraries depend on each other through them."""
    repo = ROOT.parent
    project = {"harness", "trainers", "generators", "leaderboards", "atomicio", "inputio", "contentid"}
    offenders = [f"{py.relative_to(repo)} imports {mod}" for pkg in ("atomicio", "inputio", "contentid")
                 for py in (repo / pkg).rglob("*.py") for mod in _imports(py)
                 if mod.split(".")[0] in project - {pkg}]
    assert offenders == []
