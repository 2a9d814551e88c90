"""Issue #10 item 6: a local-backend job killed with SIGKILL and resumed keeps exactly the examples an
uninterrupted job keeps: no duplicate rows, no lost ones. The resumed run batches the remaining
requests differently from the first (another batch size), so this also exercises per-request
sampling (item 3): with the old per-batch seed the resumed examples differed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from generators.commands import generate_file as generate
from generators.response_cache import ResponseCache
from generators.output import read_examples

ROOT = Path(__file__).resolve().parents[1]


def _config(tmp_path: Path, name: str, batch_size: int = 2) -> Path:
    data = {
        "name": name, "seed": 21,
        "backend": {"kind": "local", "batch_size": batch_size, "threads": 1},
        "tasks": {"sts": {"count": 4}, "bitext": {"count": 2}},
        "languages": {"en": 3, "fr": 1}, "templates": "compact",
        "sampling": {"temperature": 0.8, "top_p": 0.95, "max_tokens": 48},
        "lengths": {"short": 28},
        "filters": {"language_id": False},  # a 135M model's language is not what is under test here
    }
    p = tmp_path / f"{name}.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def _stored(cache: Path) -> int:
    return len(ResponseCache(cache))


@pytest.mark.slow
def test_killed_and_resumed_local_job_keeps_exactly_the_uninterrupted_examples(tmp_path: Path) -> None:
    pytest.importorskip("xgrammar")
    whole = generate(_config(tmp_path, "whole"), tmp_path / "whole", progress=False)

    cfg = _config(tmp_path, "killed")
    out = tmp_path / "killed"
    db = out / "responses"
    proc = subprocess.Popen([sys.executable, "-c", "from harness.cli import main; main()", "generate", str(cfg),
                             "--output", str(out), "--no-progress"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 900
        while _stored(db) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None, "the job ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    done_before = _stored(db)
    assert 2 <= done_before < whole.requests.total
    assert not (out / "examples.jsonl").exists()

    # Resume with another batch size, so the remaining requests are batched unlike the first run's
    # (a killed run always stored whole batches; batch size is not part of a request's key).
    resumed = generate(_config(tmp_path, "killed", batch_size=3), out, progress=False)
    assert resumed.requests.from_store == done_before
    assert resumed.requests.new_calls == whole.requests.total - done_before
    a, b = read_examples(tmp_path / "whole" / "examples.jsonl"), read_examples(out / "examples.jsonl")
    strip = lambda rows: [r.model_dump() for r in rows]  # noqa: E731
    assert strip(b) == strip(a)
    assert not [p for p in out.rglob("*.tmp")]
    assert len({(r.query, r.positive) for r in b}) == len(b)
    assert resumed.rejects == whole.rejects and resumed.kept == whole.kept
    print(json.dumps({"kept": whole.kept, "rejects": whole.rejects, "stored_before_kill": done_before}))
