"""kill -9 in the middle of a run, then re-run: same scores as an uninterrupted run, no partial files.

"Mid-encoding" is proven, not hoped for: the model is fed one text per cache transaction
(``HARNESS_MISS_BATCH=1``), the kill is sent as soon as the first vectors are committed, and the
frozen state after the kill must show some but not all of the first cell's vectors and no
completed cell; the re-run must then reuse exactly those vectors.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import main_scores, read_json

pytestmark = pytest.mark.slow


def _harness(*args: str) -> list[str]:
    return [sys.executable, "-c", "from harness.cli import main; main()", *args]


def _rows(cache: Path) -> int:
    if not cache.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{cache}?mode=ro", uri=True, timeout=5) as conn:
            return int(conn.execute("SELECT count(*) FROM vectors").fetchone()[0])
    except sqlite3.Error:  # created but no table yet
        return 0


@pytest.mark.parametrize("kill_after_manifests", [0, 2])
def test_kill_9_then_rerun_finishes_with_identical_scores(smoke_copy: Path, tmp_path: Path, kill_after_manifests: int) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if kill_after_manifests == 0:  # one text per transaction: a wide, observable mid-encoding window
        env["HARNESS_MISS_BATCH"] = "1"
    reference_matrix = tmp_path / "reference.yaml"
    reference_matrix.write_text(smoke_copy.read_text().replace(f"output: {tmp_path / 'run'}", f"output: {tmp_path / 'ref'}"))
    subprocess.run(_harness("run", str(reference_matrix), "--no-progress"), check=True, capture_output=True, env=env)
    expected = main_scores(tmp_path / "ref")
    if kill_after_manifests == 0:
        first_cell = tmp_path / "first.yaml"  # how many vectors the first cell alone stores
        text = reference_matrix.read_text()
        first_cell.write_text(text[: text.index("  - name: HarnessSmokeSTS")] + f"output: {tmp_path / 'first'}\n")
        subprocess.run(_harness("run", str(first_cell), "--no-progress"), check=True, capture_output=True, env=env)
        first_cell_vectors = _rows(tmp_path / "first" / "cache" / "embeddings.sqlite")

    proc = subprocess.Popen(_harness("run", str(smoke_copy), "--no-progress"), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    steps = tmp_path / "run" / "steps"
    cache = tmp_path / "run" / "cache" / "embeddings.sqlite"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if kill_after_manifests == 0 and _rows(cache) > 0:  # the first vectors are committed
            break
        if kill_after_manifests and len(list(steps.rglob("manifest.json"))) >= kill_after_manifests:
            break
        time.sleep(0.005)
    assert proc.poll() is None, "the run finished before it could be killed; nothing was tested"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(list(steps.rglob("manifest.json")))
    assert done_before < 4
    stored_at_kill = _rows(cache)
    if kill_after_manifests == 0:
        assert done_before == 0 and 0 < stored_at_kill < first_cell_vectors, (
            f"the kill did not land mid-encoding of the first cell ({stored_at_kill} of {first_cell_vectors} vectors)")

    rerun = subprocess.run(_harness("run", str(smoke_copy), "--no-progress"), capture_output=True, text=True, env=env)
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.count("cached ") == done_before, "completed cells must not be redone"
    assert main_scores(tmp_path / "run") == expected
    assert not list((tmp_path / "run").rglob("*.tmp")), "no partial files may remain"
    for f in (tmp_path / "run").rglob("*.json"):
        read_json(f)  # every file whole and strict JSON
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert {c["status"] for c in run["steps"]} <= {"done", "cached"}
    if kill_after_manifests == 0:  # the vectors committed before the kill were reused, the rest computed
        assert run["encode_stats"]["_cache"]["hits"] >= stored_at_kill
        assert run["encode_stats"]["all-MiniLM-L6-v2"]["texts_encoded"] == _rows(cache) - stored_at_kill
