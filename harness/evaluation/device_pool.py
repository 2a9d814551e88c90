"""Evaluation across devices (``harness run --devices cuda:0,cuda:1``): one worker process per
device, each encoding whole chunks of texts on its own copy of the model.

Why a chunk is the unit. :class:`~harness.evaluation.encoder.CachedEncoder` cuts the cache misses
of every encode call, sorted longest first, into chunks of ``miss_batch()`` texts; with one device
each chunk is one ``embed`` call, which plans its own token-budget batches (:mod:`.models.batching`).
A worker here receives exactly such a chunk and makes exactly that call: the same batches, the same
padding, so the same vectors — bit for bit on devices of one type — and therefore the same scores
and the same cache entries as one device. That is what lets a run on eight GPUs and one on a laptop
share their embedding cache and results (devices enter no key and no fingerprint). A finer unit
(single batches) would need the model's tokenizer in this process to plan them and would gain
nothing; a coarser one (a task, a split) would leave devices idle on small tasks and unbalanced on
large ones. Chunks go out longest first and a worker takes the next one the moment it is free, so
the slowest chunks never arrive last; each comes back as soon as it is done.

Why this process writes the cache. The vectors must come back to the process that runs mteb anyway,
so it stores them exactly as with one device (one transaction per chunk, off the critical path):
workers never open the cache, and it needs no locking beyond what it has.

Why this process holds no model. The workers load it (once per unit, kept while the unit runs) and
report what the parent needs: the fingerprint for cache keys, saved prompts for instructions,
similarity and sizes for ``model_meta.json``, settings for provenance. Workers that disagree on the
fingerprint are refused.

Failures never hang. This process waits on every worker's pipe and process handle together: a worker
that raises fails the cell whose chunk it was, with the worker's error (its traceback in the cell's
log), and the pool stays usable; a worker that dies (killed, out of host memory, a crashed driver)
is noticed at once and fails this call and every later one, naming the device and exit code.

Workers are started with ``spawn`` (CUDA cannot be used in a forked child) and each gets this
process's torch threads divided by the number of workers, so CPU workers share the cores instead of
oversubscribing them.
"""

from __future__ import annotations

import multiprocessing
import signal
import traceback
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

import numpy as np

from harness.evaluation.models.base import EncodeCounter, Embedder, model_facts

Loader = Callable[..., Embedder]
"""Called in each worker as ``load(device=...)``; must pickle (a module-level function or a partial of one)."""

JOIN_S = 10.0  # how long close() lets an idle worker exit before terminating it
_LOADING = (0, -1)  # the "job" of a worker that has not reported its model yet (calls count from 1)


class DeviceWorkerError(RuntimeError):
    """A device worker could not load the model, raised while encoding, or died."""


class WorkerTraceback(Exception):
    """The worker's own traceback, chained to :class:`DeviceWorkerError` so a cell's log shows it."""


def worker_threads(workers: int, available: int | None = None) -> int:
    """torch threads for each of ``workers``: the threads this process would use, shared out."""
    if available is None:
        import torch

        available = torch.get_num_threads()
    return max(1, available // max(1, workers))


def _error_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(exc)).strip()


def _report(embedder: Embedder) -> dict[str, Any]:
    """What the parent needs of a loaded model, in place of the model itself."""
    return {"name": embedder.name, "fingerprint": embedder.fingerprint, "similarity": embedder.similarity,
            "model_prompts": dict(getattr(embedder, "model_prompts", {}) or {}), "describe": embedder.describe(),
            "facts": model_facts(embedder)}


