"""The run-level LLM response cache: one small file per answered request, keyed by the request's content.

A paid call must never be paid for again, whatever else changes (a concurrency, a timeout, a moved
folder, another step that happens to make the same request), so answers are not kept per step but
here, keyed by ``ChatRequest.key``: the sha256 of what determines the answer (model identity,
messages, sampling, seed, schema, response form) and nothing else; endpoints and API keys never
reach this folder. Every step and every node that sees the folder shares it.

Layout: ``<root>/<key[:2]>/<key>.json``, each file holding the canonical request, the answer, its
finish reason, token usage and cost. Why files and not SQLite: the Ray executor runs steps on other
hosts that see the run folder over a network filesystem, where SQLite's locking (WAL needs shared
memory on one host) is not safe. A file is published by ``atomicio.atomic_create_bytes``: written
to a temporary in ``<root>/.staging/<host>/`` and hard-linked into place, so a reader sees a whole
entry or none, and the first writer of a key wins (a second writer's answer is dropped and the
first one is returned to it, so two jobs that raced on one request both use the same answer). A job
killed with SIGKILL loses only the calls still in flight; a stale temporary of a dead writer on this
host is removed when a cache is opened.

Durability: rename/link alone survives a killed process (the kernel has the bytes); only a host
crash before writeback can lose an entry, and then the call is paid again, not served wrong: an
entry that does not parse or names another key reads as absent and is replaced. Entries are not
fsynced by default: ``benchmarks/bench_generate_throughput.py`` measured the cost (docs/generators.md).

Claims: before a request is sent, its key is claimed (:meth:`ResponseCache.claim`: an exclusive
``flock`` on ``<root>/<key[:2]>/.<key>.lock``, held until the answer is stored) and the key is looked
up again, so two jobs (threads, processes, hosts) that want the same request at once pay for it once:
the second waits for the first and reads its answer. Each key has its own lock, so different
requests never wait for each other; a claim is taken when the call is made, not when the job
starts, so a job holds at most as many as it has calls in flight. The kernel drops a dead job's
claims. A key's lock file is removed once its answer is stored (:meth:`ResponseCache.release`), so
the folder keeps one file per answer; only a failed request's stays (empty) for its next try.

Deleting the folder is always safe and always costs money: every answer in it is paid for again.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from atomicio import FileLock, atomic_create_bytes, discard, remove_stale_temporaries
from generators.backends.base import CallOutcome

log = logging.getLogger(__name__)

FORMAT = 1
STAGING = ".staging"


@dataclass(frozen=True)
class CachedResponse:
    """One answered request as the cache holds it."""

    key: str
    model: str
    response: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None


class ResponseCache:
    """A folder of answered requests, safe for many processes on many hosts at once."""

    def __init__(self, root: Path, *, durable: bool = False) -> None:
        self.root = Path(root)
        self.durable = durable
        self.staging = self.root / STAGING / socket.gethostname()  # made by the first write
        # Pids are only meaningful on their own host: each host cleans its own staging folder.
        remove_stale_temporaries(self.staging)

    def path_of(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> CachedResponse | None:
        """The stored answer to the request with this key, or None (absent or unreadable)."""
        try:
            raw = self.path_of(key).read_bytes()
        except FileNotFoundError:
            return None
        return _decode(raw, key)

    def claim(self, key: str) -> FileLock:
        """The (not yet acquired) claim on one request: held while it is sent and its answer stored."""
        return FileLock(self.root / key[:2] / f".{key}.lock")

    @staticmethod
    def release(claim: FileLock, *, answered: bool) -> None:
        """Give a held claim back; with ``answered`` (the key's answer is stored) remove its lock file too.

        Unlinking a lock file is unsafe in general (a process that opened it just before would lock
        an orphaned inode while a newcomer locks a new one), but not here: every claimer looks the
        key up after it acquires, and the answer is stored before the file goes, so both find it.
        A failed request's file stays: two jobs retrying it must still exclude each other.
        """
        if answered:
            claim.path.unlink(missing_ok=True)
        claim.release()

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def put(self, outcome: CallOutcome, cost_usd: float | None) -> tuple[CachedResponse, bool]:
        """Store a successful call; returns (the entry the cache holds now, whether it is this one).

        When another writer stored the key first, its entry is returned and this answer is dropped.
        """
        req = outcome.request
        entry = CachedResponse(req.key, req.model, outcome.text, outcome.finish_reason,
                               outcome.prompt_tokens, outcome.completion_tokens, cost_usd)
        blob = json.dumps({
            "format": FORMAT, "key": req.key, "request": req.canonical(),
            "response": outcome.text, "finish_reason": outcome.finish_reason,
            "prompt_tokens": outcome.prompt_tokens, "completion_tokens": outcome.completion_tokens,
            "cost_usd": cost_usd, "latency_s": round(outcome.latency_s, 4), "attempts": outcome.attempts,
            "batch": outcome.batch, "created_at": round(time.time(), 3),
        }, ensure_ascii=False, sort_keys=True).encode("utf-8")
        path = self.path_of(req.key)
        for _ in range(3):
            try:
                if atomic_create_bytes(path, blob, durable=self.durable, staging=self.staging):
                    return entry, True
            except FileNotFoundError:  # our temporary was cleaned away by another host's run: write again
                continue
            first = self.get(req.key)
            if first is not None:
                return first, False
            log.warning("response cache entry %s is unreadable; replacing it", path)
            try:
                discard(path, path.with_name(f".{path.name}.damaged-{time.time_ns()}"))
            except FileNotFoundError:
                pass
        raise OSError(f"could not store response {req.key} under {self.root}")

    def keys(self) -> Iterator[str]:
        """Every stored key (a directory walk: for tests and tools, not for the hot path)."""
        if not self.root.is_dir():
            return
        for shard in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for f in sorted(shard.glob("*.json")):
                if not f.name.startswith("."):
                    yield f.stem

    def __len__(self) -> int:
        return sum(1 for _ in self.keys())


def _decode(raw: bytes, key: str) -> CachedResponse | None:
    try:
        d = json.loads(raw)
        if not isinstance(d, dict) or d.get("key") != key:
            raise ValueError("entry names another key")
        return CachedResponse(key, str(d["request"]["model"]), str(d["response"]), d.get("finish_reason"),
                              int(d["prompt_tokens"]), int(d["completion_tokens"]),
                              None if d.get("cost_usd") is None else float(d["cost_usd"]))
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("response cache entry %s unreadable (%s): treated as absent", key, exc)
        return None
