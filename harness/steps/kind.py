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

    Keying and running:

    - ``name``, ``code_version`` (bump when the kind's code changes what an output means);
    - ``resumes``: a killed step resumes from its work directory (generation, training); a kind
      that cannot (evaluation: its vectors are in the embedding cache) starts each try afresh;
    - ``exclusive``: at most one unit of the kind runs at a time in one process, whatever ``--jobs``
      says (training: it owns the accelerator and seeds torch's global RNG). An accelerator itself
      is asked for per step, by :attr:`Step.gpu` (the Ray executor gives such a unit one GPU);
    - ``session(steps, ctx)``: a context that loads what a unit's steps share (one model for the
      evaluate steps of one model entry) and yields the function that runs one step in its work
      directory and returns its summary (a ``stats()`` method on it, if any, reports the session's
      statistics: ``{"encode": {entry: counters}, "cache": {hits, misses, damaged}}``);
    - ``after_commit(step, step_dir, ctx)``: what follows a finished step (evaluation publishes its
      result files into ``results/``); also called for a step found done, so it is idempotent;
    - ``environment(step)``: the environment variables the step reads (API keys, endpoints), which a
      worker on another node must be given (the Ray executor forwards them).

    The bill (``harness plan``):

    - ``estimate(step, ctx)``: the cost of running it (:class:`Estimate`); every kind's LLM calls,
      dollars, local LLM hours and GPU-hours are added up alike;
    - ``progress(step, work)``: what a killed try left that the next one resumes from (None: nothing);
    - ``caches(step, ctx)``: the run-level caches it reads and writes.

    What the user reads (so no executor or command names a kind):

    - ``unit_label(steps)``: a unit of these steps in a progress bar or a Ray task name;
    - ``title(step)``: the step in ``harness run``'s report (``FAILED <title>: <error>``);
    - ``describe_summary(summary)``: a finished step's summary in one line ("" for nothing to add);
    - ``log_name(step)``: the file, under ``<run>/logs/`` and without ``.log``, of its traceback.
    """

    name: str
    code_version: str
    resumes: bool
    exclusive: bool

    def session(self, steps: list[Step], ctx: RunContext) -> AbstractContextManager[StepRunner]: ...

    def after_commit(self, step: Step, step_dir: Path, ctx: RunContext) -> None: ...

    def environment(self, step: Step) -> set[str]: ...

    def estimate(self, step: Step, ctx: RunContext) -> Estimate: ...

    def progress(self, step: Step, work: Path) -> str | None: ...

    def caches(self, step: Step, ctx: RunContext) -> list[CacheUse]: ...

    def unit_label(self, steps: list[Step]) -> str: ...

    def title(self, step: Step) -> str: ...

    def describe_summary(self, summary: dict[str, Any]) -> str: ...

    def log_name(self, step: Step) -> str: ...


class OneStepNames:
    """The names of a kind whose unit is one step and whose label says it all (generate, train):
    the unit and the step are called by the step's label, its log by kind and entry name."""

    name: str

    def unit_label(self, steps: list[Step]) -> str:
        return steps[0].label

    def title(self, step: Step) -> str:
        return step.label

    def log_name(self, step: Step) -> str:
        return f"{self.name}__{step.label.split(' ', 1)[-1]}"