def _serve(device: str, threads: int, load: Loader, conn: Connection, quiet: bool, warning_filters: list[Any]) -> None:
    """A worker's whole life: load the model on ``device``, report it, encode chunks until told to stop
    (``None``) or until the parent is gone. It warns as the parent would (the CLI silences libraries)."""
    import torch

    from harness.third_party_output import progress_bars_hidden

    warnings.filters[:] = warning_filters
    with progress_bars_hidden(quiet):
        try:
            torch.set_num_threads(threads)
            if str(device).startswith("cuda:"):  # implicit CUDA work (pinned memory, caches) on this GPU, not cuda:0
                torch.cuda.set_device(torch.device(device))
            embedder = load(device=device)
            conn.send(("ready", _report(embedder)))
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails the unit's cells
            conn.send(("failed", _error_text(exc), traceback.format_exc()))
            return
        while True:
            try:
                job = conn.recv()
            except EOFError:  # the parent died
                return
            if job is None:
                return
            call, index, texts, prefix = job
            try:
                vectors = np.ascontiguousarray(embedder.embed(texts, prefix), dtype=np.float32)
            except Exception as exc:  # noqa: BLE001 - this chunk's cell fails; the worker carries on
                conn.send(("error", call, index, _error_text(exc), traceback.format_exc()))
                continue
            conn.send(("done", call, index, vectors))


@dataclass
class _Worker:
    device: str
    process: Any  # a spawn-context Process
    conn: Connection
    job: tuple[int, int] | None = None  # (call, chunk index) it is encoding
    texts: int = 0
    chunks: int = 0

    @property
    def label(self) -> str:
        return f"the encode worker on {self.device} (pid {self.process.pid})"


def _exit_reason(code: int | None) -> str:
    if code is None:
        return "closed its pipe"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (out of host memory?)" if -code == signal.SIGKILL else ""
        return f"was killed by {name}{hint}"
    return f"exited with code {code}"


