"""The protocol every step kind implements (one module per kind; see docs/pipeline.md).

The planner, the executors and ``harness plan`` know a kind only through these members, so a new
kind is one new module and one line in the registry (:func:`harness.steps.kinds`).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from harness.steps.base import CacheUse, Estimate, Step
from harness.steps.context import RunContext

StepRunner = Callable[[Step, Path], dict[str, Any]]


class StepKind(Protocol):
    """What a kind module provides (one instance per kind, registered in :mod:`harness.steps`).

    - ``name``, ``code_version`` (bump when the kind's code changes what an output means);
    - ``resumes``: a killed step resumes from its work directory (generation, training); a kind
      that cannot (evaluation: its vectors are in the embedding cache) starts each try afresh;
    - ``session(steps, ctx)``: a context that loads what a unit's steps share (one model for the
      evaluate steps of one model entry) and yields the function that runs one step in its work
      directory and returns its summary;
    - ``after_commit(step, step_dir, ctx)``: what follows a finished step (evaluation publishes its
      result files into ``results/``); also called for a step found done, so it is idempotent;
    - ``estimate(step, ctx)``: the cost of running it (:class:`Estimate`);
    - ``progress(step, work)``: what a killed try left that the next one resumes from (None: nothing);
    - ``caches(step, ctx)``: the run-level caches it reads and writes.
    """

    name: str
    code_version: str
    resumes: bool

    def session(self, steps: list[Step], ctx: RunContext) -> AbstractContextManager[StepRunner]: ...

    def after_commit(self, step: Step, step_dir: Path, ctx: RunContext) -> None: ...

    def estimate(self, step: Step, ctx: RunContext) -> Estimate: ...

    def progress(self, step: Step, work: Path) -> str | None: ...

    def caches(self, step: Step, ctx: RunContext) -> list[CacheUse]: ...

