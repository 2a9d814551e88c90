"""The artifact store: one directory per step, named by the step's full key.

A step is done exactly when ``steps/<kind>/<key>/manifest.json`` exists: a step works in its own
directory (``steps/<kind>/.work-<key>``), writes its manifest there last, and the whole directory
is renamed into place in one ``rename`` — so a finished step directory is never half-written, and
a step killed at any point is simply not done. The work directory survives a kill on purpose:
generation (its response store) and training (its checkpoints) resume from what it holds.

Several ``harness run`` processes may share a run folder. A step is *claimed* with an exclusive
``flock`` on ``steps/<kind>/.<key>.lock`` before it is run: the kernel drops the lock when its
holder dies (kill -9 included), so there is no stale-lock cleanup, and a second process waits for
the first and then finds the step done instead of redoing or overwriting it.

A finished step that another step *reads* (a generate step's examples while a train step mixes
them, a train step's export while its model is evaluated) is held with a *shared* ``flock`` on the
same lock file for as long as the reader runs. ``harness gc`` only removes what it can lock
exclusively, so it never deletes an input under a reader, and a reader never needs a claim file of
its own.

Checking a step never re-hashes its outputs (training checkpoints are gigabytes): the manifest
records each output's size, and "done" means the manifest is complete and every output exists with
that size. The step *key* is what guarantees content: a finished step's inputs can never change
under it, since changed inputs make a different key.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from atomicio import FileLock, atomic_write_json, publish_directory

MANIFEST = "manifest.json"
WORK_PREFIX = ".work-"  # steps/<kind>/.work-<key>: a step still being written (or killed mid-way)


class Manifest(BaseModel):
    """What a finished step was: enough to audit it without re-running it (lm-eval-style provenance)."""

    kind: str
    key: str
    label: str
    code_version: str
    params: dict[str, Any]
    inputs: dict[str, str]  # input step label -> full key
    outputs: dict[str, int]  # path relative to the step directory -> size in bytes
    summary: dict[str, Any] = {}
    seconds: float = 0.0
    finished_at: float


class StepClaim(FileLock):
    """A process-death-safe claim on one step (see the module docstring): exclusive for the writer
    and for gc, shared for readers of a finished step."""

    def acquire(self, block: bool = True) -> bool:
        if not super().acquire(block):
            return False
        if not self.shared:  # who holds it, for a human looking at a stuck run (readers leave it alone)
            os.ftruncate(self.fd, 0)
            os.write(self.fd, f"{socket.gethostname()} {os.getpid()}\n".encode())
        return True


class ArtifactStore:
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir

    def step_dir(self, kind: str, key: str) -> Path:
        return self.run_dir / "steps" / kind / key

    def work_dir(self, kind: str, key: str) -> Path:
        """Where a step writes until it is done; kept across kills so a re-run resumes in it."""
        return self.run_dir / "steps" / kind / f"{WORK_PREFIX}{key}"

    def manifest(self, kind: str, key: str) -> Manifest | None:
        """The step's manifest if the step is done, else None (no output is re-hashed)."""
        folder = self.step_dir(kind, key)
        path = folder / MANIFEST
        try:
            m = Manifest.model_validate(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, ValidationError):
            return None
        if m.key != key or m.kind != kind:
            return None
        for rel, size in m.outputs.items():
            try:
                if (folder / rel).stat().st_size != size:
                    return None
            except OSError:
                return None
        return m

    def is_done(self, kind: str, key: str) -> bool:
        return self.manifest(kind, key) is not None

    def lock_path(self, kind: str, key: str) -> Path:
        return self.run_dir / "steps" / kind / f".{key}.lock"

    @contextmanager
    def claim_if_free(self, kind: str, key: str) -> Iterator[bool]:
        """Hold the step's lock if nobody does now (yields True), else yield False without waiting."""
        claim = StepClaim(self.lock_path(kind, key))
        held = claim.acquire(block=False)
        try:
            yield held
        finally:
            claim.release()

    @contextmanager
    def claim(self, kind: str, key: str, on_wait: Any = None) -> Iterator[None]:
        """Hold the step's lock; ``on_wait()`` is called once if another process holds it now."""
        claim = StepClaim(self.lock_path(kind, key))
        if not claim.acquire(block=False):
            if on_wait is not None:
                on_wait()
            claim.acquire(block=True)
        try:
            yield
        finally:
            claim.release()

    @contextmanager
    def reading(self, steps: list[tuple[str, str]]) -> Iterator[None]:
        """Hold a shared claim on each finished input ``(kind, key)`` while the caller reads it.

        Blocks while a writer or gc holds the step exclusively: gc renames a step away under its
        exclusive claim, so after waiting the reader must check that the step is still done (the
        executor does, through :meth:`manifest`).
        """
        claims = []
        try:
            for kind, key in steps:
                claim = StepClaim(self.lock_path(kind, key), shared=True)
                claim.acquire(block=True)
                claims.append(claim)
            yield
        finally:
            for claim in claims:
                claim.release()

    def commit(self, kind: str, key: str, *, label: str, code_version: str, params: dict[str, Any],
               inputs: dict[str, str], summary: dict[str, Any], seconds: float) -> Manifest:
        """Write the manifest into the work directory, then rename the directory into place.

        The caller holds the claim, so nobody else is renaming this key; an existing final
        directory (a damaged one whose outputs no longer match) is replaced as a whole.
        """
        work = self.work_dir(kind, key)
        outputs = {p.relative_to(work).as_posix(): p.stat().st_size for p in sorted(work.rglob("*"))
                   if p.is_file() and p.name != MANIFEST}
        m = Manifest(kind=kind, key=key, label=label, code_version=code_version, params=params, inputs=inputs,
                     outputs=outputs, summary=summary, seconds=round(seconds, 3), finished_at=time.time())
        atomic_write_json(work / MANIFEST, json.loads(m.model_dump_json()))
        publish_directory(work, self.step_dir(kind, key))
        return m

    def fresh_work_dir(self, kind: str, key: str) -> Path:
        """An empty work directory, for steps that cannot resume (evaluation: its cache is elsewhere)."""
        work = self.work_dir(kind, key)
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        return work