class DevicePool:
    """An :class:`Embedder` whose model lives in one worker process per device (see the module docstring).

    Starting it starts the workers and waits until every one has loaded the model (they load side by
    side). :meth:`embed_chunks` spreads chunks over them; :meth:`close` stops them.
    """

    def __init__(self, devices: Sequence[str], load: Loader, *, quiet: bool = True) -> None:
        if len(devices) < 2:
            raise ValueError("a device pool needs at least two devices; one device encodes in this process")
        context = multiprocessing.get_context("spawn")
        threads = worker_threads(len(devices))
        self.devices = list(devices)
        self.counter = EncodeCounter()
        self._workers: list[_Worker] = []
        self._broken: DeviceWorkerError | None = None
        self._closed = False
        self._calls = 0
        try:
            for device in devices:
                ours, theirs = context.Pipe()
                process = context.Process(target=_serve, args=(device, threads, load, theirs, quiet, list(warnings.filters)),
                                          name=f"harness-encode-{device}", daemon=True)
                process.start()
                theirs.close()  # only the worker holds its end: its death is an EOF here
                self._workers.append(_Worker(device, process, ours))
            reports = self._ready()
            fingerprints = {r["fingerprint"] for r in reports}
            if len(fingerprints) > 1:
                raise DeviceWorkerError(f"the workers on {', '.join(self.devices)} loaded models with different "
                                        f"fingerprints ({', '.join(sorted(f[:12] for f in fingerprints))}); their "
                                        "vectors could not share one cache")
        except BaseException:
            self.close()
            raise
        first = reports[0]
        self.name: str = first["name"]
        self.fingerprint: str = first["fingerprint"]
        self.similarity: str = first["similarity"]
        self.model_prompts: dict[str, str] = first["model_prompts"]
        self.facts: dict[str, int | None] = first["facts"]
        self._describe: dict[str, Any] = first["describe"]

    # --- the Embedder protocol --------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        return dict(self._describe)

    def embed(self, texts: list[str], prefix: str = "") -> np.ndarray:
        """One chunk on whichever worker is free (the encoder sends many at once: :meth:`embed_chunks`)."""
        return next(self.embed_chunks([texts], prefix))[1]

    def embed_chunks(self, chunks: Sequence[list[str]], prefix: str) -> Iterator[tuple[int, np.ndarray]]:
        """``(index, vectors)`` of every chunk, as workers finish them; each free worker takes the next
        chunk in order. Raises :class:`DeviceWorkerError` on the first failure."""
        if self._broken is not None:
            raise self._broken
        if self._closed:
            raise RuntimeError("this device pool is closed")
        self._calls += 1
        call = self._calls
        todo = deque(range(len(chunks)))
        left = len(chunks)
        while left:
            for w in sorted(self._workers, key=lambda w: w.texts):  # the least used first: one-chunk calls alternate
                if w.job is None and todo:
                    index = todo.popleft()
                    self._send(w, (call, index, chunks[index], prefix))
                    w.job = (call, index)
            messages = self._receive([w for w in self._workers if w.job is not None])
            for w, _ in messages:
                w.job = None  # all of them before anything is raised or yielded: each is back in recv
            for w, message in messages:
                if message[0] not in ("done", "error") or message[1] != call:
                    continue  # a chunk of an earlier call that failed part-way: no longer wanted
                if message[0] == "error":
                    raise DeviceWorkerError(f"{w.label} failed on a chunk of {len(chunks[message[2]])} texts: "
                                            f"{message[3]}") from WorkerTraceback(message[4])
                index, vectors = message[2], message[3]
                w.texts += len(chunks[index])
                w.chunks += 1
                self.counter.add(len(chunks[index]))
                left -= 1
                yield index, vectors

    # --- statistics and shutdown ------------------------------------------------------------------

    def worker_stats(self) -> list[dict[str, Any]]:
        """Texts and chunks each worker encoded, in ``--devices`` order."""
        return [{"device": w.device, "texts_encoded": w.texts, "chunks": w.chunks} for w in self._workers]

    def close(self) -> None:
        """Stop every worker: idle ones are asked to exit, busy ones (a chunk nobody waits for) terminated."""
        if self._closed:
            return
        self._closed = True
        for w in self._workers:
            if w.process.is_alive() and w.job is None:
                try:
                    w.conn.send(None)
                except OSError:
                    pass
        for w in self._workers:
            w.process.join(timeout=JOIN_S if w.job is None else 0)
            if w.process.is_alive():
                w.process.terminate()
                w.process.join(timeout=JOIN_S)
            if w.process.is_alive():
                w.process.kill()
                w.process.join()
            w.conn.close()

    # --- talking to workers -----------------------------------------------------------------------

    def _ready(self) -> list[dict[str, Any]]:
        reports: dict[int, dict[str, Any]] = {}
        for w in self._workers:
            w.job = _LOADING  # waited on like a chunk
        while len(reports) < len(self._workers):
            for w, message in self._receive([w for w in self._workers if w.job is not None]):
                w.job = None
                if message[0] == "failed":
                    raise DeviceWorkerError(f"{w.label} could not load the model: {message[1]}") from WorkerTraceback(message[2])
                reports[self._workers.index(w)] = message[1]
        return [reports[i] for i in range(len(self._workers))]

    def _send(self, w: _Worker, job: Any) -> None:
        """A worker without a job is waiting in ``recv``, so this never blocks on a busy one."""
        try:
            w.conn.send(job)
        except OSError:  # BrokenPipeError: it died since its last message
            raise self._died(w) from None

    def _receive(self, busy: list[_Worker]) -> list[tuple[_Worker, Any]]:
        """Block until at least one of ``busy`` has sent a message or died; its messages, or the death raised."""
        handles: dict[Any, _Worker] = {}
        for w in busy:
            handles[w.conn] = w
            handles[w.process.sentinel] = w
        ready = {id(handles[h]): handles[h] for h in wait(list(handles))}
        out = []
        for w in ready.values():
            try:
                if w.conn.poll():  # a message sent just before dying is still read
                    out.append((w, w.conn.recv()))
                    continue
            except (EOFError, OSError):
                pass
            raise self._died(w)
        return out

    def _died(self, w: _Worker) -> DeviceWorkerError:
        w.process.join(timeout=JOIN_S)
        doing = "while loading the model" if w.job == _LOADING else "while encoding"
        self._broken = DeviceWorkerError(f"{w.label} {_exit_reason(w.process.exitcode)} {doing}; "
                                         "the unit's remaining cells fail (re-run: finished cells and every stored "
                                         "vector are kept)")
        w.job = None
        self.close()
        return self._broken
