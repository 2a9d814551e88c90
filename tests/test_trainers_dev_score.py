"""Dev score during training (issue 19, item 2): ``eval_every`` + ``eval_task`` score the model in
training through the same code as ``harness run``, change nothing about the training, resume like
every other metrics line, and ``select_best`` exports the best dev step's weights (and is part of
the identity).

Real training on a random-weight Llama with a real tokenizer (steps of milliseconds), real SciFact
pairs, and the shipped smoke retrieval task (HarnessSmokeRetrieval, English: 8 documents, 8 queries)
scored by mteb's own evaluator.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from tests.conftest import REPO
from tests.helpers import cli
from tests.trainer_fixtures import pairs_data, scifact_pairs, tiny_llama, tiny_llama_config, write_config

SMOKE_EN = {"name": "HarnessSmokeRetrieval", "data": str(REPO / "harness" / "smoke_data" / "retrieval"), "subsets": ["en"]}


def _config(tmp_path: Path, name: str, **overrides: Any) -> Path:
    base = tiny_llama(tmp_path / "llama")
    pairs = tmp_path / "pairs.jsonl"
    if not pairs.is_file():
        scifact_pairs(pairs, n_queries=8)
    cfg = tiny_llama_config(pairs_data(pairs), tmp_path / name, base,
                            **({"max_steps": 4, "save_every": 2, "passage_max_length": 48} | overrides))
    return write_config(cfg, tmp_path / f"{name}.yaml")


def _lines(output: Path, kind: str) -> list[dict[str, Any]]:
    rows = [json.loads(x) for x in (output / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["kind"] == kind]


def _adapter(output: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(output / "model" / "adapter_model.safetensors"))


def test_dev_scores_follow_training_change_nothing_and_match_harness_run(tmp_path: Path) -> None:
    plain = _config(tmp_path, "plain")
    with_dev = _config(tmp_path, "dev", eval_every=2, eval_task=SMOKE_EN)
    assert cli("train", str(plain), "--no-progress").exit_code == 0
    result = cli("train", str(with_dev), "--no-progress")
    assert result.exit_code == 0, result.output

    dev = _lines(tmp_path / "dev", "dev")
    assert [d["step"] for d in dev] == [2, 4]
    assert all(d["task"] == "HarnessSmokeRetrieval" and 0.0 <= d["main_score"] <= 1.0 for d in dev)
    assert dev[0]["scores"] == {"test": {"en": pytest.approx(dev[0]["main_score"])}}
    # scoring in between changed nothing: every dropout mask, loss and weight is the plain run's
    assert [t["loss"] for t in _lines(tmp_path / "dev", "train")] == [t["loss"] for t in _lines(tmp_path / "plain", "train")]
    a, b = _adapter(tmp_path / "plain"), _adapter(tmp_path / "dev")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    card = json.loads((tmp_path / "dev" / "model" / "training.json").read_text())
    assert card["dev"] == {"task": "HarnessSmokeRetrieval", "every": 2, "select_best": False}

    # the last dev score is what `harness run` gives the exported model on that task (same code, same
    # template, same max length; the export's adapter is merged into its base there: float noise only)
    matrix = tmp_path / "eval.yaml"
    matrix.write_text(yaml.safe_dump({"name": "dev-check", "output": str(tmp_path / "run"),
                                      "models": [{"name": "trained", "model": str(tmp_path / "dev" / "model")}],
                                      "tasks": [SMOKE_EN]}))
    assert cli("run", str(matrix), "--no-progress").exit_code == 0
    summary = [json.loads(p.read_text())["summary"] for p in (tmp_path / "run" / "steps" / "evaluate").glob("*/manifest.json")]
    assert summary[0]["main_scores"]["test"]["en"] == pytest.approx(dev[-1]["main_score"], abs=1e-4)


def test_a_killed_run_keeps_each_dev_score_once(tmp_path: Path) -> None:
    config = _config(tmp_path, "dev", eval_every=1, eval_task=SMOKE_EN)
    assert cli("train", str(config), "--no-progress").exit_code == 0
    out = tmp_path / "dev"
    first = _lines(out, "dev")
    # as if killed after step 4's dev line but before its checkpoint and export: resume from step 2
    shutil.rmtree(out / "model")
    shutil.rmtree(out / "checkpoints" / "step-000004")
    again = cli("train", str(config), "--no-progress")
    assert again.exit_code == 0 and "resumed at step 2" in again.output
    second = _lines(out, "dev")
    assert [d["step"] for d in second] == [1, 2, 3, 4]
    assert [d["main_score"] for d in second] == [d["main_score"] for d in first]


def test_select_best_exports_the_best_dev_step_and_enters_the_identity(tmp_path: Path) -> None:
    from trainers.config import TrainConfig
    from trainers.train import identify

    config = _config(tmp_path, "best", eval_every=1, eval_task=SMOKE_EN, select_best=True, learning_rate=0.05)
    result = cli("train", str(config), "--no-progress")
    assert result.exit_code == 0, result.output
    out = tmp_path / "best"
    dev = _lines(out, "dev")
    scores = [d["main_score"] for d in dev]
    best_step = dev[scores.index(max(scores))]["step"]  # the earliest on a tie
    card = json.loads((out / "model" / "training.json").read_text())
    assert (card["dev"]["selected_step"], card["dev"]["selected_score"]) == (best_step, max(scores))
    saved = torch.load(out / "best.pt", weights_only=False)
    assert saved["step"] == best_step
    exported = _adapter(out)
    assert len(exported) == len(saved["trainable"])
    for name, value in saved["trainable"].items():  # peft names: "...lora_A.default.weight" -> "...lora_A.weight"
        key = next(k for k in exported if k.split("base_model.model.")[-1] == name.split("backbone.base_model.model.")[-1]
                   .replace(".default.", "."))
        assert torch.equal(exported[key], value.to(exported[key].dtype))

    # identity: select_best and the dev task decide the export; eval_every alone does not
    cache = tmp_path / "cache"
    raw = yaml.safe_load(config.read_text())

    def identity(**change: Any) -> str:
        from harness.evaluation.dev_scorer import dev_scorer_for

        cfg = TrainConfig.model_validate(raw | change)
        scorer = dev_scorer_for(cfg, source=config)
        return identify(cfg, config_path=config, cache_dir=cache, dev=scorer.identity if scorer else None)[0]

    plain = identity(eval_every=None, eval_task=None, select_best=False)
    assert identity(select_best=False) == plain  # scoring alone changes no weight
    best = identity()
    assert best != plain
    assert identity(eval_task=SMOKE_EN | {"subsets": ["de"]}) != best  # another dev set picks other weights
    assert identity(eval_every=2) != best


def test_bad_dev_settings_are_input_errors_before_training(tmp_path: Path) -> None:
    unknown = _config(tmp_path, "unknown", eval_every=2, eval_task={"name": "NoSuchTaskAnywhere"})
    result = cli("train", str(unknown), "--no-progress")
    assert result.exit_code == 2 and "eval_task.name" in result.output and "NoSuchTaskAnywhere" in result.output
    assert not (tmp_path / "unknown").exists()
    missing = _config(tmp_path, "missing", eval_every=2, eval_task=SMOKE_EN | {"data": "no/such/folder"})
    result = cli("train", str(missing), "--no-progress")
    assert result.exit_code == 2 and "eval_task.data" in result.output and "does not exist" in result.output
    alone = _config(tmp_path, "alone", eval_every=2)
    result = cli("train", str(alone), "--no-progress")
    assert result.exit_code == 2 and "eval_every and eval_task go together" in result.output

    # in a matrix: the recipe's eval_task is checked by validate, named by its field
    matrix = tmp_path / "m.yaml"
    matrix.write_text(yaml.safe_dump({
        "name": "m", "mixtures": [{"name": "pairs", "sources": [{"kind": "pairs", "path": str(tmp_path / "pairs.jsonl")}]}],
        "models": [{"name": "t", "train": {"base": str(tmp_path / "llama"), "mixture": "pairs",
                                           "recipe": {"eval_every": 2, "hard_negatives": 0,
                                                      "eval_task": SMOKE_EN | {"subsets": ["xx"]}}}}],
        "tasks": [SMOKE_EN]}))
    result = cli("validate", str(matrix))
    assert result.exit_code == 2 and "models[0] (name: t).train.recipe.eval_task.subsets" in result.output and "xx" in result.output
