"""Content fingerprints of model directories.

Hashing every byte of a 14 GB checkpoint on each run would cost minutes, so weight files are
identified by name, size and a hash of their first and last MiB plus a strided sample; config and
tokenizer files (small, and where special-token behaviour lives) are hashed whole.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".onnx", ".h5", ".msgpack")
_SAMPLE = 1 << 20


def _weight_digest(path: Path) -> str:
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with path.open("rb") as fh:
        if size <= 8 * _SAMPLE:
            h.update(fh.read())
        else:
            for offset in [0, *(size * i // 8 for i in range(1, 8)), size - _SAMPLE]:
                fh.seek(offset)
                h.update(fh.read(_SAMPLE))
    return h.hexdigest()


def directory_fingerprint(root: Path) -> str:
    """A hash over every file below ``root`` (weights sampled, everything else whole)."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(".") or rel.endswith((".md", ".py", ".pyc")):
            continue
        digest = _weight_digest(path) if path.name.endswith(_WEIGHT_SUFFIXES) else hashlib.sha256(path.read_bytes()).hexdigest()
        h.update(f"{rel}\0{digest}\n".encode())
    return h.hexdigest()


def file_fingerprint(path: Path) -> str:
    return _weight_digest(path)


@lru_cache(maxsize=64)
def content_fingerprint(path: str) -> str:
    """Fingerprint of a model directory or file, computed once per process.

    The planner (step keys) and the embedders (cache keys) both need it; weights do not change
    under a running ``harness run``, so hashing them twice would only cost start-up time.
    """
    p = Path(path)
    return directory_fingerprint(p) if p.is_dir() else file_fingerprint(p)
