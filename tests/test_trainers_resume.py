"""``kill -9`` a training run after its first checkpoint, re-run it: same adapter, bit for bit.

Real data path: a SciFact train slice in BEIR layout, hard negatives mined with the base model
(so the re-run must reuse the saved mixture, not re-mine), LoRA dropout 0.1 (so the checkpoint's
RNG state must be restored), AdamW state and the LR schedule mid-way. Also a 2-process torchrun
resume: each rank has its own dropout RNG stream, which the checkpoint must keep per rank.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from trainers.config import TrainConfig
from trainers.data.mixture import Mixture
from trainers.checkpoints import discard_checkpoints
from trainers.train import Prepared, check_output, train
from tests.trainer_fixtures import (max_state_diff, pairs_data, run_training, scifact_pairs, scifact_slice,
                                    subprocess_env, tiny_config, tiny_llama, tiny_llama_config, write_config)

LORA = {"r": 4, "alpha": 8, "dropout": 0.1, "target_modules": ["q_proj", "v_proj"]}


def _beir_config(folder: Path, output: Path) -> dict[str, Any]:
    data = {"sources": [{"kind": "beir", "path": str(folder), "name": "scifact", "negatives_per_query": 1,
                         "mine_skip_top": 1, "mine_depth": 8,
                         "instruction": "Given a scientific claim, retrieve documents that support or refute the claim"}]}
    return tiny_config(data, output, lora=LORA, max_steps=5, save_every=1, warmup_steps=1)


def _leftovers(output: Path) -> list[str]:
    """Anything a completed run must not leave behind: temporary checkpoint or export directories/files."""
    return sorted(str(p.relative_to(output)) for p in output.rglob("*") if ".tmp" in p.name)


@pytest.mark.slow
def test_kill_9_after_first_checkpoint_then_rerun_gives_identical_adapter(tmp_path: Path) -> None:
    folder = scifact_slice(tmp_path / "scifact_slice", n_queries=16, n_other=16)
    reference = run_training(_beir_config(folder, tmp_path / "uninterrupted"), tmp_path, "uninterrupted")
    assert reference["resumed_from"] == 0 and len(reference["losses"]) == 5

    output = tmp_path / "killed"
    config = write_config(_beir_config(folder, output), tmp_path / "killed.yaml")
    proc = subprocess.Popen([sys.executable, "-m", "tests.trainer_run", str(config), str(tmp_path / "killed.json")],
                            env=subprocess_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if list((output / "checkpoints").glob("step-*/complete.json")):
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    done = sorted((output / "checkpoints").glob("step-*/complete.json"))
    assert done and not (output / "model").exists()
    killed_at = max(int(p.parent.name.split("-")[1]) for p in done)
    assert killed_at < 5

    # what a kill during a checkpoint write or during the export leaves (same names the code uses)
    (output / "checkpoints" / ".tmp-step-000004").mkdir(exist_ok=True)
    (output / "checkpoints" / ".tmp-step-000004" / "state.pt").write_bytes(b"half")
    (output / ".model.tmp-x1y2z3").mkdir()
    (output / "data" / f".mixture.jsonl.{proc.pid}.k3j2h1.tmp").write_text("half")  # the killed writer's pid

    resumed = run_training(_beir_config(folder, output), tmp_path, "resumed")
    print(f"killed after step {killed_at}; resumed from {resumed['resumed_from']}; "
          f"losses {resumed['losses']} vs {reference['losses']}; wall {resumed['wall']:.0f}s")
    assert resumed["resumed_from"] >= killed_at >= 1
    assert resumed["losses"] == reference["losses"]
    # metrics.jsonl: each step once, whatever the killed run had written past its checkpoint
    assert [(m["step"], m["loss"], m["lr"], m["grad_norm"]) for m in resumed["metrics"]] == [
        (m["step"], m["loss"], m["lr"], m["grad_norm"]) for m in reference["metrics"]]
    assert [m["step"] for m in resumed["metrics"]] == [1, 2, 3, 4, 5]
    for name, tensor in reference["adapter"].items():
        assert torch.equal(tensor, resumed["adapter"][name]), name
    assert set(reference["adapter"]) == set(resumed["adapter"])
    assert _leftovers(output) == []


@pytest.mark.slow
def test_two_process_resume_is_exact_with_dropout(tmp_path: Path) -> None:
    """Each rank's RNG (dropout masks) differs; resuming must restore each rank's own state."""
    pairs = scifact_pairs(tmp_path / "pairs.jsonl")
    # queries up to 48 tokens: SciFact claims vary in length, so the two ranks' batches have
    # different shapes and consume their generators differently (at 16 tokens every claim is cut
    # to the same width and the ranks' RNG states would coincide, hiding the bug this test is for)
    cfg = tiny_config(pairs_data(pairs), tmp_path / "two", lora=LORA, save_every=1, query_max_length=48)
    full = run_training(cfg, tmp_path, "two", nproc=2)
    step2 = tmp_path / "two" / "checkpoints" / "step-000002"
    rng = [torch.load(step2 / f"rng-rank{r:03d}.pt", weights_only=False)["torch"] for r in (0, 1)]
    assert not torch.equal(rng[0], rng[1])  # the premise: the ranks' dropout streams differ
    shutil.rmtree(tmp_path / "two" / "checkpoints" / "step-000003")
    shutil.rmtree(tmp_path / "two" / "model")
    resumed = run_training(cfg, tmp_path, "two-resumed", nproc=2)
    print(f"full {full['losses']}\nresumed {resumed['losses']} from {resumed['resumed_from']}")
    assert resumed["resumed_from"] == 2
    assert resumed["losses"] == full["losses"]
    assert max_state_diff(resumed["trainable"], full["trainable"]) == 0.0


class _Killed(BaseException):
    """Stands for SIGKILL at one exact point (a real kill cannot be timed to a few microseconds)."""


def test_run_killed_right_after_writing_its_mixture_can_still_resume(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The output must be recognisable as this training from its first file on, or a run killed
    between two writes leaves a directory ``check_output`` refuses for ever."""
    pairs = scifact_pairs(tmp_path / "pairs.jsonl")
    output = tmp_path / "out"
    cfg = TrainConfig.model_validate(tiny_config(pairs_data(pairs), output))
    original = Mixture.save

    def save_then_die(self: Mixture, path: Path) -> None:
        original(self, path)
        raise _Killed

    monkeypatch.setattr(Mixture, "save", save_then_die)
    # no model needed: a pairs source is not mined, and the run dies before the engine exists
    prepared = Prepared(config=cfg, config_path=None, output=output, base=None, encoder=None,  # type: ignore[arg-type]
                        use_e5=True, device=torch.device("cpu"), identity="this-training")
    with pytest.raises(_Killed):
        train(cfg, prepared=prepared, progress=False)
    assert (output / "data" / "mixture.jsonl").is_file()
    check_output(output, "this-training", None)  # raises TrainInputError if the output is not recognised


