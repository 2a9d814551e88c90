"""What a step kind may use while it runs or estimates: the run folder, its caches, the device(s).

Nothing here comes from the matrix file at run time: the matrix was read once, at plan time, into
the steps' specs. That is what lets a unit run on another node (Ray) from its pickled steps and
this context alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.steps.base import Step
from harness.steps.caches import RunCaches
from harness.steps.store import ArtifactStore


@dataclass
class RunContext:
    output: Path  # the run folder
    caches: RunCaches
    device: str | None = None
    # --devices: one encode worker per entry (two or more); devices enter no key, so a run on eight
    # GPUs and one on a laptop share their steps and caches
    devices: tuple[str, ...] = ()
    show_progress: bool = False
    environment: dict[str, Any] = field(default_factory=dict)  # provenance of this process (harness.provenance)
    loaded_models: dict[str, Any] = field(default_factory=dict)  # weights key -> embedder, within one process

    @property
    def store(self) -> ArtifactStore:
        return ArtifactStore(self.output)

    def step_dir(self, step: Step) -> Path:
        return self.store.step_dir(step.kind, step.key)

    def work_dir(self, step: Step) -> Path:
        return self.store.work_dir(step.kind, step.key)

    def for_worker(self) -> "RunContext":
        """A copy to send to another process: without this process's loaded models."""
        return RunContext(self.output, self.caches, self.device, self.devices, self.show_progress, dict(self.environment))
