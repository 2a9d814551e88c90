"""The Ray executor on a real local Ray cluster (no mocks): same scores as the local executor, every
unit a Ray task, a second run all cached; and the option errors are exit 2 before anything is written."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import cli, main_scores, read_json, require

os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
REPO = Path(__file__).resolve().parents[1]


def _ray() -> Any:
    """Ray itself (the dev extra installs it): absent, skip on a user's machine, fail in CI."""
    import importlib.util

    require(importlib.util.find_spec("ray") is not None, "ray (pip install -e '.[ray]')")
    import ray

    return ray


def _one_error_line(output: str) -> str:
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    return lines[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def ray_head() -> Iterator[str]:
    """A real head node, as a user starts one (``ray start --head --block``), in a bare environment:
    no PYTHONPATH, no harness caches, so the run must hand the workers what they need. Stopped by
    terminating that one ``ray start`` process, which stops what it started."""
    port = _free_port()
    temp = tempfile.mkdtemp(prefix="rh-", dir="/tmp")  # short: Ray's unix socket paths have a length limit
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", temp),
           "RAY_AUTH_MODE": "disabled", "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}
    log = Path(temp) / "head.log"
    ray_cli = shutil.which("ray", path=str(Path(sys.executable).parent)) or "ray"
    with log.open("w") as out:
        proc = subprocess.Popen([ray_cli, "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
                                 f"--dashboard-agent-listen-port={_free_port()}", f"--temp-dir={temp}", "--block"],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while "Ray runtime started" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow
def test_ray_executor_matches_local_and_reuses_finished_steps(tmp_path: Path, smoke_copy: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    ray = _ray()
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # the test's own clusters; real ones: docs/distributed.md
    local_dir, ray_dir = tmp_path / "run-local", tmp_path / "run-ray"

    t0 = time.monotonic()
    local = cli("run", str(smoke_copy), "-o", str(local_dir), "--no-progress")
    t1 = time.monotonic()
    first = cli("run", str(smoke_copy), "-o", str(ray_dir), "--executor", "ray", "--no-progress")  # starts its own cluster
    t2 = time.monotonic()
    print(f"smoke run: local {t1 - t0:.1f} s, ray (local cluster started by the run) {t2 - t1:.1f} s")
    assert local.exit_code == 0, local.output
    assert first.exit_code == 0, first.output
    assert not ray.is_initialized()  # the run started Ray, so it shut it down

    scores = main_scores(ray_dir)
    assert scores and scores == main_scores(local_dir)

    report = read_json(ray_dir / "run.json")
    assert report["executor"] == "ray"
    steps = report["steps"]
    assert len(steps) == 4 and {s["status"] for s in steps} == {"done"}
    tasks = report["ray_tasks"]  # one per unit (the smoke set: one model, so one evaluate unit)
    assert len(tasks) == 1 and tasks[0]["task_id"] and tasks[0]["pid"] != os.getpid()

    # Second run against a head node started apart (--address): every step is found finished.
    with ray_head() as address:
        t3 = time.monotonic()
        again = cli("run", str(smoke_copy), "-o", str(ray_dir), "--executor", "ray", "--address", address, "--no-progress")
        print(f"cached rerun on a running head node: {time.monotonic() - t3:.1f} s")
    assert again.exit_code == 0, again.output
    rerun = read_json(ray_dir / "run.json")
    assert rerun["executor"] == "ray" and {s["status"] for s in rerun["steps"]} == {"cached"}
    assert len(rerun["ray_tasks"]) == 1 and rerun["ray_tasks"][0]["node_id"] != tasks[0]["node_id"]
    assert "ran 0 generate, 0 train, 0 evaluate step(s)" in again.output
    assert main_scores(ray_dir) == scores


@pytest.mark.slow
def test_failed_step_skips_its_dependents_and_other_branches_go_on(tmp_path: Path, smoke_copy: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """generate fails (its endpoint is down) -> train and the trained model's evaluation are skipped,
    while the base model's evaluation runs; on a cluster the caller started (the run leaves it up)."""
    ray = _ray()
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    gen = {"name": "tiny", "seed": 3, "languages": {"en": 1}, "tasks": {"sts": {"count": 3}},
           "backend": {"kind": "openai", "model": "gpt-4o-mini", "base_url_env": "GEN_DEAD_URL",
                       "api_key_env": "GEN_DEAD_KEY", "max_attempts": 1, "timeout_s": 5}}
    (tmp_path / "gen.yaml").write_text(yaml.safe_dump(gen))
    matrix = yaml.safe_load(smoke_copy.read_text())
    matrix["tasks"] = [t for t in matrix["tasks"] if t["name"] == "HarnessSmokeSTS"]
    matrix["models"].append({"name": "tuned", "train": {"base": "all-MiniLM-L6-v2", "mixture": "gen"}})
    matrix["generate"] = [{"name": "g", "config": "gen.yaml"}]
    matrix["mixtures"] = [{"name": "gen", "sources": [{"kind": "generated", "generate": "g"}]}]
    smoke_copy.write_text(yaml.safe_dump(matrix))

    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        # Set after the cluster started: the workers get them only because the run forwards them.
        monkeypatch.setenv("GEN_DEAD_URL", "http://127.0.0.1:1/v1")
        monkeypatch.setenv("GEN_DEAD_KEY", "unused")
        result = cli("run", str(smoke_copy), "--executor", "ray", "--no-progress")
        assert ray.is_initialized()
    finally:
        ray.shutdown()
    assert result.exit_code == 1, result.output
    status = {(s["kind"], s["label"]): (s["status"], s["error"]) for s in read_json(tmp_path / "run" / "run.json")["steps"]}
    assert status[("generate", "generate g")][0] == "failed" and "ConnectError" in status[("generate", "generate g")][1]
    assert status[("train", "train tuned")] == ("skipped", "input generate g failed")
    by_label = {label: st for (kind, label), st in status.items() if kind == "evaluate"}
    assert [st for label, st in by_label.items() if "tuned" in label] == [("skipped", "input train tuned was skipped")]
    assert [st[0] for label, st in by_label.items() if "all-MiniLM-L6-v2" in label] == ["done"]
    assert (tmp_path / "run" / "logs" / "generate__g.log").is_file()


def test_unreachable_address_is_exit_2_and_writes_nothing(tmp_path: Path, smoke_copy: Path) -> None:
    _ray()
    start = time.monotonic()
    result = cli("run", str(smoke_copy), "--executor", "ray", "--address", "127.0.0.1:1", "--no-progress")
    assert result.exit_code == 2
    line = _one_error_line(result.output)
    assert "--address" in line and "127.0.0.1:1" in line and "ray start --head" in line
    assert not (tmp_path / "run").exists()
    assert time.monotonic() - start < 60


def test_unknown_executor_is_exit_2(tmp_path: Path, smoke_copy: Path) -> None:
    result = cli("run", str(smoke_copy), "--executor", "nope", "--no-progress")
    assert result.exit_code == 2 and "--executor: unknown executor 'nope'" in _one_error_line(result.output)
    assert not (tmp_path / "run").exists()


def test_address_without_ray_executor_is_exit_2(tmp_path: Path, smoke_copy: Path) -> None:
    result = cli("run", str(smoke_copy), "--address", "127.0.0.1:6379", "--no-progress")
    assert result.exit_code == 2 and "--address" in _one_error_line(result.output)
    assert not (tmp_path / "run").exists()


def test_importing_harness_does_not_import_ray() -> None:
    code = ("import sys, harness, harness.cli, harness.pipeline.ray_executor, harness.pipeline.local; "
            "assert 'ray' not in sys.modules, 'ray imported'")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=REPO)
