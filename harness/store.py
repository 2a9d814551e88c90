"""The artifact store: one directory per step, keyed by the step's configuration and inputs.

A step is done exactly when its directory holds ``manifest.json`` with ``status: complete`` and
every output it lists still exists with the recorded hash. The manifest is written last (and
atomically), so a step killed at any point is simply not done, and re-running does exactly the
missing work.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from atomicio import atomic_write_json


class Manifest(BaseModel):
    step: str
    key: str
    status: str
    outputs: dict[str, str]  # path relative to the run dir -> sha256
    summary: dict[str, Any] = {}
    finished_at: float


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class ArtifactStore:
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir

    def step_dir(self, step: str, key: str) -> Path:
        return self.run_dir / "steps" / step / key[:20]

    def manifest(self, step: str, key: str) -> Manifest | None:
        path = self.step_dir(step, key) / "manifest.json"
        if not path.is_file():
            return None
        try:
            m = Manifest.model_validate(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, ValidationError):
            return None
        if m.key != key or m.status != "complete":
            return None
        return m

    def completed(self, step: str, key: str) -> Manifest | None:
        """The step's manifest if the step is done: complete and every output intact."""
        m = self.manifest(step, key)
        if m is None:
            return None
        for rel, digest in m.outputs.items():
            p = self.run_dir / rel
            if not p.is_file() or sha256_file(p) != digest:
                return None
        return m

    def is_done(self, step: str, key: str) -> bool:
        return self.completed(step, key) is not None

    def complete(self, step: str, key: str, outputs: list[Path], summary: dict[str, Any]) -> Manifest:
        m = Manifest(
            step=step,
            key=key,
            status="complete",
            outputs={p.relative_to(self.run_dir).as_posix(): sha256_file(p) for p in outputs},
            summary=summary,
            finished_at=time.time(),
        )
        atomic_write_json(self.step_dir(step, key) / "manifest.json", m.model_dump())
        return m
