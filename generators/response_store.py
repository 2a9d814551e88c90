"""Completed calls on disk, keyed by the sha256 of the exact request, so no call is paid for twice.

SQLite in WAL mode: every completed call is one committed INSERT, which is atomic, so a job killed
with SIGKILL loses at most the calls still in flight and a re-run answers every stored request from
here. Only what determines the answer is stored (model, messages, parameters, seed, schema) plus the
answer, token usage and cost; endpoints and API keys never reach this file.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path

from generators.backends.base import CallOutcome

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    request TEXT NOT NULL,
    response TEXT NOT NULL,
    finish_reason TEXT,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cost_usd REAL,
    latency_s REAL,
    attempts INTEGER,
    batch INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
"""


@dataclass(frozen=True)
class StoredCall:
    key: str
    model: str
    response: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None


class ResponseStore:
    """A file of completed calls; open it once per job, in one thread."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def get(self, key: str) -> StoredCall | None:
        row = self._db.execute(
            "SELECT key, model, response, finish_reason, prompt_tokens, completion_tokens, cost_usd"
            " FROM calls WHERE key = ?",
            (key,),
        ).fetchone()
        return StoredCall(*row) if row else None

    def put(self, outcome: CallOutcome, cost_usd: float | None) -> bool:
        """Record a completed call; returns False if the key was already stored (first answer wins)."""
        req = outcome.request
        cur = self._db.execute(
            "INSERT OR IGNORE INTO calls (key, model, request, response, finish_reason, prompt_tokens,"
            " completion_tokens, cost_usd, latency_s, attempts, batch, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                req.key, req.model,
                json.dumps(req.canonical(), sort_keys=True, ensure_ascii=False),
                outcome.text, outcome.finish_reason, outcome.prompt_tokens, outcome.completion_tokens,
                cost_usd, outcome.latency_s, outcome.attempts, int(outcome.batch), time.time(),
            ),
        )
        return cur.rowcount == 1

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM calls").fetchone()[0])

    def keys(self) -> Iterator[str]:
        for (k,) in self._db.execute("SELECT key FROM calls"):
            yield k

    def journal(self) -> "StoreJournal":
        """A small persistent key/value map for backend state (e.g. a submitted batch id)."""
        return StoreJournal(self._db)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "ResponseStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StoreJournal(MutableMapping[str, str]):
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __getitem__(self, k: str) -> str:
        row = self._db.execute("SELECT v FROM meta WHERE k = ?", (k,)).fetchone()
        if row is None:
            raise KeyError(k)
        return row[0]

    def __setitem__(self, k: str, v: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)", (k, v))

    def __delitem__(self, k: str) -> None:
        self._db.execute("DELETE FROM meta WHERE k = ?", (k,))

    def __iter__(self) -> Iterator[str]:
        return iter([k for (k,) in self._db.execute("SELECT k FROM meta")])

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM meta").fetchone()[0])
