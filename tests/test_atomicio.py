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
