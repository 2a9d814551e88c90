"""Train steps: ``trainers.train`` on a matrix model's ``train:`` entry (base x mixture x recipe).

The step key hashes the recipe (every field that changes the weights), the base model's content
identity (or, for a trained base, its train step's key), the mixture with each local source's
content fingerprint, and the keys of the generate steps it reads. Paths are not in the key — moving
a folder does not retrain; changing a byte in it does.

The trainer works in the step's work directory, which survives a kill: its checkpoints make a
re-run resume from the last one. When it finishes, the checkpoints (gigabytes for a 7B model, and
useless once the model is exported) are deleted before the directory is renamed into place.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from harness.errors import InputError
from harness.steps.base import Step

CODE_VERSION = "1"
MODEL = "model"  # the exported sentence-transformers directory inside the step directory
# Recipe fields that are the matrix's to set (base, data) or that do not change the weights.
NOT_RECIPE = {"base_model", "gguf_file", "revision", "data", "output", "name", "log_every", "device"}


@dataclass
class TrainPayload:
    """What the runner needs: the config (paths still relative to the matrix file) and where inputs land."""

    name: str
    matrix_path: Path
    recipe: dict[str, Any]
    base: str  # a model reference, or "" when the base is another train step's output
    gguf_file: str | None
    data: dict[str, Any]  # a trainer DataSpec, with ``generated`` sources still naming their step
    generated: dict[str, Step]  # generate name -> step
    base_step: Step | None
    revision: str | None = None  # a hub base's resolved commit: the trainer loads exactly what the key names


def model_path(step_dir: Path) -> Path:
    return step_dir / MODEL


def build_config(payload: TrainPayload, step_dir_of: Any, *, validate_only: bool = False) -> Any:
    """The trainer's config for this step. ``step_dir_of(step)`` locates a finished input step."""
    from trainers.config import TrainConfig

    sources = None
    if payload.data.get("sources") is not None:
        sources = []
        for src in payload.data["sources"]:
            if src.get("kind") == "generated":
                from harness.steps.generate import examples_path

                gen = payload.generated[src["generate"]]
                path = "<generated>" if validate_only else str(examples_path(step_dir_of(gen)))
                src = {k: v for k, v in src.items() if k != "generate"} | {"kind": "synthetic", "path": path}
            sources.append(src)
    data = {**payload.data, **({"sources": sources} if sources is not None else {})}
    if payload.base_step is not None:
        base = "<trained>" if validate_only else str(model_path(step_dir_of(payload.base_step)))
    else:
        base = payload.base
    revision = payload.revision if payload.base_step is None else None
    return TrainConfig.model_validate({**payload.recipe, "base_model": base, "gguf_file": payload.gguf_file,
                                       "revision": revision, "data": data, "name": payload.name})


def recipe_error(matrix: Path, field: str, exc: ValidationError) -> InputError:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        from trainers.config import TrainConfig
        import difflib

        close = difflib.get_close_matches(str(err["loc"][-1]), [f for f in TrainConfig.model_fields if f not in NOT_RECIPE], n=1)
        return InputError(matrix, f"{field}.{loc}", "unknown field", f"rename it to {close[0]!r}" if close else
                          "remove it (see docs/training.md for the recipe fields)")
    return InputError(matrix, f"{field}.{loc}" if loc else field, err["msg"], "see docs/training.md for the config reference")


def run_train(step: Step, work: Path, step_dir_of: Any, *, progress: bool, provenance: dict[str, Any],
              cache_dir: Path | None = None) -> dict[str, Any]:
    from trainers.checkpoints import discard_checkpoints
    from trainers.train import prepare, train

    payload: TrainPayload = step.payload
    cfg = build_config(payload, step_dir_of)
    start = time.monotonic()
    prepared = prepare(cfg, config_path=payload.matrix_path, output=work, cache_dir=cache_dir)
    result = train(cfg, config_path=payload.matrix_path, prepared=prepared,
                   provenance={**provenance, "train_step_key": step.key}, progress=progress)
    discard_checkpoints(work)  # whole or absent: a kill here costs no training step (the export says done)
    return {"steps": result.steps, "final_loss": result.losses[-1] if result.losses else None,
            "resumed_from": result.resumed_from, "model": MODEL, "seconds": round(time.monotonic() - start, 3)}
