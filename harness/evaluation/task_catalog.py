"""Finding tasks: the listing behind ``harness ls tasks`` and the "did you mean" of a mistyped name.

mteb hides superseded tasks by default, but the superseded ones (STSBenchmark, Banking77Classification,
...) are the tasks with official leaderboard scores for most published models and the ones this
project's own examples use; hiding them made ``ls tasks`` and the name suggestions steer users away
from exactly the tasks they need. So the catalogue lists every task, marking the superseded ones,
and suggestions rank an exact (case-insensitive) name first, then names that contain or are
contained in the typed one, then spelling neighbours.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from harness.errors import InputError
from harness.evaluation.task_registry import registered_tasks


@dataclass(frozen=True)
class TaskListing:
    """One line of ``harness ls tasks``."""

    name: str
    type: str
    main_score: str
    splits: tuple[str, ...]
    superseded_by: str | None


def _listing(md: Any) -> TaskListing:
    return TaskListing(md.name, str(md.type), str(md.main_score), tuple(md.eval_splits), md.superseded_by)


@lru_cache(maxsize=1)
def _mteb_tasks() -> tuple[TaskListing, ...]:
    import mteb

    return tuple(_listing(t.metadata) for t in mteb.get_tasks(exclude_superseded=False))


def all_tasks() -> tuple[TaskListing, ...]:
    """Every mteb task (superseded ones included) plus tasks registered with the harness, sorted by name.

    mteb's registry is fixed for a process and cached; the harness's own registry is read each time,
    since a task may be registered after the first call."""
    out = {cls.metadata.name: _listing(cls.metadata) for cls in registered_tasks().values()}  # type: ignore[attr-defined]
    for listing in _mteb_tasks():
        out.setdefault(listing.name, listing)
    return tuple(sorted(out.values(), key=lambda t: t.name))


def task_types() -> list[str]:
    return sorted({t.type for t in all_tasks()})


def canonical_type(value: str) -> str:
    """mteb's spelling of a task type given in any case (``retrieval`` -> ``Retrieval``); unknown -> InputError."""
    types = task_types()
    by_lower = {t.lower(): t for t in types}
    if value.lower() in by_lower:
        return by_lower[value.lower()]
    close = difflib.get_close_matches(value.lower(), list(by_lower), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(repr(by_lower[c]) for c in close)}? " if close else ""
    raise InputError(None, "--type", f"unknown task type {value!r}", f"{hint}use one of: {', '.join(types)}")


def suggest(name: str, limit: int = 3) -> str:
    """The fix text for an unknown task name: best candidates first, superseded tasks included."""
    names = [t.name for t in all_tasks()]
    low = name.lower()
    ranked: list[str] = [n for n in names if n.lower() == low]
    ranked += sorted((n for n in names if n not in ranked and len(n) >= 4 and (n.lower() in low or low in n.lower())),
                     key=lambda n: (abs(len(n) - len(name)), n))
    ranked += [n for n in difflib.get_close_matches(name, names, n=limit + 3, cutoff=0.6) if n not in ranked]
    ranked = ranked[:limit]
    if not ranked:
        return "run 'harness ls tasks' for valid names"
    return f"did you mean {', '.join(repr(c) for c in ranked)}?"
