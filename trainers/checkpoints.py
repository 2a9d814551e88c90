"""Checkpoints of a training: written whole or not at all, deleted whole or not at all.

A checkpoint directory (``checkpoints/step-NNNNNN/``: the engine's state, one RNG file per rank,
``complete.json``) is assembled as ``.tmp-step-NNNNNN`` and renamed when complete, so under its
readable name it is always whole. Deleting one is the mirror image: it is renamed aside first
(``atomicio.discard``), then removed, so a kill during a deletion leaves a whole checkpoint or none
under the readable name, and only a ``.*.discard-*`` leftover that the next start removes.

``discard_checkpoints`` is what a caller runs once the model is exported (the harness, before it
commits a train step): the export alone tells a re-run that the training is done (``train`` checks
its ``training.json``), so a kill at any point around the deletion costs no training step.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from atomicio import atomic_write_json, discard, publish_directory
from atomicio import remove_stale_temporaries as remove_stale_files
from trainers.engine import rng_state, set_rng_state
from trainers.export import MODEL_DIR
from trainers.loss import world

CHECKPOINTS = "checkpoints"
KEEP = 2  # the newest checkpoints kept while training


def checkpoints(output: Path) -> list[tuple[int, Path]]:
    """(step, directory) of every complete checkpoint, oldest first."""
    root = output / CHECKPOINTS
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        if p.is_dir() and p.name.startswith("step-") and (p / "complete.json").is_file():
            found.append((int(p.name.split("-")[1]), p))
    return sorted(found)


def _aside(path: Path) -> Path:
    return path.parent / f".{path.name}.discard-{os.getpid()}"


def rng_file(directory: Path, rank: int) -> Path:
    return directory / f"rng-rank{rank:03d}.pt"


def save_checkpoint(engine: Any, output: Path, step: int, client: dict[str, Any]) -> None:
    """Engine state plus one RNG file per rank, in a temporary directory renamed once complete.

    The RNG state is per rank because each rank draws its own dropout masks (its local batch has
    its own shapes): restoring rank 0's generators on every rank would change the masks of the
    other ranks after a resume.
    """
    rank, size = world()
    root = output / CHECKPOINTS
    tmp = root / f".tmp-step-{step:06d}"
    final = root / f"step-{step:06d}"
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    if size > 1:
        dist.barrier()
    engine.save(tmp, client)
    torch.save(rng_state(), rng_file(tmp, rank))
    if size > 1:
        dist.barrier()
    if rank == 0:
        atomic_write_json(tmp / "complete.json", {"step": step})
        publish_directory(tmp, final)
        for _, old in checkpoints(output)[:-KEEP]:
            discard(old, _aside(old))
    if size > 1:
        dist.barrier()


def load_rng(directory: Path, rank: int) -> None:
    """This rank's generators from the checkpoint (rank 0's if the run had fewer processes)."""
    path = rng_file(directory, rank)
    if not path.is_file():
        path = rng_file(directory, 0)
    set_rng_state(torch.load(path, map_location="cpu", weights_only=False))


def discard_checkpoints(output: Path) -> bool:
    """Delete every checkpoint of a finished training (after its export); True if there were any.

    The whole ``checkpoints/`` directory is renamed aside in one step, then removed: no checkpoint
    is ever half-deleted under its readable name, and a kill mid-way leaves only the aside copy.
    """
    root = Path(output) / CHECKPOINTS
    if not root.exists():
        return False
    discard(root, _aside(root))
    return True


def remove_abandoned(output: Path) -> list[Path]:
    """Delete what a killed run leaves: half-written checkpoints and exports, half-deleted ones, files.

    All are written under temporary names and renamed when complete (checkpoints ``.tmp-step-*``,
    the export ``.model.tmp-*`` and the export it replaced ``.model.old-*``, single
    files ``.NAME.*.tmp`` from atomicio), and deletions rename aside first (``.NAME.discard-*``), so
    anything still under such a name was abandoned mid-way; one training owns an output directory,
    so nothing else writes there. Returns the paths removed.
    """
    stale = [*(output / CHECKPOINTS).glob(".tmp-step-*"), *(output / CHECKPOINTS).glob(".*.discard-*"),
             *output.glob(".*.discard-*"), *output.glob(f".{MODEL_DIR}.tmp-*"), *output.glob(f".{MODEL_DIR}.old-*")]
    for path in stale:
        discard(path, path)
    remove_stale_files(output)
    return stale
