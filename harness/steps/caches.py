"""The run-level caches beside the step store: content-keyed, shared by every step and every node.

A step's own output lives in its step directory; what several steps (and several runs) can share
lives here, keyed by content so that sharing can never serve the wrong thing:

| cache | keyed by | default location | written by | may be deleted? |
|---|---|---|---|---|
| LLM responses | the exact request (model identity, messages, sampling, seed, schema, response form) | ``<run>/cache/llm/`` | generate steps | only if you accept paying again for every call |
| dense GGUF copies | the GGUF file's bytes | ``<run>/cache/dense/`` | train steps (and evaluation, to rebuild one) | yes: rebuilt from the GGUF on demand |
| embeddings | model fingerprint + prompt + text | ``<run>/cache/embeddings.sqlite`` | evaluate steps | yes: re-encoded on demand |

Everything lives under the run folder by default, so every executor node that sees the run folder
sees the caches, and moving the run folder moves them with it; nothing a step needs lives under
``~/``. Two are worth sharing across run folders and may be placed elsewhere: the LLM response
cache (``llm_cache:`` in the matrix or ``HARNESS_LLM_CACHE``: a user-level cache makes a call paid
in one project free in the next) and the embedding cache (``cache_dir:`` or ``HARNESS_CACHE_DIR``).
The environment variable wins over the matrix, as for every harness setting.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from harness.schema import LoadedMatrix

CACHE = "cache"
EMBEDDINGS_FILE = "embeddings.sqlite"


@dataclass(frozen=True)
class RunCaches:
    root: Path  # <run>/cache: the dense GGUF copies live in root/dense (the trainer's cache_dir)
    llm: Path  # the LLM response cache directory
    embeddings: Path  # the embedding cache file

    @property
    def dense(self) -> Path:
        """What the trainer and the export loader take as ``cache_dir`` (they add ``dense/``)."""
        return self.root


def run_caches(output: Path, loaded: LoadedMatrix | None) -> RunCaches:
    """Where a run's caches are (see the module docstring for the order of precedence)."""
    root = output / CACHE
    llm_env = os.environ.get("HARNESS_LLM_CACHE")
    matrix = loaded.matrix if loaded is not None else None
    if llm_env:
        llm = Path(llm_env).expanduser()
    elif matrix is not None and matrix.llm_cache is not None:
        llm = loaded.resolve(matrix.llm_cache)  # type: ignore[union-attr]
    else:
        llm = root / "llm"
    emb_env = os.environ.get("HARNESS_CACHE_DIR")
    if emb_env:
        embeddings = Path(emb_env).expanduser() / EMBEDDINGS_FILE
    elif matrix is not None and matrix.cache_dir is not None:
        embeddings = loaded.resolve(matrix.cache_dir) / EMBEDDINGS_FILE  # type: ignore[union-attr]
    else:
        embeddings = root / EMBEDDINGS_FILE
    return RunCaches(root=root, llm=llm, embeddings=embeddings)
