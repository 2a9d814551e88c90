"""Run ``trainers.train.train`` on a YAML config in its own process (plain, torchrun or DeepSpeed).

``python -m tests.trainer_run CONFIG RESULT_JSON``: rank 0 writes the per-step losses, the step it
resumed from and, as ``RESULT_JSON.trainable.pt``, the engine's gathered trainable state at the end
of training (what export received), so tests can compare engines and process counts on numbers.
Training runs in a subprocess because DeepSpeed and torch.distributed set process-global state.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch

from trainers import train as train_mod
from trainers.config import load_train_config
from trainers.loss import world

_captured: dict[str, dict[str, torch.Tensor]] = {}


def _capturing(cls: Any) -> None:
    original = cls.trainable_state

    def trainable_state(self: Any) -> dict[str, torch.Tensor]:
        state = original(self)
        _captured["state"] = state
        return state

    cls.trainable_state = trainable_state


def main(config_path: str, result_path: str) -> None:
    _capturing(train_mod.PlainEngine)
    _capturing(train_mod.DeepSpeedEngine)
    torch.set_num_threads(1)
    result = train_mod.train(load_train_config(config_path), config_path=Path(config_path), progress=True)
    rank, size = world()
    if rank == 0:
        torch.save(_captured["state"], result_path + ".trainable.pt")
        Path(result_path).write_text(json.dumps({"losses": result.losses, "resumed_from": result.resumed_from,
                                                 "steps": result.steps, "processes": size,
                                                 "seconds": result.seconds}), encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
