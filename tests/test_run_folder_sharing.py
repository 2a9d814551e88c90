"""One run folder, several writers (issue #7 items 2 and 5).

- A renamed model entry gets its results under the new name, from cached vectors.
- Start-up cleanup removes a dead writer's temporaries, never a live one's.
- model_meta.json is shared by a revision's tasks: changing it invalidates none of them.
- Two ``harness run`` processes on one folder both finish, and leave a complete, cached run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from atomicio import remove_stale_temporaries
from tests.helpers import cli, main_scores, read_json

pytestmark = pytest.mark.slow


def _harness(*args: str) -> list[str]:
    return [sys.executable, "-c", "from harness.cli import main; main()", *args]


def test_renamed_model_entry_gets_results_under_its_new_name_without_encoding(smoke_copy: Path, tmp_path: Path) -> None:
    assert cli("run", str(smoke_copy), "--no-progress").exit_code == 0
    before = main_scores(tmp_path / "run")
    smoke_copy.write_text(smoke_copy.read_text().replace("- name: all-MiniLM-L6-v2", "- name: minilm-renamed"))
    result = cli("run", str(smoke_copy), "--no-progress")
    assert result.exit_code == 0, result.output
    run = read_json(tmp_path / "run" / "run.json")
    assert [c["status"] for c in run["steps"]] == ["done"] * 4, "the new name has no results yet: not 'cached'"
    assert run["encode_stats"]["minilm-renamed"]["texts_encoded"] == 0, "vectors come from the embedding cache"
    after = main_scores(tmp_path / "run")
    renamed = {k[1:]: v for k, v in after.items() if k[0] == "minilm-renamed"}
    assert renamed == {k[1:]: v for k, v in before.items()} and len(renamed) == 8
    meta = next((tmp_path / "run" / "results" / "minilm-renamed").glob("*/model_meta.json"))
    assert read_json(meta)["name"] == "minilm-renamed"


_SLOW_WRITER = """
import sys, time
from pathlib import Path
import atomicio
gate = Path(sys.argv[2])
def slow_fsync(fd):
    while not gate.exists():
        time.sleep(0.02)
atomicio.os.fsync = slow_fsync
atomicio.atomic_write_text(Path(sys.argv[1]), "whole file")
"""


def _start_writer(target: Path, gate: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(target), str(gate)], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not list(target.parent.glob(f".{target.name}.*.tmp")):
        assert time.monotonic() < deadline and proc.poll() is None, "the writer never started writing"
        time.sleep(0.02)
    return proc


def test_cleanup_keeps_a_live_writers_temporary_and_removes_a_dead_ones(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    gate = tmp_path / "gate"
    live = _start_writer(run / "live.json", gate)
    dead = _start_writer(run / "dead.json", tmp_path / "never")
    os.kill(dead.pid, signal.SIGKILL)
    dead.wait()
    assert len(list(run.glob(".*.tmp"))) == 2
    assert remove_stale_temporaries(run) == 1  # what another run's start-up does
    gate.touch()
    _, err = live.communicate(timeout=60)
    assert live.returncode == 0, err.decode()
    assert (run / "live.json").read_text() == "whole file"
    assert not list(run.glob(".*.tmp"))


def test_changing_model_meta_invalidates_no_sibling(smoke_copy: Path, tmp_path: Path) -> None:
    assert cli("run", str(smoke_copy), "--no-progress").exit_code == 0
    meta = next((tmp_path / "run" / "results").glob("*/*/model_meta.json"))
    obj = read_json(meta)
    obj["n_parameters"] = 22_700_000  # e.g. a newer harness fills a field
    meta.write_text(json.dumps(obj))
    again = cli("run", str(smoke_copy), "--no-progress")
    assert again.exit_code == 0
    assert [c["status"] for c in read_json(tmp_path / "run" / "run.json")["steps"]] == ["cached"] * 4


def test_two_runs_on_one_folder_both_finish(smoke_copy: Path, tmp_path: Path) -> None:
    reference = tmp_path / "reference.yaml"
    reference.write_text(smoke_copy.read_text().replace(f"output: {tmp_path / 'run'}", f"output: {tmp_path / 'ref'}"))
    assert cli("run", str(reference), "--no-progress").exit_code == 0
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = [subprocess.Popen(_harness("run", str(smoke_copy), "--no-progress"), env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, out + err
    assert main_scores(tmp_path / "run") == main_scores(tmp_path / "ref")
    assert not list((tmp_path / "run").rglob("*.tmp"))
    for f in (tmp_path / "run").rglob("*.json"):
        read_json(f)
    third = cli("run", str(smoke_copy), "--no-progress")
    assert third.exit_code == 0 and third.output.count("cached ") == 4, third.output
