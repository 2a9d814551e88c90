"""Atomic file writes shared by every package (harness, generators, leaderboards, trainers): a reader sees the old file or the whole new one, never a half.

And the one file lock (:class:`FileLock`): what several processes sharing a folder use so that
one of them does a piece of work (a step, a dense copy, a paid LLM call) while the others wait.

A killed run (kill -9, OOM, pre-emption) must leave no partial result behind, so every file the
harness writes goes to a temporary name in the same directory and is renamed into place; rename
is atomic on POSIX within one filesystem.

This is the one place files are written: the libraries may not import ``harness`` (it imports
them), so the helper lives in this top-level package that everyone may import.

Permissions: ``tempfile.mkstemp`` creates its file with mode 0600 and a rename keeps the mode, so a
naive temp-and-rename writer turns every result, manifest and report into a private file whatever
the user's umask. Here the final mode is what ``open(path, "w")`` would have given: the existing
file's mode when one is replaced, otherwise ``0o666 & ~umask``.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import re
import shutil
import socket
import stat
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows.

    ``os.umask`` can only be read by setting it, which races with other threads creating files, so
    Linux's ``/proc/self/status`` is preferred and the set-and-restore dance is the fallback.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _target_mode(path: Path) -> int:
    """The mode ``open(path, "w")`` would leave: an existing file keeps its own, a new one gets 0666 & ~umask."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return 0o666 & ~current_umask()


