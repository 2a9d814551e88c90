"""Task classes the harness knows beyond mteb's registry, and the one lookup over both.

Resolution (:mod:`harness.evaluation.tasks`) and the catalogue (:mod:`harness.evaluation.task_catalog`)
both need the registry; keeping it here, below both, makes their imports go one way (resolution uses
the catalogue's suggestions, the catalogue lists what is registered), with no cycle between them.
"""

from __future__ import annotations

from typing import Any

TASK_REGISTRY: dict[str, type] = {}
"""Task classes known to the harness beyond mteb's registry (the smoke set, user-defined tasks).

Each entry is an mteb task class (subclass of an mteb ``AbsTask*``) so it is evaluated by mteb's
own evaluator; ``register_task`` is the one way to add one."""


def register_task(cls: type) -> type:
    """Make an mteb task class resolvable by its ``metadata.name`` in matrices (usable as a decorator)."""
    TASK_REGISTRY[cls.metadata.name] = cls  # type: ignore[attr-defined]
    return cls


def registered_tasks() -> dict[str, type]:
    """Every task registered with the harness, the smoke set included (imported on first use: it imports mteb)."""
    from harness.evaluation.smoke_tasks import SMOKE_TASKS

    for cls in SMOKE_TASKS.values():
        TASK_REGISTRY.setdefault(cls.metadata.name, cls)
    return TASK_REGISTRY


def get_task(name: str, eval_splits: list[str] | None = None, hf_subsets: list[str] | None = None) -> Any:
    """A registered task, else mteb's registry."""
    import mteb

    registry = registered_tasks()
    if name in registry:
        task = registry[name]()
        if eval_splits:
            task.filter_eval_splits(eval_splits=eval_splits)
        return task.filter_languages(None, None, hf_subsets=hf_subsets)
    return mteb.get_task(name, eval_splits=eval_splits, hf_subsets=hf_subsets)
