"""Matrices shipped with the package, addressable as ``--example NAME`` from any directory."""

from __future__ import annotations

from pathlib import Path

from harness.errors import InputError

EXAMPLES_DIR = Path(__file__).parent / "example_matrices"


def example_names() -> list[str]:
    return sorted(p.stem for p in EXAMPLES_DIR.glob("*.yaml"))


def example_path(name: str) -> Path:
    path = EXAMPLES_DIR / f"{name}.yaml"
    if not path.is_file():
        raise InputError(None, "--example", f"no built-in example {name!r}", f"choose one of: {', '.join(example_names())}")
    return path
