"""The one step type: (kind, params, input steps), keyed by content before anything runs.

A step's key hashes its kind, its code version, its canonical params and its inputs' keys. So one
synthetic set feeds every model trained on it (same generate key), a trained model's identity is
its train step's key (known at plan time, long before the weights exist), and a changed setting
changes exactly the keys of the steps that depend on it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

GENERATE, TRAIN, EVALUATE = "generate", "train", "evaluate"
KINDS = (GENERATE, TRAIN, EVALUATE)


def canonical_hash(obj: Any) -> str:
    """sha256 of canonical JSON (sorted keys; ``str`` for paths): the hash every key is made of."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str, separators=(",", ":")).encode()).hexdigest()


@dataclass(eq=False)
class Step:
    kind: str
    label: str  # what the user reads: "train smollm2-synthetic", "evaluate minilm × SciFact"
    params: dict[str, Any]  # canonical: exactly what the key hashes
    inputs: list["Step"]
    code_version: str
    payload: Any = field(default=None, repr=False)  # what the kind's runner needs (not hashed)
    gpu: bool = False  # wants an accelerator (one per GPU step on a cluster)
    group: str | None = None  # steps of one group run together on one worker (evaluation: one loaded model)
    key: str = field(init=False)

    def __post_init__(self) -> None:
        self.key = canonical_hash({"kind": self.kind, "code": self.code_version, "params": self.params,
                                   "inputs": sorted(s.key for s in self.inputs)})

    @property
    def input_keys(self) -> dict[str, str]:
        return {s.label: s.key for s in self.inputs}
