"""Issue #8 item 4: settings the schema cannot check (paths, device, API key) are exit 2 with one line,
checked before anything is written — no traceback, no run folder, no temporary file left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import cli
from leaderboards_fixtures import write_run


def _one_error_line(output: str) -> str:
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    return lines[0]


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_run_output_is_an_existing_file(tmp_path: Path, smoke_copy: Path) -> None:
    target = tmp_path / "taken.txt"
    target.write_text("keep me")
    before = _listing(tmp_path)
    result = cli("run", str(smoke_copy), "-o", str(target), "--no-progress")
    assert result.exit_code == 2
    assert "--output: run directory" in _one_error_line(result.output) and "is a file, not a folder" in result.output
    assert target.read_text() == "keep me" and _listing(tmp_path) == before


def test_cache_dir_naming_a_file_fails_validate(tmp_path: Path, smoke_copy: Path) -> None:
    (tmp_path / "cachefile").write_text("x")
    smoke_copy.write_text(smoke_copy.read_text() + f"cache_dir: {tmp_path / 'cachefile'}\n")
    result = cli("validate", str(smoke_copy))
    assert result.exit_code == 2 and "cache_dir: cache folder" in _one_error_line(result.output)
    run = cli("run", str(smoke_copy), "--no-progress")
    assert run.exit_code == 2 and not (tmp_path / "run").exists()


@pytest.mark.parametrize("device,message", [("gpu", "'gpu' is not a torch device"), ("cuda:0", "no usable CUDA device")])
def test_bad_device_fails_before_anything_is_written(tmp_path: Path, smoke_copy: Path, device: str, message: str) -> None:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("this machine has CUDA: cuda:0 is valid here")
    result = cli("run", str(smoke_copy), "--device", device, "--no-progress")
    assert result.exit_code == 2 and message in _one_error_line(result.output)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args,message", [
    (["--devices", "gpu,cpu"], "--devices: 'gpu' is not a torch device"),
    (["--devices", "cpu,,cpu"], "--devices: 'cpu,,cpu' has an empty entry"),
    (["--devices", "cpu,cpu", "--device", "cpu"], "--devices: --device and --devices are both given"),
    (["--devices", "cpu,cpu", "--executor", "ray"], "--devices: the Ray executor gives each evaluate unit one GPU"),
    (["--devices", "cuda:0,cuda:1"], "--devices: 'cuda:0' requested but this torch has no usable CUDA device"),
])
def test_bad_devices_fail_before_anything_is_written(tmp_path: Path, smoke_copy: Path, args: list[str], message: str) -> None:
    import torch

    if "cuda:0,cuda:1" in args and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = cli("run", str(smoke_copy), *args, "--no-progress")
    assert result.exit_code == 2 and message in _one_error_line(result.output)
    assert not (tmp_path / "run").exists()


def test_more_devices_than_gpus(tmp_path: Path, smoke_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    result = cli("run", str(smoke_copy), "--devices", "cuda:0,cuda:1,cuda:2", "--no-progress")
    assert result.exit_code == 2
    assert "--devices: 'cuda:2' requested but only 2 CUDA device(s) exist" in _one_error_line(result.output)
    assert "use cuda:0 .. cuda:1" in result.output and not (tmp_path / "run").exists()


def test_report_and_gate_outputs_that_are_folders(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run")
    folder = tmp_path / "out"
    folder.mkdir()
    report = cli("report", str(run), "--baselines", "none", "-o", str(folder))
    assert report.exit_code == 2 and f"{folder}: --output: is a directory" in _one_error_line(report.output)
    gate = cli("gate", "--baseline", "sentence-transformers/all-MiniLM-L6-v2", "--candidate", str(run), "--summary", str(folder))
    assert gate.exit_code == 2 and f"{folder}: --summary: is a directory" in _one_error_line(gate.output)
    assert list(folder.iterdir()) == []  # no .tmp left behind


def test_openai_model_without_api_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_SUCH_KEY_FOR_TEST", raising=False)
    matrix = tmp_path / "m.yaml"
    matrix.write_text("name: api\nmodels:\n  - name: ada\n    model: openai:text-embedding-3-small\n"
                      "    api_key_env: NO_SUCH_KEY_FOR_TEST\ntasks:\n  - name: HarnessSmokeSTS\n"
                      f"output: {tmp_path / 'run'}\n")
    for command in ("validate", "run"):
        result = cli(command, str(matrix))
        assert result.exit_code == 2
        assert "api_key_env: environment variable NO_SUCH_KEY_FOR_TEST is not set" in _one_error_line(result.output)
    assert not (tmp_path / "run").exists()
