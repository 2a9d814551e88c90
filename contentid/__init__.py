"""Content fingerprints of files and directories (models, data, generation inputs): every byte, hashed once.

A top-level package because every part keys by content: the harness (step keys, model identity),
the trainer (its config identity, the dense copy of a GGUF base) and the generators (contamination
sources, a local generator model). Like ``atomicio`` it imports no project package.

Training produces many near-identical checkpoints, so sampling a file (its ends and a few strides)
is not an identity: two checkpoints that differ elsewhere would share a cache key and the cache
would serve the old model's vectors. Every byte of every file is hashed, custom code (``*.py``)
included because ``trust_remote_code`` models run it. The cost is paid once: a file's digest is
memoised per process and on disk, keyed by (absolute path, size, mtime in ns, inode), so a 14 GB
model is read once per change, not once per run. A rewrite in place changes mtime (and usually
size), which invalidates the memo.

The disk memo is one SQLite file (``HARNESS_FINGERPRINT_MEMO``, else
``$HARNESS_CACHE_DIR/fingerprints.sqlite``, else ``~/.cache/harness/fingerprints.sqlite``); it is
only an accelerator: if it cannot be opened the digest is computed and not remembered.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
from pathlib import Path

logger = logging.getLogger(__name__)

_MEMO: dict[tuple[str, int, int, int], str] = {}
_LOCK = threading.Lock()
_SCHEMA = "CREATE TABLE IF NOT EXISTS digests (path TEXT, size INTEGER, mtime_ns INTEGER, inode INTEGER, sha256 TEXT, PRIMARY KEY (path, size, mtime_ns, inode))"


def memo_path() -> Path:
    """Where the on-disk digest memo lives (see the module docstring)."""
    explicit = os.environ.get("HARNESS_FINGERPRINT_MEMO")
    if explicit:
        return Path(explicit).expanduser()
    cache_dir = os.environ.get("HARNESS_CACHE_DIR")
    base = Path(cache_dir).expanduser() if cache_dir else Path.home() / ".cache" / "harness"
    return base / "fingerprints.sqlite"


_CONNECTIONS: dict[Path, sqlite3.Connection | None] = {}


def _disk_memo() -> sqlite3.Connection | None:
    """One connection per memo file per process (opened on first use; None if unusable)."""
    path = memo_path()
    with _LOCK:
        if path in _CONNECTIONS:
            return _CONNECTIONS[path]
        conn: sqlite3.Connection | None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            logger.warning("fingerprint memo %s unusable (%s); hashing without it", path, exc)
            conn = None
        _CONNECTIONS[path] = conn
        return conn


def clear_process_memo() -> None:
    """Forget per-process digests and memo connections: what a new process starts with (benchmarks, tests)."""
    with _LOCK:
        _MEMO.clear()
        for conn in _CONNECTIONS.values():
            if conn is not None:
                conn.close()
        _CONNECTIONS.clear()


def file_digest(path: Path) -> str:
    """sha256 of every byte of ``path``, memoised by (path, size, mtime_ns, inode)."""
    path = Path(path).resolve()
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
    with _LOCK:
        hit = _MEMO.get(key)
    if hit is not None:
        return hit
    conn = _disk_memo()
    if conn is not None:
        try:
            with _LOCK:
                row = conn.execute("SELECT sha256 FROM digests WHERE path=? AND size=? AND mtime_ns=? AND inode=?", key).fetchone()
        except sqlite3.Error:
            row = None
        if row is not None:
            with _LOCK:
                _MEMO[key] = row[0]
            return str(row[0])
    with path.open("rb") as fh:
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
    if path.stat().st_mtime_ns != st.st_mtime_ns:  # written while we read: do not remember
        return digest
    with _LOCK:
        _MEMO[key] = digest
        if conn is not None:
            try:
                conn.execute("INSERT OR REPLACE INTO digests VALUES (?,?,?,?,?)", (*key, digest))
            except sqlite3.Error as exc:
                logger.warning("fingerprint memo: could not record %s (%s)", path, exc)
    return digest


def _included(rel: str) -> bool:
    """Everything that can change a vector: weights, configs, tokenizer, custom code.

    Left out: dot-paths (VCS metadata, hub download bookkeeping) and Python bytecode caches.
    """
    parts = rel.split("/")
    return not any(p.startswith(".") or p == "__pycache__" for p in parts) and not rel.endswith(".pyc")


def directory_fingerprint(root: Path, exclude: frozenset[str] = frozenset()) -> str:
    """A hash over the relative path and full content digest of every included file below ``root``.

    ``exclude`` names relative paths to leave out (the other GGUF quantizations of a folder).
    """
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if not _included(rel) or rel in exclude:
            continue
        h.update(f"{rel}\0{file_digest(path)}\n".encode())
    return h.hexdigest()


def content_fingerprint(path: str) -> str:
    """Fingerprint of a model directory (every included file) or of a single file."""
    p = Path(path)
    return directory_fingerprint(p) if p.is_dir() else file_digest(p)
