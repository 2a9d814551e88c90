"""Atomic file writes shared by every package (harness, generators, leaderboards, trainers): a reader sees the old file or the whole new one, never a half.

A killed run (kill -9, OOM, pre-emption) must leave no partial result behind, so every file the
harness writes goes to a temporary name in the same directory and is renamed into place; rename
is atomic on POSIX within one filesystem.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a fsynced temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # The writer's pid is in the name so that start-up cleanup can tell a dead writer's leftover
    # from a temporary another live run is writing right now (see remove_stale_temporaries).
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
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


_WRITER_PID = re.compile(r"\.(\d+)\.[A-Za-z0-9_]+\.tmp$")
LEGACY_TMP_AGE_S = 3600.0  # a temporary without a writer pid is stale once this old


def _writer_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temporaries(directory: Path) -> int:
    """Delete ``.*.tmp`` leftovers of writers killed mid-write; returns how many were removed.

    Only a dead writer's temporaries go: another run writing into the same folder right now keeps
    its own (its pid, in the name, is alive). A temporary without a pid (older writers) is removed
    once it is older than ``LEGACY_TMP_AGE_S``. Pids are per host: runs sharing a folder across
    machines would keep each other's leftovers, never delete live ones.
    """
    removed = 0
    if not directory.exists():
        return 0
    now = time.time()
    for tmp in directory.rglob(".*.tmp"):
        m = _WRITER_PID.search(tmp.name)
        try:
            if m is not None:
                if _writer_alive(int(m.group(1))):
                    continue
            elif now - tmp.stat().st_mtime < LEGACY_TMP_AGE_S:
                continue
            tmp.unlink()
            removed += 1
        except OSError:
            pass
    return removed
