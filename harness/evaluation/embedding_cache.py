"""One embedding cache for every task, split, subset, cell and run.

mteb's own cache is per task and keyed by text alone, so the same corpus is re-encoded for every
instruction, split and language, and a retrained model could read a stale vector. Here a vector
is keyed by ``sha256(model fingerprint, exact prefix, text)``: the fingerprint changes whenever
weights, pooling, normalisation, max length, dtype or tokenizer special-token settings change,
and the prefix is the exact instruction text, so a hit is always the vector the model would
compute now.

Storage is one SQLite file (WAL mode): each batch is one transaction, so a kill -9 leaves either
the whole batch or none of it, and several processes may share the file. Each row carries a
digest of its bytes; a row whose digest or length does not match is treated as a miss, deleted
and recomputed, never returned as vectors.

:class:`CacheWriter` takes the writes off the encoder's critical path: one background thread
commits each batch while the model computes the next, and its ``close`` waits for every write (and
raises the first failure), so what the caller returns has been stored.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS vectors (
    key BLOB PRIMARY KEY,
    dim INTEGER NOT NULL,
    data BLOB NOT NULL,
    digest BLOB NOT NULL
) WITHOUT ROWID;
"""
_CHUNK = 500  # SQLite's default limit on host parameters is far above this


def cache_key(fingerprint: str, prefix: str, text: str) -> bytes:
    h = hashlib.sha256()
    for part in (fingerprint, prefix, text):
        data = part.encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))  # length-prefixed: no ambiguity between parts
        h.update(data)
    return h.digest()


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


class EmbeddingCache:
    """A persistent map ``(fingerprint, prefix, text) -> float32 vector``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.damaged = 0
        self._conn = self._connect()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=60, check_same_thread=False, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_SCHEMA)
            conn.execute("SELECT count(*) FROM vectors LIMIT 1").fetchone()
        except sqlite3.DatabaseError as exc:
            conn.close()
            broken = self.path.with_name(f"{self.path.name}.damaged-{int(time.time())}")
            logger.warning("embedding cache %s is unreadable (%s); moved to %s and starting empty", self.path, exc, broken)
            self.path.rename(broken)
            for side in ("-wal", "-shm"):
                Path(f"{self.path}{side}").unlink(missing_ok=True)
            return self._connect()
        return conn

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def get_many(self, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        """Vectors for the keys that are present and intact; damaged rows are dropped."""
        found: dict[bytes, np.ndarray] = {}
        bad: list[bytes] = []
        with self._lock:
            for start in range(0, len(keys), _CHUNK):
                chunk = list(keys[start : start + _CHUNK])
                marks = ",".join("?" * len(chunk))
                for key, dim, data, digest in self._conn.execute(
                    f"SELECT key, dim, data, digest FROM vectors WHERE key IN ({marks})", chunk
                ):
                    if dim <= 0 or len(data) != dim * 4 or _digest(data) != digest:
                        bad.append(key)
                        continue
                    found[key] = np.frombuffer(data, dtype=np.float32)
            if bad:
                self.damaged += len(bad)
                logger.warning("embedding cache: %d damaged entries will be recomputed", len(bad))
                self._conn.execute("BEGIN")
                self._conn.executemany("DELETE FROM vectors WHERE key = ?", [(k,) for k in bad])
                self._conn.execute("COMMIT")
        self.hits += len(found)
        self.misses += len(set(keys)) - len(found)
        return found

    def put_many(self, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        """Store one batch in one transaction (all or nothing)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if len(keys) != len(vectors):
            raise ValueError("keys and vectors differ in length")
        rows = []
        for key, vec in zip(keys, vectors):
            data = vec.tobytes()
            rows.append((key, int(vec.shape[0]), data, _digest(data)))
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany("INSERT OR REPLACE INTO vectors(key, dim, data, digest) VALUES (?,?,?,?)", rows)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM vectors").fetchone()[0])


class CacheWriter:
    """``put_many`` from one background thread, at most ``depth`` batches in flight.

    Order is kept (one thread), memory is bounded (``put`` waits for the oldest write beyond
    ``depth``), a failed write is raised by the next ``put`` or by ``close``, and leaving the
    ``with`` block, normally or by an exception, waits for every queued write: nothing computed is
    dropped on the way out.
    """

    def __init__(self, cache: EmbeddingCache, depth: int = 2) -> None:
        self.cache = cache
        self.depth = max(1, depth)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedding-cache-writer")
        self._pending: deque[Future[None]] = deque()

    def put(self, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        """Queue one batch (queued before an earlier failure is raised: nothing computed is dropped)."""
        self._pending.append(self._pool.submit(self.cache.put_many, list(keys), np.array(vectors, dtype=np.float32)))
        while len(self._pending) > self.depth:
            self._pending.popleft().result()

    def close(self) -> None:
        """Wait for every queued write; the first failure is raised after all have been tried."""
        first: BaseException | None = None
        while self._pending:
            try:
                self._pending.popleft().result()
            except BaseException as exc:  # noqa: BLE001 - re-raised below, once the rest are stored
                first = first or exc
        self._pool.shutdown(wait=True)
        if first is not None:
            raise first

    def __enter__(self) -> "CacheWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
