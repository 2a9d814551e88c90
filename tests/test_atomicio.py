"""The one atomic writer: modes follow the umask as open() would, temporaries never leak, and no
other module carries its own temp-and-rename code (issue #8 item 5, issue #7 item 8)."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from atomicio import atomic_open, atomic_write_json, atomic_write_text, current_umask

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def umask() -> Iterator[callable]:  # type: ignore[valid-type]
    old = os.umask(0o022)
    os.umask(old)

    def set_mask(mask: int) -> None:
        os.umask(mask)

    yield set_mask
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask,expected", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_new_file_mode_follows_umask(tmp_path: Path, umask, mask: int, expected: int) -> None:  # type: ignore[no-untyped-def]
    umask(mask)
    assert current_umask() == mask
    atomic_write_json(tmp_path / "a.json", {"x": 1})
    with open(tmp_path / "plain.txt", "w") as fh:  # what open() gives, for comparison
        fh.write("x")
    assert _mode(tmp_path / "a.json") == expected == _mode(tmp_path / "plain.txt")


def test_replacing_keeps_existing_mode(tmp_path: Path, umask) -> None:  # type: ignore[no-untyped-def]
    umask(0o022)
    path = tmp_path / "r.md"
    path.write_text("old")
    path.chmod(0o640)
    atomic_write_text(path, "new")
    assert path.read_text() == "new" and _mode(path) == 0o640


def test_error_leaves_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "examples.jsonl"
    path.write_text("old\n")
    with pytest.raises(RuntimeError):
        with atomic_open(path) as fh:
            fh.write("half")
            raise RuntimeError("killed")
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["examples.jsonl"]


def test_library_outputs_follow_umask(tmp_path: Path, umask) -> None:  # type: ignore[no-untyped-def]
    from generators.output import ExampleRow, write_examples
    from leaderboards.commands import report
    from leaderboards_fixtures import write_run

    umask(0o022)
    row = ExampleRow(task_type="sts", instruction="i", query="q", positive="p", hard_negative="n", language="en",
                     generator_model="m", template_id="paper/generate_sts", template_version=1, request_id="k")
    assert _mode(write_examples(tmp_path / "gen", [row])) == 0o644
    run = write_run(tmp_path / "run")
    report(run, "markdown", ["none"], None, tmp_path / "report.md")
    assert _mode(tmp_path / "report.md") == 0o644


def test_one_atomic_writer_in_the_code_base() -> None:
    """Temp-and-rename lives only in atomicio: no other module calls mkstemp/os.replace/.replace(path)."""
    offenders = []
    for pkg in ("harness", "generators", "leaderboards", "trainers"):
        for py in (REPO / pkg).rglob("*.py"):
            text = py.read_text(encoding="utf-8")
            if re.search(r"mkstemp|NamedTemporaryFile|os\.replace\(|os\.rename\(|\.tmp\"\)", text):
                offenders.append(str(py.relative_to(REPO)))
    assert offenders == []


# --- start-up cleanup beside other runs and other hosts (issue #17 item 6) ---------------------------

def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped): a writer killed mid-write."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _age(path: Path, seconds: float) -> None:
    import time

    then = time.time() - seconds
    os.utime(path, (then, then))


def test_temporary_names_say_which_host_and_process_writes_them(tmp_path: Path) -> None:
    from atomicio import atomic_directory, writer_tag

    tag = writer_tag()
    assert tag.startswith(f"{os.getpid()}@") and "." not in tag
    with atomic_open(tmp_path / "a.json"):
        (tmp,) = tmp_path.iterdir()
        assert tmp.name.startswith(f".a.json.{tag}.") and tmp.name.endswith(".tmp")
    with atomic_directory(tmp_path / "model") as tmp_dir:
        assert tmp_dir.name.startswith(f".model.tmp-{tag}.")


_KILLED_ON_ANOTHER_HOST = """
import os, signal, socket, sys
from pathlib import Path
socket.gethostname = lambda: "other-node-7.cluster"  # this process plays a writer on another machine
import atomicio
with atomicio.atomic_open(Path(sys.argv[1])) as fh:
    fh.write("half")
    fh.flush()
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_cleanup_keeps_another_hosts_fresh_temporary_whatever_its_pid_means_here(tmp_path: Path) -> None:
    """On a shared filesystem another host's pid says nothing here: a dead local pid must not make its
    temporary look abandoned (the old cleanup deleted it), nor a live one make it look live."""
    import subprocess
    import sys

    from atomicio import remove_stale_temporaries

    proc = subprocess.Popen([sys.executable, "-c", _KILLED_ON_ANOTHER_HOST, str(tmp_path / "scores.json")])
    assert proc.wait() == -9
    (written,) = tmp_path.iterdir()  # pid dead here, but on its own host it might be a live writer
    assert written.name.startswith(f".scores.json.{proc.pid}@other-node-7-cluster.")
    live_here = tmp_path / f".rows.json.{os.getpid()}@other-node-7-cluster.abc123.tmp"
    live_here.write_text("half")
    other_dir = tmp_path / f".model.tmp-{_dead_pid()}@other-node-7-cluster.gh12"
    other_dir.mkdir()
    (other_dir / "weights.bin").write_bytes(b"half")
    assert remove_stale_temporaries(tmp_path) == 0
    assert written.exists() and live_here.exists() and (other_dir / "weights.bin").exists()


