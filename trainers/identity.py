"""The identity of a training: a hash of everything that determines the trained weights, by content.

An output folder holds one training; a re-run with the same identity resumes it (or finds it done),
and a different identity is refused. So the identity must follow the weights and nothing else:

- the base model's content (``BaseModel.content``: a local directory's files, a GGUF file's name
  and digest, a hub id at its commit) with the pooling, normalisation and instruction mode actually
  used (``pooling: auto`` and ``pooling: mean`` on a mean-pooling base are the same training);
- every data source by the content of the files it is read from (``trainers.data.content``), and the
  mining model's content when negatives are mined;
- the recipe fields that change the weights (``TrainConfig.recipe``).

Never a path, the output folder, the run's name, logging or checkpoint cadence, the device, or the
memory settings whose gradients are the plain full batch's (``trainers.config.EXECUTION``): moving a
folder, renaming a run or lowering ``mini_batch_size`` after an out-of-memory must resume, not retrain.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from trainers.backbone import BaseModel
from trainers.config import TrainConfig

VERSION = 2  # 1: the config as written, paths included (before content identities)


def uses_e5(config: TrainConfig, base: BaseModel) -> bool:
    """The E5 instruction template on queries: asked for, or ``auto`` on a decoder."""
    return config.instructions == "e5" or (config.instructions == "auto" and base.architecture == "decoder")


def _model(base: BaseModel) -> dict[str, Any]:
    return {"content": base.content, "pooling": base.pooling, "normalize": base.normalize, "architecture": base.architecture}


def frozen_dtype(config: TrainConfig) -> str:
    """The dtype the frozen base weights are held in while training.

    LoRA under bf16 never updates the base, and bf16 autocast runs every matmul in bf16 anyway, so
    fp32 copies of frozen weights only cost memory (28 GiB instead of 14 for a 7B base) and a cast of
    every weight in every forward, backward and recompute. Trainable parameters (LoRA, or all of a
    full fine-tune) stay fp32. Norm weights and the residual stream are then bf16 as well, which
    changes the numbers slightly: it is part of the identity (only where it applies, so fp32 and
    full fine-tune trainings keep theirs).
    """
    return "bfloat16" if config.precision == "bf16" and config.lora is not None else "float32"


def training_identity(config: TrainConfig, base: BaseModel, data: list[dict[str, Any]], miner: BaseModel | None,
                      dev: str | None = None) -> str:
    """sha256 over the recipe, the base and the data by content (see the module docstring).

    ``data`` is ``trainers.data.content.data_content``'s entries; ``miner`` the mining model when
    negatives are mined with a model other than the base (None otherwise). ``dev`` is the dev
    scorer's content identity; it counts only with ``select_best`` (then the exported weights are
    the best dev step's, so the dev task and ``eval_every`` decide them).
    """
    recipe = config.recipe() | {"instructions": "e5" if uses_e5(config, base) else "none"}
    blob = {"version": VERSION, "recipe": recipe, "base": _model(base), "data": data,
            "miner": _model(miner) if miner is not None else None}
    if config.select_best:
        blob["dev"] = {"every": config.eval_every, "scorer": dev}
    if frozen_dtype(config) != "float32":
        blob["frozen_dtype"] = frozen_dtype(config)
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode("utf-8")).hexdigest()