# ---------------------------------------------------------------- kill points around the end of a run
# A random-weight Llama (steps of milliseconds, in this process): what is tested is which steps a
# re-run trains and which bytes it leaves, not what the model learns.

def _tiny_run(tmp_path: Path, output: Path, **overrides: Any) -> TrainConfig:
    base = tiny_llama(tmp_path / "llama")
    pairs = tmp_path / "pairs.jsonl"
    if not pairs.is_file():
        scifact_pairs(pairs, n_queries=8)
    return TrainConfig.model_validate(tiny_llama_config(pairs_data(pairs), output, base, save_every=1, **overrides))


def _adapter(output: Path) -> bytes:
    return (output / "model" / "adapter_model.safetensors").read_bytes()


def test_a_complete_export_is_done_whatever_became_of_its_checkpoints(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed after the export, during the checkpoints' deletion, or after it (before the harness
    commits): the re-run trains 0 steps and leaves the adapter as it was."""
    out = tmp_path / "out"
    cfg = _tiny_run(tmp_path, out)
    first = train(cfg, progress=False)
    assert first.resumed_from == 0 and first.steps == 3
    adapter, stamp = _adapter(out), (out / "model" / "adapter_model.safetensors").stat().st_mtime_ns

    def rerun_trains_nothing() -> None:
        again = train(cfg, progress=False)
        assert (again.resumed_from, again.steps, again.losses) == (3, 3, first.losses)
        assert (out / "model" / "adapter_model.safetensors").stat().st_mtime_ns == stamp and _adapter(out) == adapter

    rerun_trains_nothing()  # 1. killed after the export: every checkpoint still there

    real_rmtree = shutil.rmtree

    def killed_midway(path: Any, *args: Any, **kwargs: Any) -> None:
        victim = next(p for p in Path(path).rglob("*") if p.is_file())
        victim.unlink()  # part of the deletion done ...
        raise _Killed  # ... then the process dies

    monkeypatch.setattr(shutil, "rmtree", killed_midway)
    with pytest.raises(_Killed):
        discard_checkpoints(out)  # 2. killed during the deletion
    monkeypatch.setattr(shutil, "rmtree", real_rmtree)
    assert not (out / "checkpoints").exists()  # whole or absent under its readable name, never half
    assert [p.name for p in out.glob(".checkpoints.discard-*")]  # the half-deleted copy is under a name nobody reads
    rerun_trains_nothing()
    assert not list(out.glob(".checkpoints.discard-*"))  # and the re-run removed it

    other = tmp_path / "other"  # 3. killed after a complete deletion, before the commit
    cfg = _tiny_run(tmp_path, other)
    train(cfg, progress=False)
    assert discard_checkpoints(other) and not (other / "checkpoints").exists() and _adapter(other) == adapter
    out, stamp = other, (other / "model" / "adapter_model.safetensors").stat().st_mtime_ns
    rerun_trains_nothing()


def test_moved_output_and_data_resume_exactly_whatever_the_cadence(tmp_path: Path) -> None:
    """``harness train`` killed after step 2, its output and data folders moved, re-run with another
    checkpoint and log cadence and another name: it resumes at step 2 and ends bit-identical to an
    uninterrupted run (LoRA dropout 0.1: the dropout RNG is restored too). A changed byte is another model."""
    from tests.helpers import cli

    reference = train(_tiny_run(tmp_path, tmp_path / "uninterrupted"), progress=False)
    expected = _adapter(tmp_path / "uninterrupted")

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(tmp_path / "pairs.jsonl", run / "pairs.jsonl")
    cfg = tiny_llama_config(pairs_data(Path("pairs.jsonl")), Path("out"), tmp_path / "llama", save_every=1)
    write_config(cfg, run / "train.yaml")
    assert cli("train", str(run / "train.yaml"), "--no-progress").exit_code == 0
    shutil.rmtree(run / "out" / "checkpoints" / "step-000003")  # what a kill after step 2's checkpoint leaves
    shutil.rmtree(run / "out" / "model")

    moved = tmp_path / "moved" / "project"
    moved.parent.mkdir()
    shutil.move(str(run), str(moved))
    write_config(cfg | {"save_every": 2, "log_every": 5, "name": "renamed"}, moved / "train.yaml")
    result = cli("train", str(moved / "train.yaml"), "--no-progress")
    assert result.exit_code == 0 and "resumed at step 2" in result.output, result.output
    card = json.loads((moved / "out" / "model" / "training.json").read_text())
    assert card["losses"] == reference.losses
    assert _adapter(moved / "out") == expected

    data = moved / "pairs.jsonl"
    data.write_text(data.read_text().replace("e", "E", 1))
    st = data.stat()
    os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # an edit later than the copy (the digest memo keys by mtime)
    refused = cli("train", str(moved / "train.yaml"), "--no-progress")
    assert refused.exit_code == 2 and "already holds a different model" in refused.output