def test_cleanup_removes_a_dead_local_writers_temporaries(tmp_path: Path) -> None:
    import socket

    from atomicio import _host_label, remove_stale_temporaries

    host = _host_label(socket.gethostname())
    dead_file = tmp_path / "sub" / f".rows.jsonl.{_dead_pid()}@{host}.k3j2h1.tmp"
    dead_dir = tmp_path / f".model.tmp-{_dead_pid()}@{host}.x1y2"
    live_file = tmp_path / f".rows.jsonl.{os.getpid()}@{host}.zz9.tmp"
    dead_file.parent.mkdir()
    dead_file.write_text("half")
    (dead_dir / "inner").mkdir(parents=True)
    (dead_dir / "inner" / ".part.json.1@x.a.tmp").write_text("half")
    live_file.write_text("half")
    assert remove_stale_temporaries(tmp_path) == 2
    assert not dead_file.exists() and not dead_dir.exists() and live_file.exists()


def test_cleanup_does_not_walk_a_skipped_folder(tmp_path: Path) -> None:
    """The run-level caches clean their own leftovers; the run's start-up cleanup must not walk
    half a million LLM responses to find none."""
    import socket

    from atomicio import _host_label, remove_stale_temporaries

    host = _host_label(socket.gethostname())
    in_cache = tmp_path / "cache" / "llm" / f".ab.json.{_dead_pid()}@{host}.q1.tmp"
    in_steps = tmp_path / "steps" / f".manifest.json.{_dead_pid()}@{host}.q2.tmp"
    for p in (in_cache, in_steps):
        p.parent.mkdir(parents=True)
        p.write_text("half")
    assert remove_stale_temporaries(tmp_path, skip=[tmp_path / "cache"]) == 1
    assert in_cache.exists() and not in_steps.exists()


def test_cleanup_removes_another_hosts_temporary_only_after_a_day_unchanged(tmp_path: Path) -> None:
    from atomicio import OTHER_HOST_TMP_AGE_S, remove_stale_temporaries

    old_file = tmp_path / f".scores.json.{os.getpid()}@other-node-7.abc123.tmp"
    recent_file = tmp_path / f".other.json.{os.getpid()}@other-node-7.abc124.tmp"
    old_dir = tmp_path / f".model.tmp-{os.getpid()}@other-node-7.gh12"
    touched_dir = tmp_path / f".model2.tmp-{os.getpid()}@other-node-7.gh13"
    for p in (old_file, recent_file):
        p.write_text("half")
    for d in (old_dir, touched_dir):
        d.mkdir()
        (d / "weights.bin").write_bytes(b"half")
    for p in (old_file, old_dir / "weights.bin", old_dir, touched_dir):
        _age(p, OTHER_HOST_TMP_AGE_S + 60)
    _age(recent_file, OTHER_HOST_TMP_AGE_S - 3600)
    assert OTHER_HOST_TMP_AGE_S >= 24 * 3600
    assert remove_stale_temporaries(tmp_path) == 2
    assert not old_file.exists() and not old_dir.exists()
    assert recent_file.exists(), "younger than the threshold: its writer may still be working"
    assert (touched_dir / "weights.bin").exists(), "a file inside was written recently: the directory is live"


def test_cleanup_treats_names_from_older_writers_as_before(tmp_path: Path) -> None:
    from atomicio import LEGACY_TMP_AGE_S, remove_stale_temporaries

    dead_pid = tmp_path / f".a.json.{_dead_pid()}.k3j2h1.tmp"
    live_pid = tmp_path / f".b.json.{os.getpid()}.k3j2h2.tmp"
    old_no_pid = tmp_path / ".c.json.tmp"
    young_no_pid = tmp_path / ".d.json.tmp"
    legacy_dir = tmp_path / ".model.tmp-x1y2z3"
    for p in (dead_pid, live_pid, old_no_pid, young_no_pid):
        p.write_text("half")
    legacy_dir.mkdir()
    _age(old_no_pid, LEGACY_TMP_AGE_S + 60)
    _age(legacy_dir, 10 * 24 * 3600)
    assert remove_stale_temporaries(tmp_path) == 2
    assert not dead_pid.exists() and not old_no_pid.exists()
    assert live_pid.exists() and young_no_pid.exists() and legacy_dir.exists()