@contextmanager
def atomic_open(path: Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on a clean exit it is fsynced and renamed over ``path``.

    On any error (including KeyboardInterrupt) the temporary file is removed and ``path`` is left
    as it was. ``mode`` is ``"w"`` (text) or ``"wb"`` (bytes). Use this for streamed output (a large
    JSONL) and :func:`atomic_write_bytes` / :func:`atomic_write_text` / :func:`atomic_write_json`
    for data already in memory.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open mode must be 'w' or 'wb', not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    final_mode = _target_mode(path)
    # The writer's pid and host are in the name so that start-up cleanup can tell a dead writer's
    # leftover from a temporary another live run, here or on another host, is writing right now
    # (see remove_stale_temporaries).
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{writer_tag()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as fh:
            yield fh
            fh.flush()
            os.fchmod(fh.fileno(), final_mode)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a fsynced temporary file and a rename."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_with(path: Path, write: Callable[[IO[str]], None]) -> None:
    """Stream text into ``path`` atomically: ``write`` receives the open temporary file."""
    with atomic_open(path, "w") as fh:
        write(fh)


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


def _host_label(host: str) -> str:
    """A hostname as it appears in a temporary's name: only ``[A-Za-z0-9-]`` (dots become ``-``), so the
    name parses back unambiguously whatever the file's own name holds."""
    return re.sub(r"[^A-Za-z0-9-]", "-", host) or "unknown-host"


def writer_tag() -> str:
    """``PID@HOST``: who is writing a temporary, put in its name (files and directories alike)."""
    return f"{os.getpid()}@{_host_label(socket.gethostname())}"


# .NAME.PID@HOST.RANDOM.tmp (atomic_open) and .NAME.tmp-PID@HOST.RANDOM (atomic_directory).
_TAGGED_FILE = re.compile(r"\.(\d+)@([A-Za-z0-9-]+)\.[A-Za-z0-9_]+\.tmp$")
_TAGGED_DIR = re.compile(r"^\..+\.tmp-(\d+)@([A-Za-z0-9-]+)\.[A-Za-z0-9_]+$")
# Older writers: .NAME.PID.RANDOM.tmp (pid, no host) and .NAME.RANDOM.tmp (neither).
_LEGACY_PID_FILE = re.compile(r"\.(\d+)\.[A-Za-z0-9_]+\.tmp$")

LEGACY_TMP_AGE_S = 3600.0
"""A file temporary without a writer pid is stale once this old (its writer cannot be asked)."""
OTHER_HOST_TMP_AGE_S = 24 * 3600.0
"""Another host's temporary is stale once nothing in it changed for this long.

Its writer's pid cannot be checked from here (pids are per host), so age is the only evidence, and
deleting a live writer's temporary loses its work: the threshold is a day, far longer than any
single file or model export takes to write, at the cost of a dead remote writer's leftovers
staying that long. Temporaries of this host are removed as soon as their writer is dead."""


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


def _newest_mtime(path: Path) -> float:
    """When anything under ``path`` last changed: a directory's own mtime misses writes into its files."""
    newest = path.stat().st_mtime
    if path.is_dir() and not path.is_symlink():
        for child in path.rglob("*"):
            try:
                newest = max(newest, child.lstat().st_mtime)
            except OSError:
                pass
    return newest


def _is_stale(tmp: Path, now: float, this_host: str) -> bool | None:
    """True: a dead writer's leftover; False: possibly live, keep it; None: not a temporary of ours."""
    tagged = (_TAGGED_DIR.match(tmp.name) if tmp.is_dir() else _TAGGED_FILE.search(tmp.name))
    if tagged is not None:
        pid, host = int(tagged.group(1)), tagged.group(2)
        if host == this_host:
            return not _writer_alive(pid)
        return now - _newest_mtime(tmp) >= OTHER_HOST_TMP_AGE_S
    if tmp.is_dir() or not tmp.name.endswith(".tmp"):
        return None  # legacy directory temporaries (.NAME.tmp-RANDOM) name no writer: left alone, as before
    legacy = _LEGACY_PID_FILE.search(tmp.name)
    if legacy is not None:  # written before names carried the host: checked here, as then
        return not _writer_alive(int(legacy.group(1)))
    return now - tmp.stat().st_mtime >= LEGACY_TMP_AGE_S


def remove_stale_temporaries(directory: Path, skip: Sequence[Path] = ()) -> int:
    """Delete the leftovers of writers killed mid-write under ``directory``; returns how many were removed.

    A temporary's name says who writes it (``PID@HOST``, see :func:`writer_tag`): this host's go once
    their writer is dead, while another run writing into the same folder right now keeps its own.
    Another host's pid means nothing here (on a shared filesystem it may be a live writer there, or
    an unrelated process here), so another host's temporaries go only once unchanged for
    ``OTHER_HOST_TMP_AGE_S``. Names from older writers: a file with a pid (``.NAME.PID.RANDOM.tmp``)
    goes when that pid is dead here, one without a pid once older than ``LEGACY_TMP_AGE_S``, and a
    directory without one (``.NAME.tmp-RANDOM``) is left alone. ``skip``: folders not walked at all
    (a cache of half a million entries that cleans its own leftovers).
    """
    removed = 0
    if not directory.exists():
        return 0
    now = time.time()
    this_host = _host_label(socket.gethostname())
    skipped = {Path(p) for p in skip}
    found: list[Path] = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = [d for d in dirs if Path(root, d) not in skipped]
        found += [Path(root, n) for n in (*dirs, *files) if n.startswith(".") and (n.endswith(".tmp") or ".tmp-" in n)]
    candidates = sorted(found, key=lambda p: len(p.parts))  # one walk; outer temporaries first
    gone: list[Path] = []
    for tmp in candidates:
        if any(tmp.is_relative_to(g) for g in gone):
            continue  # inside a temporary directory already removed
        try:
            if not _is_stale(tmp, now, this_host):
                continue
            if tmp.is_dir() and not tmp.is_symlink():
                shutil.rmtree(tmp)
            else:
                tmp.unlink()
            gone.append(tmp)
            removed += 1
        except OSError:
            pass
    return removed


def file_target_problem(path: Path) -> str | None:
    """Why ``path`` cannot be written as a file (None if it can): checked before any work is done.

    Writing onto an existing directory fails only at the final rename, after the work (and, with
    a naive writer, leaves the temporary file behind); say so up front instead.
    """
    path = Path(path)
    if path.is_dir():
        return "is a directory"
    return _creation_problem(path.parents)


def directory_target_problem(path: Path) -> str | None:
    """Why ``path`` cannot be used as an output directory (None if it can)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        return "is a file, not a folder"
    return _creation_problem([path, *path.parents])


def _creation_problem(candidates: Any) -> str | None:
    """The nearest existing folder among ``candidates`` must be a writable directory."""
    for parent in candidates:
        if parent.exists():
            if not parent.is_dir():
                return f"cannot be created: {parent} is a file"
            if not os.access(parent, os.W_OK | os.X_OK):
                return f"cannot be created: {parent} is not writable"
            return None
    return None


def publish_directory(tmp: Path, final: Path) -> None:
    """Rename a fully written directory ``tmp`` to ``final``, replacing an older ``final``.

    A directory rename is atomic, but not over a non-empty directory, so an existing ``final`` is
    first moved aside (readers see the old directory or the new one, never a mixture), then removed.
    """
    if final.exists():
        old = final.parent / f".{final.name}.old-{os.getpid()}"
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def discard(path: Path, aside: Path) -> None:
    """Remove a file or directory so that no reader ever sees part of it: rename it to ``aside`` (a
    name no reader looks at), then delete. A kill between the two leaves only ``aside`` behind."""
    if path != aside:
        os.replace(path, aside)
    if aside.is_dir() and not aside.is_symlink():
        shutil.rmtree(aside, ignore_errors=True)
    else:
        aside.unlink(missing_ok=True)


@contextmanager
def atomic_directory(path: Path) -> Iterator[Path]:
    """Build a directory under a temporary name beside ``path`` and publish it when the block succeeds.

    For multi-file outputs (a model export, a converted checkpoint): a killed writer leaves only a
    ``.NAME.tmp-PID@HOST.*`` directory, which readers ignore and :func:`remove_stale_temporaries`
    deletes once its writer is dead, never half a model.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-{writer_tag()}."))
    try:
        yield tmp
        publish_directory(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_create_bytes(path: Path, data: bytes, *, durable: bool = True, staging: Path | None = None) -> bool:
    """Publish ``data`` at ``path`` only if nothing is there yet: the first writer wins, atomically.

    For content-keyed caches that processes on several hosts share (an LLM answer paid for once):
    two writers of one key must not replace each other's entry, or a job that already used the first
    answer would find another on its re-run. The data goes to a temporary file in ``staging`` (a
    folder on the same filesystem; default beside ``path``), fsynced when ``durable``, and is
    hard-linked to ``path``: link(2) fails when ``path`` exists, on local filesystems and on NFS
    alike. Returns True when this call published ``path``, False when another writer had. A
    filesystem without hard links falls back to an existence check and a rename (a race there is
    last-writer-wins). The temporary is always removed; a writer killed before that leaves a
    ``.NAME.PID.*.tmp`` that :func:`remove_stale_temporaries` recognises.
    """
    import errno

    path = Path(path)
    folder = Path(staging) if staging is not None else path.parent
    path.parent.mkdir(parents=True, exist_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fchmod(fh.fileno(), 0o666 & ~current_umask())
            if durable:
                os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                raise
            if path.exists():
                return False
            os.replace(tmp, path)
            return True
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass


class FileLock:
    """An ``flock`` on a lock file: exclusive (a writer, a builder, gc) or shared (readers).

    The kernel drops it when its holder dies (kill -9 included), so there is never a stale lock to
    clean up, and it conflicts between open file descriptions, so two threads of one process that
    each open the file exclude each other too. The lock file is never deleted: unlinking it while
    another process has just opened it would let two processes each "hold" a lock on a different
    inode. One object is one acquisition: :meth:`release` unlocks and closes the file.
    """

    def __init__(self, path: Path, shared: bool = False) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.shared = shared
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)

    def acquire(self, block: bool = True) -> bool:
        """Take the lock, waiting for it when ``block``; without waiting, False when another holds it."""
        try:
            fcntl.flock(self.fd, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | (0 if block else fcntl.LOCK_NB))
        except BlockingIOError:
            return False
        return True

    def release(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive :class:`FileLock` on ``path`` for the block (waiting for it first)."""
    lock = FileLock(path)
    try:
        lock.acquire()
        yield
    finally:
        lock.release()
