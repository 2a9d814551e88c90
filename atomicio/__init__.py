"""Atomic file writes shared by every package (harness, generators, leaderboards, trainers): a reader sees the old file or the whole new one, never a half.

A killed run (kill -9, OOM, pre-emption) must leave no partial result behind, so every file the
harness writes goes to a temporary name in the same directory and is renamed into place; rename
is atomic on POSIX within one filesystem.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a fsynced temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def strict_json_value(value: Any) -> Any:
    """Replace NaN/inf by None recursively: mteb can produce NaN, which is not valid JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): strict_json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json_value(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return strict_json_value(value.item())
    return value


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write strict JSON (``allow_nan=False``) atomically."""
    text = json.dumps(strict_json_value(obj), indent=2, ensure_ascii=False, allow_nan=False, sort_keys=False)
    atomic_write_text(path, text + "\n")


def remove_stale_temporaries(directory: Path) -> int:
    """Delete ``.*.tmp`` leftovers of writers killed mid-write; returns how many were removed."""
    removed = 0
    if not directory.exists():
        return 0
    for tmp in directory.rglob(".*.tmp"):
        try:
            tmp.unlink()
            removed += 1
        except OSError:
            pass
    return removed
