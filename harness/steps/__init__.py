"""Step kinds: one module per kind, each owning its key, its run, its estimate and its caches.

The registry below is all the planner, the executors and ``harness plan`` know of the kinds: add a
kind by writing its module (see :class:`harness.steps.kind.StepKind` and docs/pipeline.md) and
listing it here, in the order its steps may depend on each other.
"""

from __future__ import annotations

from harness.steps.kind import StepKind

_KINDS: dict[str, StepKind] = {}


def kinds() -> dict[str, StepKind]:
    """name -> kind, in dependency order (a kind's steps may read only the steps of kinds before it).

    Built once per process and returned itself, not a copy: everything that looks a kind up by name
    sees one registry (tests/test_step_kinds.py adds a toy kind to it for one test)."""
    if not _KINDS:
        from harness.steps import evaluate, generate, train

        _KINDS.update({k.name: k for k in (generate.KIND, train.KIND, evaluate.KIND)})  # whole at once: no thread sees a part
    return _KINDS


def kind_of(name: str) -> StepKind:
    return kinds()[name]
