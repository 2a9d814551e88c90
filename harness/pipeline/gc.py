"""Collecting what no plan needs any more: finished steps and work directories outside the matrix.

Every changed setting makes new step keys, so a run folder that follows a matrix through a few
edits accumulates finished steps nobody will read again (a retrained model is gigabytes) and work
directories of steps that were killed and then edited away (training checkpoints). ``harness gc``
finds them by comparing ``steps/<kind>/`` with the plan of the matrix *as it is now*: whatever the
plan still names is kept — its finished steps, and its work directories, because a killed step
resumes from them. A dry run (the default) only lists; ``--delete`` removes.

Published results (``results/<model>/<revision>/``) and the embedding cache are never touched:
they are the run's output and are keyed by content already, so a stale entry costs disk, not
correctness, and a report may still want an old revision beside a new one.

A step another process holds is skipped, never deleted under it: the claim of a run writing it,
or the shared claim every running step holds on the inputs it reads (a train step on its generated
examples, an evaluation on the trained model). Removal is
rename-then-delete (``.gc-<name>``), so a kill mid-way leaves a name no step reads, which the next
``gc`` finishes; leftovers of interrupted directory replacements (``.<key>.old-<pid>``) go the same way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from atomicio import discard
from harness.steps.store import WORK_PREFIX, ArtifactStore

TRASH_PREFIX = ".gc-"


@dataclass(frozen=True)
class Garbage:
    kind: str
    key: str
    path: Path
    state: str  # "finished" | "unfinished" (a work directory) | "leftover" (interrupted replace or gc)
    label: str
    size: int


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _classify(name: str) -> tuple[str, str] | None:
    """(state, key) of an entry of ``steps/<kind>/``, or None for entries gc leaves alone (locks)."""
    if name.startswith(TRASH_PREFIX):
        return "leftover", name[len(TRASH_PREFIX):].split(".", 1)[0]
    if name.startswith(WORK_PREFIX):
        return "unfinished", name[len(WORK_PREFIX):]
    if name.startswith(".") and ".old-" in name:
        return "leftover", name[1:].split(".old-", 1)[0]
    if name.startswith("."):
        return None  # ``.<key>.lock`` claim files: empty, and see ``delete`` for why they stay
    return "finished", name


def find_garbage(store: ArtifactStore, keep: dict[str, set[str]]) -> tuple[list[Garbage], list[Path]]:
    """Entries of the store that no step of ``keep`` (kind -> keys) needs, and those skipped as in use."""
    garbage: list[Garbage] = []
    busy: list[Path] = []
    root = store.run_dir / "steps"
    if not root.is_dir():
        return garbage, busy
    for kind_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        kind = kind_dir.name
        for entry in sorted(kind_dir.iterdir()):
            found = _classify(entry.name)
            if found is None:
                continue
            state, key = found
            if state != "leftover" and key in keep.get(kind, set()):
                continue
            with store.claim_if_free(kind, key) as held:
                if not held:
                    busy.append(entry)
                    continue
                manifest = store.manifest(kind, key) if state == "finished" else None
                garbage.append(Garbage(kind, key, entry, state, manifest.label if manifest else "", _size(entry)))
    return garbage, busy


def delete(store: ArtifactStore, items: list[Garbage]) -> int:
    """Remove ``items`` (each under its step's claim); returns the bytes freed."""
    freed = 0
    for item in items:
        with store.claim_if_free(item.kind, item.key) as held:
            if not held or not item.path.exists():
                continue  # claimed since it was listed (a run wants it again), or already gone
            aside = item.path if item.path.name.startswith(TRASH_PREFIX) else item.path.parent / f"{TRASH_PREFIX}{item.key}.{os.getpid()}"
            discard(item.path, aside)
            freed += item.size
            # The ``.<key>.lock`` file stays: unlinking a lock file another process may have just
            # opened would let two processes "hold" the same step (each on its own inode).
    return freed
