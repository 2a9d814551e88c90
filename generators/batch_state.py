"""Batch-API jobs a generation job has submitted: transport state, kept beside the job's output.

A submitted batch is paid for once it runs, so a job killed while waiting must re-attach to it
rather than submit again: its id is written here the moment it is known. This is not cache: it says
nothing about answers (those go to the response cache when the batch's results are read), only
which remote job to poll, so it lives in the job's own output folder, not in the shared cache.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, MutableMapping
from pathlib import Path

from atomicio import atomic_write_json

BATCH_STATE_FILE = "batch_jobs.json"


class BatchState(MutableMapping[str, str]):
    """A small persistent map (batch job name -> remote batch id), rewritten atomically on each change."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._data: dict[str, str] = {}
        if self.path.is_file():
            try:
                loaded = json.loads(self.path.read_text(encoding="utf-8"))
                self._data = {str(k): str(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}
            except (OSError, ValueError):
                self._data = {}  # unreadable: at worst a batch is submitted again

    def _save(self) -> None:
        atomic_write_json(self.path, self._data)

    def __getitem__(self, k: str) -> str:
        return self._data[k]

    def __setitem__(self, k: str, v: str) -> None:
        self._data[k] = v
        self._save()

    def __delitem__(self, k: str) -> None:
        del self._data[k]
        self._save()

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._data))

    def __len__(self) -> int:
        return len(self._data)
