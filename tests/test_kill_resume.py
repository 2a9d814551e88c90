"""kill -9 in the middle of a run, then re-run: same scores as an uninterrupted run, no partial files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import main_scores, read_json

pytestmark = pytest.mark.slow


def _harness(*args: str) -> list[str]:
    return [sys.executable, "-c", "from harness.cli import main; main()", *args]


@pytest.mark.parametrize("kill_after_manifests", [0, 2])
def test_kill_9_then_rerun_finishes_with_identical_scores(smoke_copy: Path, tmp_path: Path, kill_after_manifests: int) -> None:
    reference_matrix = tmp_path / "reference.yaml"
    reference_matrix.write_text(smoke_copy.read_text().replace(f"output: {tmp_path / 'run'}", f"output: {tmp_path / 'ref'}"))
    subprocess.run(_harness("run", str(reference_matrix), "--no-progress"), check=True, capture_output=True)
    expected = main_scores(tmp_path / "ref")

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(_harness("run", str(smoke_copy), "--no-progress"), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    steps = tmp_path / "run" / "steps"
    cache = tmp_path / "run" / "cache" / "embeddings.sqlite"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if kill_after_manifests == 0 and cache.exists():  # mid-encoding of the first cell
            time.sleep(0.5)
            break
        if kill_after_manifests and len(list(steps.rglob("manifest.json"))) >= kill_after_manifests:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed; nothing was tested"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(list(steps.rglob("manifest.json")))
    assert done_before < 4

    rerun = subprocess.run(_harness("run", str(smoke_copy), "--no-progress"), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.count("cached ") == done_before, "completed cells must not be redone"
    assert main_scores(tmp_path / "run") == expected
    assert not list((tmp_path / "run").rglob("*.tmp")), "no partial files may remain"
    for f in (tmp_path / "run").rglob("*.json"):
        read_json(f)  # every file whole and strict JSON
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert {c["status"] for c in run["cells"]} <= {"done", "cached"}
