"""Embedders for the device-pool tests, in a module of their own so that a spawned worker can import them.

Each vector is ``[len(prefix + text), worker pid]``: the first column proves that a chunk's vectors
came back under the right index, the second which worker encoded it.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np


class FakeEmbedder:
    name = "fake"
    similarity = "cosine"

    def __init__(self, device: str, *, fail_on: str | None = None, exit_on: str | None = None,
                 fingerprint_per_device: bool = False) -> None:
        self.device = device
        self.fail_on, self.exit_on = fail_on, exit_on
        self.fingerprint = f"fake-{device}" if fingerprint_per_device else "fake"

    def embed(self, texts: list[str], prefix: str = "") -> np.ndarray:
        if self.exit_on is not None and self.exit_on in texts:
            os._exit(3)  # a worker that dies without a word (as one killed for memory does)
        if self.fail_on is not None and self.fail_on in texts:
            raise ValueError(f"cannot encode {self.fail_on!r}")
        return np.array([[len(prefix + t), os.getpid()] for t in texts], dtype=np.float32).reshape(len(texts), 2)

    def describe(self) -> dict[str, Any]:
        return {"backend": "fake"}


def load_fake(device: str, **options: Any) -> FakeEmbedder:
    return FakeEmbedder(device, **options)


def load_nothing(device: str) -> FakeEmbedder:
    raise OSError(f"no weights for {device}")
